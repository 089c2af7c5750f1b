"""The real-data outcome for the summary: one line per paired study, else per measured setting.

A paired study (``sharpmaml study``'s ``paired`` table: each setting minus MAML trained on the
same seeds, with its paired 95% CI and verdict) is the answer to "does Sharp-MAML beat MAML on
real data", so its result leads: the preset, seeds, iterations and test-time inner loop, then
the settings grouped by verdict with their differences, then the verdicts at equal compute.
Without a study the line says plainly that no paired comparison exists yet, and gives the
measured accuracies with their seeds and iterations, and the unpaired difference (or the paired
one, when the measured runs share two or more training seeds).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from reports.accuracy import difference, radii_text, setting_name
from reports.methods import method_rank
from reports.study import setting_label
from reports.tables import fmt, fmt_ci, is_missing, verdict_rank

STUDY_COMMANDS = "sharpmaml sweep SPEC, then sharpmaml study DIR"
STUDY_WORDS = ("BETTER", "WORSE", "NOT DETECTED")  # a study's verdicts, decided ones first


def _setting(row: dict[str, Any]) -> str:
    """'Sharp-MAML_both (alpha 0.05)', a candidate variant after its method (the study's labels)."""
    return setting_label(
        {"alpha_low": 0.0, "alpha_up": 0.0, **{k: v for k, v in row.items() if not is_missing(v)}}
    )


def _order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Method order, plain methods before their variants, larger radii first."""
    return sorted(
        rows,
        key=lambda r: (
            method_rank(r["method"]),
            bool(_variant(r)),
            _variant(r),
            -max(float(r.get("alpha_low") or 0), float(r.get("alpha_up") or 0)),
        ),
    )


def _variant(row: dict[str, Any]) -> str:
    value = row.get("variant")
    return "" if is_missing(value) or not value else str(value)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _distinct(rows: list[dict[str, Any]], key: str) -> str:
    return ", ".join(sorted({fmt(r[key]) for r in rows if not is_missing(r.get(key))})) or "?"


def _by_verdict(rows: list[dict[str, Any]], diff: str, ci: str, verdict: str) -> str:
    """'WORSE: C -10.81 ± 1.92; NOT DETECTED: A -1.56 ± 5.67, B +1.20 ± 8.29'."""
    words = sorted(
        {str(r[verdict]) for r in rows},
        key=lambda w: (STUDY_WORDS.index(w) if w in STUDY_WORDS else len(STUDY_WORDS), verdict_rank(w), w),
    )
    return "; ".join(
        f"{word}: "
        + ", ".join(
            f"{_setting(r)} {float(r[diff]):+.2f} ± {float(r[ci]):.2f}"
            for r in rows
            if str(r[verdict]) == word
        )
        for word in words
    )


def study_line(name: str, paired: pd.DataFrame) -> str:
    """The headline of the paired study stored under ``name`` (its folder in the store), at its
    first test-time inner loop (the study's own primary one)."""
    loops = list(dict.fromkeys(paired["eval_inner_loop"])) if "eval_inner_loop" in paired else [None]
    part = paired[paired["eval_inner_loop"] == loops[0]] if loops[0] is not None else paired
    rows = _order(part.to_dict("records"))
    pairs = _distinct(rows, "n_pairs") if "n_pairs" in part else "?"
    context = [
        name,
        f"preset {_distinct(rows, 'preset')}" if "preset" in part else "",
        f"{pairs} training seed{'' if pairs == '1' else 's'} per setting",
        f"{_distinct(rows, 'iterations')} iterations" if "iterations" in part else "",
        f"test-time inner loop '{loops[0]}'" if loops[0] is not None else "",
    ]
    line = (
        f"Real data, paired study ({'; '.join(c for c in context if c)}): accuracy minus MAML's "
        f"on the same seeds, in points, 95% CI: {_by_verdict(rows, 'diff', 'diff_ci95', 'verdict')}."
    )
    if {"eqc_diff", "eqc_diff_ci95", "eqc_verdict"} <= set(part.columns):
        budget = (
            f" (MAML trained {_distinct(rows, 'maml_equal_compute_iterations')} iterations)"
            if "maml_equal_compute_iterations" in part
            else ""
        )
        line += f" At equal compute{budget}: {_by_verdict(rows, 'eqc_diff', 'eqc_diff_ci95', 'eqc_verdict')}."
    return line


def _measured(row: dict[str, Any]) -> str:
    return (
        f"{_setting(row)} {fmt_ci(row['accuracy'], row['ci95'])}% "
        f"({_plural(int(row['seeds']), 'seed')}, {row['iterations'] or '?'} iterations)"
    )


def measured_line(setting: str, preset: str, loop: str, rows: list[dict[str, Any]]) -> str:
    """The headline of one measured setting: paired over common seeds where the runs allow,
    else 'no paired comparison yet' with the unpaired numbers."""
    rows = _order(rows)
    where = (
        f"Real data, {setting} (preset {preset or 'none'}"
        + (f", test-time inner loop '{loop}'" if loop else "")
        + ")"
    )
    maml = next((r for r in rows if r["method"] == "maml" and radii_text(r) == "—"), None)
    others = [r for r in rows if r is not maml]
    if maml is None or not others:
        return f"{where}: no paired comparison yet ({STUDY_COMMANDS}); measured: {', '.join(map(_measured, rows))}."
    diffs = [(r, difference(r, maml)) for r in others]
    paired = [(r, d) for r, d in diffs if d is not None and d.basis.startswith("paired")]
    unpaired = [(r, d) for r, d in diffs if d is not None and not d.basis.startswith("paired")]
    parts = [f"{_setting(r)} minus MAML {d.text()}" for r, d in paired]
    if unpaired:
        parts.append(
            f"no paired comparison yet for {', '.join(_setting(r) for r, _ in unpaired)} (fewer than 2 "
            f"training seeds shared with MAML; {STUDY_COMMANDS}); measured: "
            + ", ".join(_measured(r) for r in [maml, *(r for r, _ in unpaired)])
            + "; unpaired difference (CIs combined in quadrature): "
            + ", ".join(f"{_setting(r)} {d.text().removesuffix(' (unpaired)')}" for r, d in unpaired)
        )
    return f"{where}: " + "; ".join(parts) + " points."


def outcome_lines(measured: pd.DataFrame, studies: dict[str, pd.DataFrame]) -> list[str]:
    """The real-data outcome: a line per paired study when there is one, else a line per measured
    setting, preset and test-time inner loop."""
    lines = [study_line(name, paired) for name, paired in sorted(studies.items()) if not paired.empty]
    if lines:
        return lines
    if measured.empty:
        return [f"Real data: no measured accuracy and no paired study yet ({STUDY_COMMANDS})."]
    out = []
    for setting, part in measured.groupby(measured.apply(setting_name, axis=1), sort=True):
        for (preset, loop), rows in part.groupby(["preset", "eval_inner_loop"], sort=True):
            out.append(measured_line(setting, preset, loop, rows.to_dict("records")))
    return out
