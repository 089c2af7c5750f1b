"""Stored accuracy baselines: the CSV format, its validation, the tolerance rule, the verdicts.

One row per (dataset, ways, shots, method, radii, scale). Paper rows (scale ``paper``) are
typed in from the papers and only shown next to the measurements. Measured rows (a scale such
as ``ci`` or ``gpu``) hold everything needed to re-run them (preset, iterations, seeds, test
episodes) and are re-run by the regression gate, which compares the seed-mean accuracy with
the stored one under the row's tolerance rule (derived from the stored CI and seed spread). This module knows nothing about training; the
real-data track measures (``realdata.baselines``).

The file is plain CSV with a fixed column order and number format, so that every
deliberate update is a readable ``git diff``. Reading it validates every cell; an error names
the file, the line and the column. Writing is atomic. The generic CSV machinery (columns, parsing with
file/line/column errors, rendering, diff) is ``infra.csvtable``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import METHODS
from infra.csvtable import (
    Column,
    CsvFileError,
    CsvFormat,
    parse_float,
    parse_int,
    parse_text,
    write_text_atomically,
)
from infra.verdicts import FAIL, PASS, SKIPPED

PAPER = "paper"  # the scale of rows typed in from a paper
REFERENCE_RULE = "reference only (paper row, not checked)"
# Rows of a study (``sharpmaml study --store-baselines SCALE``): measured here, too long to
# re-run in CI, kept as references next to the paper rows and the gate's rows.
STUDY_RULE = "reference only (study row, not re-run)"
REFERENCE_RULES = (REFERENCE_RULE, STUDY_RULE)
SEED_RULE = "max(ci95, 3*sqrt(2/n_seeds)*seed_std)"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+-]*\Z")


class BaselinesError(CsvFileError):
    """The baselines file is missing or invalid; the message names file, line and column."""


def seed_tolerance(ci95: float, seed_std: float, n_seeds: int) -> float:
    """Tolerance of ``SEED_RULE`` in accuracy points: ``max(ci95, 3*sqrt(2/n)*seed_std)``.

    ``seed_std`` is the spread of single-seed accuracies (over the row's ``spread_seeds``,
    more seeds than the gate re-runs), ``n`` the number of seeds the gate re-runs and
    averages. A re-run on another machine (other BLAS, other thread count) follows another
    float path; through Adam's normalised steps it ends about as far from the stored run as a
    re-draw of the training noise, so the difference of two n-seed means has a standard
    deviation of at most ``sqrt(2/n) * seed_std``, and 3 of them bound it with ~99.7%
    probability. The stored 95% CI over test episodes is the floor: a change smaller than it
    is not a finding. docs/baselines.md gives the measurements behind the rule.
    """
    return max(ci95, 3.0 * math.sqrt(2.0 / n_seeds) * seed_std)


# Tolerance rules by the text stored in the ``tolerance_rule`` column.
TOLERANCE_RULES: dict[str, Callable[[Baseline], float]] = {
    SEED_RULE: lambda row: seed_tolerance(row.ci95, row.seed_std, row.n_seeds),
}


def _seeds(value: str) -> tuple[int, ...]:
    parts = value.split()
    if not all(re.fullmatch(r"\d+", p) for p in parts):
        raise ValueError("training seeds: integers >= 0 separated by spaces, e.g. '0 1'")
    return tuple(int(p) for p in parts)


# The file's columns, in order. Empty cells are None (text: "", seeds: ()).
COLUMNS: tuple[Column, ...] = (
    Column("row_id", parse_text, empty=""),
    Column("scale", parse_text, empty=""),
    Column("dataset", parse_text, empty=""),
    Column("ways", parse_int),
    Column("shots", parse_int),
    Column("method", parse_text, empty=""),
    Column("alpha_low", parse_float),
    Column("alpha_up", parse_float),
    Column("accuracy", parse_float),
    Column("ci95", parse_float),
    Column("seed_std", parse_float),
    Column("n_episodes", parse_int),
    Column("n_seeds", parse_int),
    Column("seeds", _seeds, empty=()),
    Column("spread_seeds", _seeds, empty=()),
    Column("iterations", parse_int),
    Column("preset", parse_text, empty=""),
    Column("eval_inner_loop", parse_text, empty=""),
    Column("test_seed", parse_int),
    Column("source", parse_text, empty=""),
    Column("device", parse_text, empty=""),
    Column("git_sha", parse_text, empty=""),
    Column("date", parse_text, empty=""),
    Column("config_hash", parse_text, empty=""),
    Column("tolerance_rule", parse_text, empty=""),
    Column("note", parse_text, empty=""),
)
FORMAT = CsvFormat("baselines", COLUMNS, BaselinesError)
HEADER = FORMAT.header
REQUIRED = ("row_id", "scale", "dataset", "ways", "shots", "method", "accuracy")


@dataclass(frozen=True)
class Baseline:
    """One stored row (accuracy, ci95 and seed_std in percent points)."""

    row_id: str
    scale: str
    dataset: str
    ways: int
    shots: int
    method: str
    alpha_low: float | None
    alpha_up: float | None
    accuracy: float
    ci95: float | None
    seed_std: float | None
    n_episodes: int | None
    n_seeds: int | None
    seeds: tuple[int, ...]
    spread_seeds: tuple[int, ...]
    iterations: int | None
    preset: str
    eval_inner_loop: str
    test_seed: int | None
    source: str
    device: str
    git_sha: str
    date: str
    config_hash: str
    tolerance_rule: str
    note: str
    line: int = dataclasses.field(default=0, compare=False)  # line in the file (0: not read)

    @property
    def is_paper(self) -> bool:
        return self.scale == PAPER

    @property
    def is_reference(self) -> bool:
        """A row shown but never re-run by the gate: a paper row or a study row."""
        return self.tolerance_rule in REFERENCE_RULES

    def tolerance(self) -> float:
        """The row's tolerance in accuracy points (measured rows only)."""
        return TOLERANCE_RULES[self.tolerance_rule](self)


def error_at(path: Path, line: int, column: str | None, message: str) -> BaselinesError:
    """The error for a cell (or a line, when ``column`` is None) of a baselines file."""
    return FORMAT.error_at(path, line, column, message)  # type: ignore[return-value]


def _check_row(path: Path, row: Baseline) -> None:
    """Rules across the cells of one row; the error names the first offending column."""

    def need(ok: bool, column: str, expected: str) -> None:
        if not ok:
            shown = FORMAT.column(column).format(getattr(row, column))
            got = repr(shown) if shown else "an empty cell"
            raise error_at(path, row.line, column, f"expected {expected}, got {got}")

    need(bool(_NAME.match(row.row_id)), "row_id", "a name of letters, digits, '_', '.', ':', '+', '-'")
    need(bool(_NAME.match(row.scale)), "scale", f"'{PAPER}' or the name of a measured scale")
    need(bool(row.dataset), "dataset", "a dataset name")
    need(row.ways >= 2, "ways", "an integer >= 2")
    need(row.shots >= 1, "shots", "an integer >= 1")
    need(bool(_NAME.match(row.method)), "method", "a method name")
    need(0 <= row.accuracy <= 100, "accuracy", "a percentage in [0, 100]")
    for column in ("alpha_low", "alpha_up", "ci95", "seed_std"):
        value = getattr(row, column)
        need(value is None or value >= 0, column, "a number >= 0 or an empty cell")
    need(bool(row.source), "source", "where the number comes from")
    if row.is_paper:
        need(
            row.source.lower().startswith("paper"),
            "source",
            "a source starting with 'paper:' (authors, venue, table, arXiv version)",
        )
        need(row.tolerance_rule == REFERENCE_RULE, "tolerance_rule", repr(REFERENCE_RULE))
        return
    need(row.method in METHODS, "method", f"one of {list(METHODS)} for a measured row")
    need(row.alpha_low is not None, "alpha_low", "the lower radius (0 if unused)")
    need(row.alpha_up is not None, "alpha_up", "the upper radius (0 if unused)")
    need(row.ci95 is not None, "ci95", "the 95% CI half-width of the stored accuracy")
    need(
        bool(row.seeds) and len(set(row.seeds)) == len(row.seeds),
        "seeds",
        "distinct training seeds, e.g. '0 1'",
    )
    need(row.n_seeds == len(row.seeds), "n_seeds", f"the number of seeds listed ({len(row.seeds)})")
    need(
        set(row.seeds) <= set(row.spread_seeds) and len(set(row.spread_seeds)) == len(row.spread_seeds),
        "spread_seeds",
        "distinct training seeds including those of 'seeds' (the seeds behind seed_std)",
    )
    need(
        row.seed_std is not None or len(row.spread_seeds) < 2,
        "seed_std",
        "the spread (std, ddof=1) of the accuracies over spread_seeds",
    )
    need(row.n_episodes is not None and row.n_episodes >= 1, "n_episodes", "an integer >= 1")
    need(row.iterations is not None and row.iterations >= 1, "iterations", "an integer >= 1")
    need(bool(row.preset), "preset", "the preset the row was trained with")
    need(bool(row.eval_inner_loop), "eval_inner_loop", "the test-time inner loop")
    need(row.test_seed is not None and row.test_seed >= 0, "test_seed", "an integer >= 0")
    for column in ("device", "git_sha", "date", "config_hash"):
        need(bool(getattr(row, column)), column, "the provenance of the measurement")
    need(
        row.tolerance_rule in TOLERANCE_RULES or row.tolerance_rule == STUDY_RULE,
        "tolerance_rule",
        f"one of {[*TOLERANCE_RULES, STUDY_RULE]}",
    )
    need(
        len(row.spread_seeds) >= 2 or row.tolerance_rule != SEED_RULE,
        "spread_seeds",
        f"at least 2 seeds for the rule {SEED_RULE!r}",
    )


def parse_baselines(text: str, path: Path) -> list[Baseline]:
    """Rows of a baselines CSV text (``path`` only names the file in errors)."""
    rows = []
    for line, values in FORMAT.parse(text, path, REQUIRED):
        row = Baseline(**values, line=line)
        _check_row(path, row)
        rows.append(row)
    _check_unique(path, rows)
    return rows


def _check_unique(path: Path, rows: Sequence[Baseline]) -> None:
    """Row ids are unique, and so is the setting of every measured row."""
    ids: dict[str, int] = {}
    settings: dict[tuple[Any, ...], int] = {}
    for row in rows:
        if row.row_id in ids:
            raise error_at(path, row.line, "row_id", f"duplicate row_id; line {ids[row.row_id]} has the same")
        ids[row.row_id] = row.line
        if row.is_paper:
            continue
        key = (row.dataset, row.ways, row.shots, row.method, row.alpha_low, row.alpha_up, row.scale)
        if key in settings:
            raise error_at(
                path,
                row.line,
                None,
                "duplicate (dataset, ways, shots, method, alpha_low, alpha_up, scale); "
                f"line {settings[key]} has the same",
            )
        settings[key] = row.line


def load_baselines(path: Path) -> list[Baseline]:
    """Read and validate a baselines file; BaselinesError if it is missing or invalid."""
    missing = "expected the CSV of stored rows (create or refresh rows with `sharpmaml baselines update --scale ci`)"
    return parse_baselines(FORMAT.read_text(path, missing), Path(path))


def render_baselines(rows: Iterable[Baseline]) -> str:
    """The CSV text of ``rows``: fixed column order and number formats, '\\n' line ends."""
    return FORMAT.render(rows)


def replace_rows(rows: Sequence[Baseline], new: Sequence[Baseline]) -> list[Baseline]:
    """``rows`` with each row of ``new`` in place of the row with its id (appended if new)."""
    by_id = {r.row_id: r for r in new}
    merged = [by_id.pop(r.row_id, r) for r in rows]
    return merged + [r for r in new if r.row_id in by_id]


def write_baselines(path: Path, rows: Sequence[Baseline]) -> str:
    """Validate ``rows`` as a file would be, then write them atomically; returns the text."""
    text = render_baselines(rows)
    parse_baselines(text, Path(path))
    write_text_atomically(Path(path), text)
    return text


@dataclass(frozen=True)
class Measured:
    """A run of a row (percent): the mean accuracy over its ``seeds`` and the 95% CI over
    episodes of that mean, and the spread (std, ddof=1) over ``spread_seeds`` (None: one seed)."""

    accuracy: float
    ci95: float
    seed_std: float | None
    seeds: tuple[int, ...]
    spread_seeds: tuple[int, ...]
    n_episodes: int
    config_hash: str
    device: str
    elapsed_s: float
    failure: str = ""  # why the run gives no comparable number (e.g. diverged); '' if none


def judge(stored: Baseline, measured: Measured) -> tuple[str, str, float]:
    """(verdict, reason, tolerance) of a re-run against its stored row.

    FAIL when the run failed, when the row's settings changed (config hash), and when the
    accuracy moved beyond the tolerance in either direction: a drop is a regression, a rise
    must be stored deliberately (``sharpmaml baselines update``) before the gate passes.
    """
    tolerance = stored.tolerance()
    if measured.failure:
        return FAIL, measured.failure, tolerance
    if measured.config_hash != stored.config_hash:
        return (
            FAIL,
            (
                f"settings changed (config hash {stored.config_hash} stored, "
                f"{measured.config_hash} now): the stored number no longer describes "
                f"this run; re-measure with `sharpmaml baselines update --rows "
                f"{stored.row_id}`"
            ),
            tolerance,
        )
    delta = measured.accuracy - stored.accuracy
    if delta < -tolerance:
        return FAIL, f"dropped {-delta:.2f} points, beyond the tolerance {tolerance:.2f}", tolerance
    if delta > tolerance:
        return (
            FAIL,
            (
                f"improved {delta:.2f} points, beyond the tolerance {tolerance:.2f}: store it "
                f"deliberately with `sharpmaml baselines update --rows {stored.row_id}`"
            ),
            tolerance,
        )
    return PASS, "", tolerance


def check_row(stored: Baseline, measured: Measured | None, skip_reason: str = "") -> dict[str, Any]:
    """One row of the gate's table; ``measured`` None means skipped for ``skip_reason``."""
    row: dict[str, Any] = {
        "row_id": stored.row_id,
        "dataset": stored.dataset,
        "ways": stored.ways,
        "shots": stored.shots,
        "method": stored.method,
        "alpha_low": stored.alpha_low,
        "alpha_up": stored.alpha_up,
        "scale": stored.scale,
        "stored": stored.accuracy,
        "stored_ci95": stored.ci95,
        "stored_seed_std": stored.seed_std,
    }
    if measured is None:
        return {
            **row,
            "measured": math.nan,
            "measured_ci95": math.nan,
            "measured_seed_std": math.nan,
            "delta": math.nan,
            "tolerance": stored.tolerance(),
            "verdict": SKIPPED,
            "reason": skip_reason,
            "n_seeds": stored.n_seeds,
            "n_episodes": stored.n_episodes,
            "iterations": stored.iterations,
            "elapsed_s": math.nan,
        }
    verdict, reason, tolerance = judge(stored, measured)
    return {
        **row,
        "measured": measured.accuracy,
        "measured_ci95": measured.ci95,
        "measured_seed_std": math.nan if measured.seed_std is None else measured.seed_std,
        "delta": measured.accuracy - stored.accuracy,
        "tolerance": tolerance,
        "verdict": verdict,
        "reason": reason,
        "n_seeds": len(measured.seeds),
        "n_episodes": measured.n_episodes,
        "iterations": stored.iterations,
        "elapsed_s": measured.elapsed_s,
    }


def gate_failed(rows: Iterable[dict[str, Any]]) -> bool:
    """True if any row of the gate's table failed."""
    return any(r["verdict"] == FAIL for r in rows)
