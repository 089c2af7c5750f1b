"""Reading the results store for the report, and remembering exactly what was read.

Every file is read once into memory, hashed (sha256) and parsed from those bytes, so the
provenance table names the very bytes behind every number. Absent files are not errors
(the section says "not run yet"). A file that exists but cannot be used (unreadable, or
lacking the columns the report needs) is never a crash and never taken for an absent one: it is
noted in ``unusable`` with the reason, which the report shows in a banner at the top, in its
section and in the provenance, and ``sharpmaml report`` exits 4 naming it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from infra.paths import repo_root
from infra.store import parse_table
from realdata.baselines.format import Baseline, BaselinesError, parse_baselines


@dataclass(frozen=True)
class SourceFile:
    """One file the report read: where, how big, its sha256 and its row count."""

    path: str
    size: int
    sha256: str
    rows: int


class ResultsReader:
    """Reads tables under a results root (and the stored-baselines CSV) for one report."""

    def __init__(self, root: Path, baselines: Path) -> None:
        self.root, self.baselines = Path(root), Path(baselines)
        self.files: list[SourceFile] = []
        self.frames: dict[str, pd.DataFrame] = {}
        self.unusable: dict[str, str] = {}  # a file's name in the report -> why it cannot be used
        self._parsed: dict[
            Path, pd.DataFrame | None
        ] = {}  # each file parsed once, however many sections read it

    def display(self, path: Path) -> str:
        """A file's name in the report: relative to the results root, else to the repository."""
        resolved = path.resolve()
        if resolved.is_relative_to(self.root.resolve()):
            return resolved.relative_to(self.root.resolve()).as_posix()
        if resolved.is_relative_to(repo_root()):
            return "repository: " + resolved.relative_to(repo_root()).as_posix()
        return path.as_posix()

    def table(self, relative: str, columns: Iterable[str] = ()) -> pd.DataFrame | None:
        """The table at ``root/relative`` (.parquet, .csv or the speed benchmark's .json); None
        when it is absent, unreadable or lacks some of ``columns`` (the last two noted)."""
        frame = self.read(self.root / relative)
        missing = sorted(set(columns) - set(frame.columns)) if frame is not None else []
        if missing:
            self.reject(self.root / relative, f"lacks the columns {', '.join(missing)}; section skipped")
            return None
        return frame

    def reject(self, path: Path, why: str) -> None:
        """Note that ``path`` exists but cannot be used, and why."""
        self.unusable[self.display(path)] = why

    def unusable_lines(self) -> list[str]:
        """One line per file that exists but could not be used: its name, then why."""
        return [f"{name}: {why}" for name, why in self.unusable.items()]

    def _bytes(self, path: Path) -> bytes | None:
        """The bytes of ``path``; None when it is absent."""
        return path.read_bytes() if path.is_file() else None

    def _record(self, path: Path, data: bytes, rows: int) -> str:
        name = self.display(path)
        self.files.append(SourceFile(name, len(data), hashlib.sha256(data).hexdigest(), rows))
        return name

    def text(self, path: Path) -> str | None:
        """A UTF-8 document the report shows (rows: its lines); None when absent or unreadable."""
        data = self._bytes(path)
        if data is None:
            return None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.reject(path, f"not UTF-8 text ({exc})")
            return None
        self._record(path, data, text.count("\n"))
        return text

    def stored_baselines(self) -> list[Baseline] | None:
        """The stored-baselines file through its own loader (the same validation as the gate);
        None when absent or invalid (then noted, naming the line and column)."""
        data = self._bytes(self.baselines)
        if data is None:
            return None
        try:
            rows = parse_baselines(data.decode("utf-8"), self.baselines)
        except (BaselinesError, UnicodeDecodeError) as exc:
            self.reject(self.baselines, str(exc))
            return None
        name = self._record(self.baselines, data, len(rows))
        self.frames[name] = pd.DataFrame([dataclasses.asdict(r) for r in rows])
        return rows

    def read(self, path: Path) -> pd.DataFrame | None:
        """A table read from ``path``; None when it is absent or unreadable (then noted). A file
        read again (two sections use it) is the same frame, listed once in the provenance."""
        key = path.resolve()
        if key not in self._parsed:
            self._parsed[key] = self._parse(path)
        frame = self._parsed[key]
        return None if frame is None else frame.copy()

    def _parse(self, path: Path) -> pd.DataFrame | None:
        data = self._bytes(path)
        if data is None:
            return None
        try:
            frame = parse_table(data, path.suffix)
        except Exception as exc:  # pyarrow, pandas and json raise many types for a bad file
            self.reject(path, f"cannot read ({type(exc).__name__}: {exc})")
            return None
        self.frames[self._record(path, data, len(frame))] = frame
        return frame

    def run_metrics(self) -> pd.DataFrame | None:
        """Every ``realdata/runs/<run>/metrics.parquet``, concatenated (None when there is none)."""
        frames = [self.read(p) for p in sorted((self.root / "realdata" / "runs").glob("*/metrics.parquet"))]
        frames = [f for f in frames if f is not None and not f.empty]
        return pd.concat(frames, ignore_index=True) if frames else None
