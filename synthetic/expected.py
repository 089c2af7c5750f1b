"""Expected verdicts of the theory suites: the stored file, the comparison, the deliberate update.

``synthetic/expected_verdicts.csv`` holds one row per prediction id of a stored run
configuration (suite, scale, seed): the verdict expected there and, for every expected FAIL,
the reason and the section of the docs that explains the finding (docs/theory.md#expected-verdicts).
Ids are opaque strings here: a run is compared id by id with the rows of its own configuration
and with nothing else.

The outcome a table shows for each row:

- the verdict itself, when it is as expected (PASS, N/A, INFO, VACUOUS, SKIPPED);
- FINDING: an expected FAIL (known and explained);
- FAIL: a FAIL the file does not expect (a new failure);
- CHANGED: any other difference, e.g. a known finding that now holds (strict, like pytest's
  strict xfail);
- NEW: an id the file does not hold for this configuration.

A stored id the run did not produce is reported as missing (unless the run was restricted,
``complete=False``). A configuration the file holds no row for is not compared: outcomes are
the raw verdicts and the summary says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from infra.csvtable import (
    Column,
    CsvFileError,
    CsvFormat,
    parse_int,
    parse_text,
    text_diff,
    write_text_atomically,
)
from infra.paths import repo_root
from infra.verdicts import FAIL, VERDICTS

DEFAULT_EXPECTED = repo_root() / "synthetic" / "expected_verdicts.csv"
FINDING, CHANGED, NEW = "FINDING", "CHANGED", "NEW"
SUITES = ("convergence", "generalization")
SECTION = re.compile(r"docs/[\w.-]+\.md#[\w-]+\Z")


class ExpectedError(CsvFileError):
    """The expected-verdicts file is missing or invalid; the message names file, line, column."""


def _verdict(value: str) -> str:
    if value not in VERDICTS:
        raise ValueError(f"one of {list(VERDICTS)}")
    return value


def _suite(value: str) -> str:
    if value not in SUITES:
        raise ValueError(f"one of {list(SUITES)}")
    return value


FORMAT = CsvFormat(
    "expected verdicts",
    (
        Column("suite", _suite, empty=""),
        Column("scale", parse_text, empty=""),
        Column("seed", parse_int),
        Column("id", parse_text, empty=""),
        Column("expected", _verdict, empty=""),
        Column("reason", parse_text, empty=""),
        Column("section", parse_text, empty=""),
    ),
    ExpectedError,
)
REQUIRED = ("suite", "scale", "seed", "id", "expected")


@dataclass(frozen=True)
class Expected:
    """One stored row: the verdict expected for ``id`` in the run (suite, scale, seed)."""

    suite: str
    scale: str
    seed: int
    id: str
    expected: str
    reason: str = ""
    section: str = ""
    line: int = field(default=0, compare=False)

    @property
    def config(self) -> tuple[str, str, int]:
        return (self.suite, self.scale, self.seed)


def parse_expected(text: str, path: Path) -> list[Expected]:
    """Rows of an expected-verdicts text; an expected FAIL needs a reason and a docs section,
    other verdicts carry neither; ids are unique per configuration."""
    rows, seen = [], {}
    for line, values in FORMAT.parse(text, path, REQUIRED):
        row = Expected(**values, line=line)
        if row.seed < 0:
            raise FORMAT.error_at(path, line, "seed", f"expected an integer >= 0, got {row.seed}")
        if row.expected == FAIL:
            if not row.reason:
                raise FORMAT.error_at(path, line, "reason", "expected why this FAIL is a known finding")
            if not SECTION.match(row.section):
                raise FORMAT.error_at(
                    path, line, "section", f"expected docs/<file>.md#<anchor>, got {row.section!r}"
                )
        elif row.reason or row.section:
            column = "reason" if row.reason else "section"
            raise FORMAT.error_at(path, line, column, "expected an empty cell: only a FAIL is explained")
        key = (*row.config, row.id)
        if key in seen:
            raise FORMAT.error_at(path, line, "id", f"duplicate id; line {seen[key]} has the same")
        seen[key] = line
        rows.append(row)
    return rows


def load_expected(path: Path) -> list[Expected]:
    """Read and validate the file; ExpectedError when it is missing or invalid."""
    missing = "expected the stored verdicts (write them with `sharpmaml convergence --update-expected`)"
    return parse_expected(FORMAT.read_text(path, missing), Path(path))


def render_expected(rows: Iterable[Expected]) -> str:
    """The file's text: rows sorted by suite, scale, seed, then kept in the run's order."""
    order = {suite: i for i, suite in enumerate(SUITES)}
    return FORMAT.render(sorted(rows, key=lambda r: (order[r.suite], r.scale, r.seed)))


@dataclass(frozen=True)
class Comparison:
    """A run against the stored rows of its configuration."""

    table: pd.DataFrame  # the predictions with expected, outcome, expected_reason, expected_section
    compared: bool  # False: the file holds no row for this configuration
    config: tuple[str, str, int]
    differences: list[str]  # one line per differing id: "id: why"
    stored_configs: list[tuple[str, str, int]]

    @property
    def as_expected(self) -> bool:
        return self.compared and not self.differences


def outcome(verdict: str, expected: str | None) -> str:
    """The word a table shows for a verdict against its expected verdict (None: not stored)."""
    if expected is None:
        return NEW
    if verdict == expected:
        return FINDING if verdict == FAIL else verdict
    return FAIL if verdict == FAIL else CHANGED


def _why(id_: str, verdict: str, row: Expected | None) -> str:
    if row is None:
        return f"{id_}: NEW, verdict {verdict}; no expected verdict stored for this id"
    if row.expected == FAIL:
        return (
            f"{id_}: CHANGED, expected FAIL (a known finding, {row.section}), now {verdict}: "
            "the finding no longer holds"
        )
    if verdict == FAIL:
        return f"{id_}: FAIL, expected {row.expected}"
    return f"{id_}: CHANGED, expected {row.expected}, now {verdict}"


def compare(
    predictions: pd.DataFrame,
    stored: Sequence[Expected],
    suite: str,
    scale: str,
    seed: int,
    complete: bool = True,
) -> Comparison:
    """Compare a run's ``predictions`` (columns id, verdict) with the stored rows of its
    configuration; ``complete`` False (a restricted run) does not report stored ids it lacks."""
    config = (suite, scale, seed)
    mine = {r.id: r for r in stored if r.config == config}
    configs = sorted({r.config for r in stored})
    table = predictions.copy()
    if not mine:
        table["expected"] = None
        table["outcome"] = table["verdict"]
        table["expected_reason"] = ""
        table["expected_section"] = ""
        return Comparison(table, False, config, [], configs)
    rows = [mine.get(i) for i in table["id"]]
    table["expected"] = [r.expected if r else None for r in rows]
    table["outcome"] = [outcome(v, r.expected if r else None) for v, r in zip(table["verdict"], rows)]
    table["expected_reason"] = [r.reason if r else "" for r in rows]
    table["expected_section"] = [r.section if r else "" for r in rows]
    differences = [
        _why(i, v, r)
        for i, v, r, o in zip(table["id"], table["verdict"], rows, table["outcome"])
        if o in (FAIL, CHANGED, NEW)
    ]
    if complete:
        produced = set(table["id"])
        differences += [
            f"{i}: missing, expected {r.expected} but the run has no such id"
            for i, r in mine.items()
            if i not in produced
        ]
    return Comparison(table, True, config, differences, configs)


def summary(comparison: Comparison, path: Path) -> list[str]:
    """The last lines a command prints: what was compared, and every differing id and why."""
    suite, scale, seed = comparison.config
    if not comparison.compared:
        stored = ", ".join(f"{s} {c} seed {n}" for s, c, n in comparison.stored_configs) or "nothing"
        fails = comparison.table.loc[comparison.table["verdict"] == FAIL, "id"].tolist()
        lines = [
            f"verdicts NOT compared: {path} stores no expected verdicts for {suite} at scale {scale}, "
            f"seed {seed} (it stores: {stored}); shown uncompared, every FAIL counts"
        ]
        if fails:
            lines.append(f"{len(fails)} rows FAIL (exit 1): " + ", ".join(fails))
        return lines
    if not comparison.differences:
        findings = int((comparison.table["outcome"] == FINDING).sum())
        return [f"every verdict as expected ({path}, {suite} {scale} seed {seed}; {findings} known findings)"]
    return [
        f"{len(comparison.differences)} verdicts differ from {path} ({suite} {scale} seed {seed}):",
        *(f"  {line}" for line in comparison.differences),
        "(store them deliberately with --update-expected once explained; docs/theory.md#expected-verdicts)",
    ]


def exit_code(comparison: Comparison) -> int:
    """0 when every verdict is as expected; uncompared, 0 only when nothing failed; else 1."""
    if comparison.compared:
        return 0 if comparison.as_expected else 1
    return 1 if (comparison.table["verdict"] == FAIL).any() else 0


def _segments_minus_one(id_: str) -> set[str]:
    parts = id_.split("/")
    return {"/".join(parts[:i] + parts[i + 1 :]) for i in range(len(parts))}


def updated_rows(
    stored: Sequence[Expected],
    predictions: pd.DataFrame,
    suite: str,
    scale: str,
    seed: int,
    complete: bool = True,
) -> tuple[list[Expected], list[str], list[str]]:
    """The file's rows with this configuration's replaced by the run's verdicts.

    Reasons and sections of expected FAILs are kept by id; a FAIL under an id that only gained
    one '/'-segment (a family, say) takes the reason of the unique vanished FAIL it extends.
    Returns (rows, notes on carried reasons, ids of FAILs that have no reason yet). A
    restricted run (``complete`` False) replaces only the ids it produced."""
    config = (suite, scale, seed)
    mine = {r.id: r for r in stored if r.config == config}
    produced = list(predictions["id"])
    vanished = {i: r for i, r in mine.items() if i not in set(produced) and r.expected == FAIL}
    new, notes, unexplained = [], [], []
    for id_, verdict in zip(produced, predictions["verdict"]):
        row = Expected(suite, scale, seed, id_, verdict)
        if verdict == FAIL:
            source = mine.get(id_) if id_ in mine and mine[id_].expected == FAIL else None
            if source is None:
                candidates = [r for i, r in vanished.items() if i in _segments_minus_one(id_)]
                if len(candidates) == 1:
                    source = candidates[0]
                    notes.append(f"{id_}: reason carried from {source.id}")
            if source is None:
                unexplained.append(id_)
            else:
                row = replace(row, reason=source.reason, section=source.section)
        new.append(row)
    kept_ids = set(produced)
    others = [r for r in stored if r.config != config or (not complete and r.id not in kept_ids)]
    return others + new, notes, unexplained


def write_update(path: Path, rows: Sequence[Expected]) -> str:
    """Validate ``rows`` as the file would be read, write them atomically; returns the diff."""
    before = FORMAT.render([]) if not Path(path).exists() else render_expected(load_expected(path))
    text = render_expected(rows)
    parse_expected(text, Path(path))
    diff = text_diff(before, text, Path(path))
    if diff:
        write_text_atomically(Path(path), text)
    return diff
