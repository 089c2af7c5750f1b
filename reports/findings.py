"""The findings summary: one line per claim with its verdict and reason, rows of one cause grouped.

A claim is a check: the prediction id up to its first '/' ("rate.bound/maml/B8" ->
"rate.bound"). Passing, N/A and INFO rows of a claim make one line. Failing rows are grouped
by their cause, read from the data: the section of docs/theory.md that explains an expected
failure (the predictions table's ``expected_section``, when the suite wrote it), else the id's
group (up to the first '.' or '/'), so "flat.follows_robust/E2/alpha=0.3" and
"flat.curvature/E2-d5/alpha=0.5" are one finding whose settings are listed. Where the table
has an ``outcome`` column (FINDING, CHANGED, ...) the line shows it; else the raw verdict.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from infra.verdicts import FAIL, NOT_APPLICABLE, PASS, VACUOUS
from reports.tables import fmt, is_missing, verdict_rank
from reports.theory import theory_anchor

FAILING = {"CHANGED", FAIL, "NEW", "FINDING"}  # the words of rows that broke their rule
# An N/A row's details when a family lacks a capability the check needs (synthetic.checks).
LACKS = re.compile(r"needs (?P<need>\w+) \((?P<what>.*)\), which (?P<family>\S+) does not provide")
NOT_APPLICABLE_ANCHOR = "theory-verdict-na"  # docs/theory.md, "Verdict N/A"


def claim_of(prediction_id: str) -> str:
    """A row's claim: its id up to the first '/' ("rate.bound/maml/B8" -> "rate.bound")."""
    return str(prediction_id).split("/", 1)[0]


def group_of(prediction_id: str) -> str:
    """A prediction's group: its id up to the first '/' or '.' ("rate.bound/maml/B8" -> "rate")."""
    return re.split(r"[./]", str(prediction_id), maxsplit=1)[0]


@dataclass(frozen=True)
class Finding:
    """One line of the summary."""

    track: str
    claim: str
    statement: str
    source: str
    word: str
    counts: str
    reason: str
    settings: str
    anchor: str  # the report's predictions table of the first row
    theory: str = ""  # the report's anchor of the explaining section of docs/theory.md, if any


def _text(value: Any) -> str:
    return "" if is_missing(value) else str(value).strip()


def _number_first(value: str) -> tuple[int, float, str]:
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def _listed(values: list[str], limit: int = 4) -> str:
    return (
        ", ".join(values)
        if len(values) <= limit
        else f"{', '.join(values[:limit])} and {len(values) - limit} more"
    )


def varying_settings(ids: Iterable[str]) -> str:
    """The parts of the ids (after the claim) that tell the rows apart, each value once:
    'key=value' parts by key wherever they sit, other parts by position;
    ['flat.x/E2/alpha=0.3', 'flat.y/E2-d5/alpha=0.5'] -> 'E2, E2-d5; alpha = 0.3, 0.5'."""
    parts = [str(i).split("/")[1:] for i in ids]
    keyed: dict[str, list[str]] = {}
    plain: dict[int, list[str]] = {}
    for row in parts:
        for k, part in enumerate(row):
            key, eq, value = part.partition("=")
            eq = eq if re.fullmatch(r"[A-Za-z_]\w*", key) else ""
            bucket = keyed.setdefault(key, []) if eq else plain.setdefault(k, [])
            entry = value if eq else part
            if entry not in bucket:
                bucket.append(entry)
    out = [_listed(v) for _, v in sorted(plain.items()) if len(v) > 1 or len(parts) == 1]
    out += [
        f"{k} = {_listed(sorted(v, key=_number_first))}"
        for k, v in keyed.items()
        if len(v) > 1 or len(parts) == 1
    ]
    return "; ".join(out)


def _spans(part: pd.DataFrame) -> str:
    """'measured -0.47 to -0.46, predicted -0.5' over the rows that have numbers."""
    pieces = []
    for column in ("measured", "predicted"):
        if column in part:
            values = sorted(float(v) for v in part[column] if not is_missing(v) and np.isfinite(float(v)))
            if values:
                lo, hi = fmt(values[0], 3), fmt(values[-1], 3)
                pieces.append(f"{column} {lo}" + ("" if lo == hi else f" to {hi}"))
    return ", ".join(pieces)


def _counts(words: Iterable[str]) -> str:
    counts: dict[str, int] = {}
    for w in words:
        counts[w] = counts.get(w, 0) + 1
    return ", ".join(
        f"{n} {w}" for w, n in sorted(counts.items(), key=lambda kv: (verdict_rank(kv[0]), kv[0]))
    )


def prediction_findings(
    predictions: pd.DataFrame,
    track: str,
    anchor_of: Callable[[str], str],
    theory_titles: dict[str, str],
    theory_of: Callable[[str], str] = lambda claim: "",
) -> list[Finding]:
    """The summary lines of one suite's predictions table.

    ``anchor_of(id)`` is the report anchor of the table holding the row; ``theory_titles`` maps
    the report's anchors of docs/theory.md sections to their titles (empty without the document),
    ``theory_of(claim)`` the anchor of the section that states a claim ('' if none).
    """
    frame = predictions.assign(_order=range(len(predictions)))
    words = frame["outcome"] if "outcome" in frame else frame["verdict"]
    frame = frame.assign(_word=[_text(w) or _text(v) for w, v in zip(words, frame["verdict"])])
    sections = frame["expected_section"] if "expected_section" in frame else pd.Series("", index=frame.index)

    def cause(row: pd.Series, section: Any) -> tuple[str, str]:
        if row["_word"] in FAILING:
            return ("section", _text(section)) if _text(section) else ("group", group_of(row["id"]))
        return ("claim", claim_of(row["id"]))

    keys = [cause(row, section) for (_, row), section in zip(frame.iterrows(), sections)]
    frame = frame.assign(_cause=keys)
    lines = []
    for key, part in frame.groupby("_cause", sort=False):
        lines.append(_finding(track, key, part, anchor_of, theory_titles, theory_of))
    return sorted(lines, key=lambda f: verdict_rank(f.word))


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _first_sentence(text: str) -> str:
    return re.split(r"(?<=\.) (?=[A-Z])", text, maxsplit=1)[0]


def not_applicable_reason(rows: pd.DataFrame) -> str:
    """Why rows are N/A, from their details: 'E2, H1 lack quadratic (a quadratic F's exact
    Hessian...)' for a family that lacks a capability, else each distinct first sentence."""
    lacking: dict[tuple[str, str], list[str]] = {}
    other: list[str] = []
    for details in rows.get("details", pd.Series(dtype=str)):
        text = _text(details)
        match = LACKS.fullmatch(text)
        if match:
            families = lacking.setdefault((match["need"], match["what"]), [])
            families += [match["family"]] if match["family"] not in families else []
        elif text and _first_sentence(text) not in other:
            other.append(_first_sentence(text))
    parts = [
        f"{_listed(families)} lack{'s' * (len(families) == 1)} {need} ({what})"
        for (need, what), families in lacking.items()
    ]
    return "; ".join(parts + other) or "no reason recorded in the rows' details"


def _reason_of_findings(reasons: list[str]) -> str:
    """The expected file's reason of a finding; of several (one per family or claim), the first up
    to its first ';' and how many more there are (the theory statement explains them all)."""
    if len(reasons) == 1:
        return reasons[0]
    first = reasons[0].split("; ", 1)[0]
    return f"{first} (and {len(reasons) - 1} related reason{'s' * (len(reasons) > 2)}: see the statement)"


def _finding(
    track: str,
    key: tuple[str, str],
    part: pd.DataFrame,
    anchor_of: Callable[[str], str],
    theory_titles: dict[str, str],
    theory_of: Callable[[str], str],
) -> Finding:
    kind, name = key
    word = min(part["_word"], key=verdict_rank)
    claims = list(dict.fromkeys(part["id"].map(claim_of)))
    na = part[part["_word"] == NOT_APPLICABLE]
    stated = part[part["_word"] != NOT_APPLICABLE] if len(na) < len(part) else part  # N/A rows say little
    statements = list(
        dict.fromkeys(_text(s) for s in stated.get("prediction", pd.Series(dtype=str)) if _text(s))
    )
    theory = ""
    if kind == "section":
        theory = theory_anchor(name)
    reasons = list(
        dict.fromkeys(_text(r) for r in part.get("expected_reason", pd.Series(dtype=str)) if _text(r))
    )
    failing = part[part["_word"].isin(FAILING)]
    if reasons:
        reason = _reason_of_findings(reasons)
    elif len(failing):
        rules = list(
            dict.fromkeys(_text(t) for t in failing.get("tolerance", pd.Series(dtype=str)) if _text(t))
        )
        reason = f"{len(failing)} of {len(part)} rows break their rule" + (
            f" ({'; '.join(rules[:2])})" if rules else ""
        )
        if len(claims) == 1 and _spans(failing):
            reason += f": {_spans(failing)}"
    elif len(na) == len(part):
        reason = "not applicable: " + not_applicable_reason(na)
    else:
        judged = part[part["_word"].isin({PASS, VACUOUS})]
        reason = _spans(judged if len(judged) else part[part["_word"] != NOT_APPLICABLE])
        if len(na):
            reason += f"; {len(na)} of {len(part)} rows N/A: {not_applicable_reason(na)}"
    first = statements[0] if statements else claims[0]
    statement = theory_titles.get(theory) or _short(first, 160 if len(statements) < 2 else 100)
    if len(na) == len(part):  # one row per family the check cannot run on
        statement = f"the {', '.join(claims)} check{'s' * (len(claims) > 1)} on a family it cannot run on"
    elif len(statements) > 1 and not theory_titles.get(theory):
        statement += f" (and {len(statements) - 1} related statement{'s' * (len(statements) > 2)})"
    if len(na) == len(part):
        theory = NOT_APPLICABLE_ANCHOR  # what N/A means and that it is never a failure
    elif not theory:
        theory = next((theory_of(c) for c in claims if theory_of(c)), "")
    source = ", ".join(dict.fromkeys(_text(s) for s in part.get("source", pd.Series(dtype=str)) if _text(s)))
    return Finding(
        track=track,
        claim=", ".join(claims),
        statement=statement,
        source=source,
        word=word,
        counts=_counts(part["_word"]),
        reason=reason,
        settings=varying_settings(part["id"]),
        anchor=anchor_of(str(part["id"].iloc[0])),
        theory=theory if theory in theory_titles else "",
    )
