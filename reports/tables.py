"""Report tables: every cell is formatted here once, so the template only lays them out.

Verdict cells keep their word (PASS, FAIL, ...) and get a class for a colour that only
repeats what the word says.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from infra.verdicts import FAIL, INFO, NOT_APPLICABLE, PASS, SKIPPED, VACUOUS

MISSING = "—"
# Order of verdict and outcome words wherever they are counted or sorted: news first (a changed
# or new failure), then explained findings, then what holds. CHANGED, NEW and FINDING are the
# outcomes of comparing a verdict with the expected one (docs/theory.md, "Expected verdicts").
VERDICT_ORDER = ("CHANGED", FAIL, "NEW", "FINDING", PASS, VACUOUS, NOT_APPLICABLE, INFO, SKIPPED)


def verdict_rank(verdict: Any) -> int:
    """Sort key of a verdict or outcome word (VERDICT_ORDER), anything else last."""
    text = str(verdict)
    return VERDICT_ORDER.index(text) if text in VERDICT_ORDER else len(VERDICT_ORDER)


def is_missing(value: Any) -> bool:
    """None, NaN and pandas' NA count as missing."""
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def fmt(value: Any, digits: int = 4) -> str:
    """A cell's text: numbers to ``digits`` significant figures, missing values as a dash."""
    if is_missing(value):
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        if 10**digits <= abs(float(value)) < 1e15:  # 21934.2 -> "21934", not "2.193e+04"
            return f"{float(value):.0f}"
        return f"{float(value):.{digits}g}"
    return str(value)


def is_number(value: Any) -> bool:
    """A real number that is not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def fmt_ci(mean: Any, ci: Any, digits: int = 2) -> str:
    """'mean ± ci' with fixed decimals (accuracies in percent); the mean alone without a CI."""
    if is_missing(mean):
        return MISSING
    if is_missing(ci):
        return f"{float(mean):.{digits}f}"
    return f"{float(mean):.{digits}f} ± {float(ci):.{digits}f}"


def verdict_class(verdict: str) -> str:
    """CSS class of a verdict cell ("v-fail", "v-pass", "v-n-a", ...)."""
    return "verdict v-" + (re.sub(r"[^a-z0-9]+", "-", verdict.lower()).strip("-") or "none")


@dataclass(frozen=True)
class Cell:
    """One table cell: its text and CSS classes."""

    text: str
    cls: str = ""
    href: str = ""  # an anchor inside the report ("#..."): the cell links there
    span: int = 0  # columns spanned (a group's heading row is one cell over every column)


@dataclass(frozen=True)
class Table:
    """A captioned table of formatted cells (``note`` is shown under it)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    caption: str = ""
    note: str = ""
    footnotes: tuple[str, ...] = ()
    anchor: str = ""
    stack: bool = False  # on a narrow screen each row becomes a card of 'column: value' lines
    kind: str = field(default="table", init=False)

    def __len__(self) -> int:
        return len(self.rows)


def make_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    caption: str = "",
    note: str = "",
    verdict_columns: Sequence[str] = ("verdict",),
    digits: int = 4,
    footnotes: Sequence[str] = (),
    anchor: str = "",
    stack: bool = False,
) -> Table:
    """A Table from raw values: numbers right-aligned, verdict columns marked; ``stack``: a card
    per row on a narrow screen (for wide tables of few rows)."""
    verdict_at = {i for i, c in enumerate(columns) if c in verdict_columns}
    out = []
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            if isinstance(value, Cell):
                cells.append(value)
            elif i in verdict_at and not is_missing(value):
                cells.append(Cell(str(value), verdict_class(str(value))))
            else:
                numeric = is_number(value) and not is_missing(value)
                cells.append(Cell(fmt(value, digits), "num" if numeric else ""))
        out.append(tuple(cells))
    return Table(tuple(columns), tuple(out), caption, note, tuple(footnotes), anchor, stack)


def frame_table(
    frame: pd.DataFrame,
    columns: dict[str, str],
    caption: str = "",
    note: str = "",
    digits: int = 4,
    anchor: str = "",
) -> Table:
    """A Table of the ``columns`` (source name -> header) of a frame; absent columns are dashes."""
    rows = [[record.get(name) for name in columns] for record in frame.to_dict("records")]
    headers = list(columns.values())
    verdicts = [columns[name] for name in columns if name in ("verdict", "outcome")]
    return make_table(headers, rows, caption, note, verdict_columns=verdicts, digits=digits, anchor=anchor)


def verdict_counts(verdicts: Iterable[Any]) -> dict[str, int]:
    """Count of each verdict word, in VERDICT_ORDER then alphabetical for other words."""
    counts: dict[str, int] = {}
    for v in verdicts:
        if not is_missing(v):
            counts[str(v)] = counts.get(str(v), 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (verdict_rank(kv[0]), kv[0])))
