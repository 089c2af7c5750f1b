"""Stored CSV files that people review in ``git diff``: fixed column order, one number format,
validated on read with errors naming the file, the line and the column.

A file format is a ``CsvFormat``: its columns (each with a parser from text to value and the
value of an empty cell) and the ``UsageError`` subclass its errors raise. Formats built on it:
the accuracy baselines (``realdata.baselines.format``) and the expected verdicts of the theory
suites (``synthetic.expected``). Rules across the cells of a row stay with each format.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.errors import UsageError
from infra.store import atomic_write_bytes

CI_ENV = "CI"


class CsvFileError(UsageError):
    """A stored CSV file is missing or invalid; the message names the file, line and column."""


def parse_text(value: str) -> str:
    return value


def parse_int(value: str) -> int:
    if not re.fullmatch(r"-?\d+", value):
        raise ValueError("an integer")
    return int(value)


def parse_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError("a number") from None
    if not math.isfinite(number):
        raise ValueError("a finite number")
    return number


@dataclass(frozen=True)
class Column:
    """One CSV column: its parser (text -> value, ValueError naming what was expected) and the
    value of an empty cell. Floats are written with 6 significant digits ('%g'), tuples as
    their items separated by spaces."""

    name: str
    parse: Callable[[str], Any]
    empty: Any = None

    def format(self, value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, tuple):
            return " ".join(str(v) for v in value)
        if isinstance(value, float):
            return f"{value:g}"
        return str(value)


@dataclass(frozen=True)
class CsvFormat:
    """One kind of file (``kind`` names it in errors): its columns, in order, and the error
    class its errors raise."""

    kind: str
    columns: tuple[Column, ...]
    error: type[CsvFileError] = CsvFileError

    @property
    def header(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    def error_at(self, path: Path, line: int, column: str | None, message: str) -> CsvFileError:
        """The error for a cell (or a whole line, when ``column`` is None) of a file."""
        where = f"{path}, line {line}" + (f", column {column!r}" if column else "")
        return self.error(f"{where}: {message}")

    def parse(self, text: str, path: Path, required: Sequence[str] = ()) -> list[tuple[int, dict[str, Any]]]:
        """(line, {column: value}) of every non-empty record of ``text`` (``path`` only names
        the file in errors); the header must be the columns in order, and ``required``
        columns must not be empty."""
        records = csv.reader(io.StringIO(text, newline=""))
        header = self.header
        rows: list[tuple[int, dict[str, Any]]] = []
        try:
            found = next(records, None)
            if found is None:
                raise self.error_at(path, 1, None, f"empty file; expected the header {','.join(header)}")
            if tuple(found) != header:
                missing = [c for c in header if c not in found]
                extra = [c for c in found if c not in header]
                detail = (
                    "; ".join(
                        ([f"missing {missing}"] if missing else []) + ([f"unknown {extra}"] if extra else [])
                    )
                    or "columns out of order"
                )
                raise self.error_at(
                    path, 1, None, f"unexpected header ({detail}); expected {','.join(header)}"
                )
            first_line = records.line_num + 1
            for record in records:
                line, first_line = first_line, records.line_num + 1
                if not record:
                    continue
                if len(record) != len(header):
                    raise self.error_at(path, line, None, f"expected {len(header)} fields, got {len(record)}")
                values: dict[str, Any] = {}
                for column, cell in zip(self.columns, record):
                    cell = cell.strip()
                    if not cell:
                        values[column.name] = column.empty
                        continue
                    try:
                        values[column.name] = column.parse(cell)
                    except ValueError as exc:
                        raise self.error_at(
                            path, line, column.name, f"expected {exc}, got {cell!r}"
                        ) from None
                for name in required:
                    if values[name] == self.column(name).empty:
                        raise self.error_at(path, line, name, "expected a value, got an empty cell")
                rows.append((line, values))
        except csv.Error as exc:
            raise self.error_at(path, records.line_num, None, f"not valid CSV ({exc})") from None
        return rows

    def render(self, rows: Iterable[Any]) -> str:
        """The CSV text of ``rows`` (objects with one attribute per column): fixed column
        order and number formats, '\\n' line ends."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.header)
        for row in rows:
            writer.writerow([c.format(getattr(row, c.name)) for c in self.columns])
        return out.getvalue()

    def read_text(self, path: Path, missing: str) -> str:
        """The UTF-8 text of a file; the format's error (with the hint ``missing``) when absent."""
        path = Path(path)
        if not path.is_file():
            raise self.error(f"{path}: {self.kind} file not found; {missing}")
        try:
            return path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.error(f"{path}: not UTF-8 text ({exc}); expected a CSV file") from None


def write_text_atomically(path: Path, text: str) -> None:
    """Write a validated file in one step, so a crash never leaves half a file."""
    atomic_write_bytes(Path(path), text.encode("utf-8"))


def text_diff(old: str, new: str, path: Path) -> str:
    """Unified diff of the stored and the updated text of a file ('' when equal)."""
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"{path} (stored)",
            tofile=f"{path} (updated)",
        )
    )


def refuse_update_in_ci(what: str, how: str) -> None:
    """Stored expectations move only by a deliberate local update, never on a CI machine:
    a UsageError (exit 4) when the ``CI`` environment variable is set."""
    if os.environ.get(CI_ENV):
        raise UsageError(f"refusing to update {what} where CI is set (CI={os.environ[CI_ENV]!r}): {how}")
