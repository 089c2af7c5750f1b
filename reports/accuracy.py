"""Real-data accuracy for the report: one table per setting with the paper next to the measurement.

Each setting (dataset, ways, shots) gets the paper's rows for this project's methods, the
measured rows (test-set evaluations, over training seeds) and the stored measured baselines,
each with its iterations, seeds, accuracy ± 95% CI and its difference from MAML of the same
origin (the same paper, the same preset, the same stored scale). Citations and caveats (the
baselines file's ``source`` and ``note``) are footnotes. Stored rows come through the baselines
loader (realdata.baselines.format), so paper and measured rows are told apart by the same rule
as the regression gate's (``Baseline.is_paper``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import stdtrit

from realdata.baselines.format import Baseline
from reports.methods import is_method, method_label, method_rank
from reports.tables import Cell, Table, fmt, fmt_ci, is_missing, make_table, verdict_class, verdict_rank

SETTING_KEYS = ["dataset", "ways", "shots"]
# What every setting table's columns mean: said once, above the tables.
SETTING_TABLES_NOTE = (
    "One table per setting: the papers' rows, the rows measured here (per preset and test-time inner "
    "loop) and the stored baselines. Δ vs MAML compares rows of the same origin (the same paper, "
    "preset or stored scale); measured differences are paired over the training seeds both methods "
    "ran when there are two or more, else unpaired with the CIs combined in quadrature. Paper rows "
    "have no seeds and, where the paper gives none, no CI. Gate: the regression gate's verdict for "
    "the row. Citations and caveats are the footnotes under each table."
)
ROW_KEYS = SETTING_KEYS + ["method", "alpha_low", "alpha_up"]


def setting_name(row: Any) -> str:
    """'omniglot 5-way 1-shot' of a record (dict or Baseline)."""
    get = row.get if isinstance(row, dict) else lambda k: getattr(row, k)
    return f"{get('dataset')} {int(get('ways'))}-way {int(get('shots'))}-shot"


def radius_key(value: Any) -> str:
    """Radii as comparable text (missing -> '')."""
    return "" if is_missing(value) else f"{float(value):.6g}"


def radii_text(row: dict[str, Any]) -> str:
    parts = [
        f"{k} = {fmt(row.get(k))}"
        for k in ("alpha_low", "alpha_up")
        if not is_missing(row.get(k)) and float(row.get(k)) != 0
    ]
    return ", ".join(parts) or "—"


def t_ci(values: Iterable[float]) -> float:
    """95% CI half-width of the mean of ``values``: t(0.975, n-1) sd / sqrt(n) (NaN below 2)."""
    v = np.asarray(list(values), float)
    return float(stdtrit(len(v) - 1, 0.975) * v.std(ddof=1) / math.sqrt(len(v))) if len(v) >= 2 else math.nan


def aggregate_evaluations(evaluations: pd.DataFrame) -> pd.DataFrame:
    """One row per setting, method, radii, preset and test-time inner loop, over training seeds.

    The last evaluation of each seed counts. One seed: its test-episode CI. Several seeds:
    mean of the seed means ± t(0.975, n-1) * sd / sqrt(n), the spread over seeds. The column
    ``per_seed`` keeps {seed: accuracy} for paired differences.
    """
    frame = evaluations.copy()
    for col in ("preset", "eval_inner_loop", "seed", "iterations", "n_episodes"):
        if col not in frame:
            frame[col] = np.nan
    keys = ROW_KEYS + ["preset", "eval_inner_loop"]
    frame = frame.assign(_lo=frame["alpha_low"].map(radius_key), _up=frame["alpha_up"].map(radius_key))
    frame = frame.fillna({"preset": "", "eval_inner_loop": ""})
    group_keys = SETTING_KEYS + ["method", "_lo", "_up", "preset", "eval_inner_loop"]
    frame = frame.drop_duplicates(group_keys + ["seed"], keep="last")
    rows = []
    for _, part in frame.groupby(group_keys, sort=True, dropna=False):
        first = part.iloc[0]
        n = len(part)
        if n == 1:
            ci, basis = float(first["ci95"]), f"{fmt(first['n_episodes'])} test episodes"
        else:
            ci, basis = t_ci(part["accuracy"]), f"t over {n} seeds"
        rows.append(
            {
                **{k: first[k] for k in keys},
                "seeds": n,
                "accuracy": float(part["accuracy"].mean()),
                "ci95": ci,
                "ci_basis": basis,
                "iterations": ", ".join(sorted({fmt(v) for v in part["iterations"]})),
                "per_seed": {fmt(s): float(a) for s, a in zip(part["seed"], part["accuracy"])},
            }
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Difference:
    """A method's accuracy minus MAML's of the same origin, with its 95% CI and how it was formed."""

    value: float
    ci95: float
    basis: str

    def text(self) -> str:
        if is_missing(self.value):
            return "—"
        ci = "" if is_missing(self.ci95) else f" ± {self.ci95:.2f}"
        return f"{self.value:+.2f}{ci} ({self.basis})"


def difference(row: dict[str, Any], maml: dict[str, Any] | None) -> Difference | None:
    """``row`` − ``maml`` in points: paired over the common training seeds when there are two or
    more, else unpaired with the CIs combined in quadrature; no CI where either row has none."""
    if maml is None or row is maml:
        return None
    mine, theirs = row.get("per_seed") or {}, maml.get("per_seed") or {}
    common = sorted(set(mine) & set(theirs))
    if len(common) >= 2:
        diffs = [mine[s] - theirs[s] for s in common]
        return Difference(float(np.mean(diffs)), t_ci(diffs), f"paired over {len(common)} seeds")
    ci = math.hypot(row["ci95"], maml["ci95"])
    return Difference(
        row["accuracy"] - maml["accuracy"], ci, "unpaired" if math.isfinite(ci) else "no CI given"
    )


@dataclass
class Footnotes:
    """Numbered footnotes, each distinct text once, in order of first use."""

    texts: list[str] = field(default_factory=list)

    def mark(self, text: str) -> str:
        """'[n]' for ``text`` (numbered on first use); '' for an empty text."""
        if not text:
            return ""
        if text not in self.texts:
            self.texts.append(text)
        return f"[{self.texts.index(text) + 1}]"

    def lines(self) -> tuple[str, ...]:
        return tuple(f"[{i + 1}] {t}" for i, t in enumerate(self.texts))


def short_source(source: str, limit: int = 40) -> str:
    """A citation short enough for a cell: 'paper: Finn et al., MAML, ICML 2017 (PMLR 70; ...)' ->
    'Finn et al., MAML, ICML 2017'; 'reproduced here: sharpmaml ...' -> 'reproduced here'."""
    text = re.split(r"[(;:]| = ", source.removeprefix("paper:"), maxsplit=1)[0].strip(" ,")
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def citation(row: Baseline, notes: Footnotes) -> str:
    """A stored row's short source with a footnote holding the full citation and the row's note."""
    full = row.source.removeprefix("paper:").strip() + (f". Note: {row.note}" if row.note else "")
    return f"{short_source(row.source)} {notes.mark(full)}".strip()


def _stored_record(row: Baseline) -> dict[str, Any]:
    return {
        "method": row.method,
        "alpha_low": row.alpha_low,
        "alpha_up": row.alpha_up,
        "accuracy": row.accuracy,
        "ci95": math.nan if row.ci95 is None else row.ci95,
        "per_seed": {},
    }


def setting_table(
    setting: str,
    measured: list[dict[str, Any]],
    stored: list[Baseline],
    check: list[dict[str, Any]],
) -> Table:
    """Paper rows, measured rows and stored measured baselines of one setting, each with its
    difference from MAML of the same origin."""
    notes = Footnotes()
    rows: list[list[Any]] = []
    papers: dict[str, list[Baseline]] = {}
    for r in stored:
        if r.is_paper and is_method(r.method):
            papers.setdefault(r.source, []).append(r)
    for part in papers.values():
        maml = next((_stored_record(r) for r in part if r.method == "maml"), None)
        for r in sorted(part, key=lambda r: method_rank(r.method)):
            record = _stored_record(r)
            diff = difference(record, maml) if r.method != "maml" else None
            rows.append(
                [
                    "paper",
                    method_label(r.method),
                    radii_text(record),
                    fmt(r.iterations),
                    fmt(r.n_seeds),
                    fmt_ci(r.accuracy, r.ci95),
                    diff.text() if diff else "—",
                    "—",
                    citation(r, notes),
                ]
            )
    by_origin: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in measured:
        by_origin.setdefault((r["preset"], r["eval_inner_loop"]), []).append(r)
    for (preset, loop), part in sorted(by_origin.items()):
        maml = next((r for r in part if r["method"] == "maml" and radii_text(r) == "—"), None)
        for r in sorted(part, key=lambda r: (method_rank(r["method"]), radii_text(r))):
            diff = difference(r, maml)
            gate = [g for g in check if _same_row(g, r)]
            rows.append(
                [
                    f"measured ({preset or 'no preset'}"
                    + (f", test inner loop {loop}" if loop else "")
                    + ")",
                    method_label(r["method"]),
                    radii_text(r),
                    r["iterations"],
                    str(r["seeds"]),
                    f"{fmt_ci(r['accuracy'], r['ci95'])} ({r['ci_basis']})",
                    diff.text() if diff else "—",
                    _gate_cell(gate),
                    "this run",
                ]
            )
    scales: dict[str, list[Baseline]] = {}
    for r in stored:
        if not r.is_paper:
            scales.setdefault(r.scale, []).append(r)
    for scale, part in sorted(scales.items()):
        maml = next((_stored_record(r) for r in part if r.method == "maml"), None)
        for r in sorted(part, key=lambda r: (method_rank(r.method), radius_key(r.alpha_low))):
            record = _stored_record(r)
            diff = difference(record, maml) if r.method != "maml" else None
            gate = [g for g in check if str(g.get("row_id")) == r.row_id]
            rows.append(
                [
                    f"stored baseline ({scale})",
                    method_label(r.method),
                    radii_text(record),
                    fmt(r.iterations),
                    fmt(r.n_seeds),
                    fmt_ci(r.accuracy, r.ci95),
                    diff.text() if diff else "—",
                    _gate_cell(gate),
                    citation(r, notes),
                ]
            )
    return make_table(
        [
            "origin",
            "method",
            "radii",
            "iterations",
            "seeds",
            "accuracy % ± 95% CI",
            "Δ vs MAML (points, 95% CI)",
            "gate",
            "source",
        ],
        rows,
        caption=f"{setting}: the paper next to the measurement",
        footnotes=notes.lines(),
        stack=True,
    )


def _same_row(gate: dict[str, Any], row: dict[str, Any]) -> bool:
    keys_match = all(fmt(gate.get(k)) == fmt(row.get(k)) for k in SETTING_KEYS + ["method"])
    return keys_match and all(
        radius_key(gate.get(k)) == radius_key(row.get(k)) for k in ("alpha_low", "alpha_up")
    )


def _gate_cell(gate: list[dict[str, Any]]) -> Cell | str:
    worst = min((str(g["verdict"]) for g in gate), key=verdict_rank, default=None)
    return "—" if worst is None else Cell(worst, verdict_class(worst))


def setting_tables(measured: pd.DataFrame, stored: list[Baseline], check: pd.DataFrame | None) -> list[Table]:
    """One table per setting that has a measured row or a paper/stored row of this project's methods."""
    measured_rows = measured.to_dict("records") if not measured.empty else []
    checks = check.to_dict("records") if check is not None else []
    names = {setting_name(r) for r in measured_rows} | {
        setting_name(r) for r in stored if is_method(r.method)
    }
    order = sorted(names, key=lambda n: (n.split()[0], [int(x) for x in re.findall(r"\d+", n)]))
    return [
        setting_table(
            name,
            [r for r in measured_rows if setting_name(r) == name],
            [r for r in stored if setting_name(r) == name],
            [g for g in checks if setting_name(g) == name],
        )
        for name in order
    ]


def setting_key(row: Any) -> tuple[str, int, int]:
    """Sort key of a setting: dataset, then ways and shots as numbers (5-way before 20-way)."""
    get = row.get if isinstance(row, dict) else lambda k: getattr(row, k)
    return (str(get("dataset")), int(get("ways")), int(get("shots")))


def radii_pair(record: dict[str, Any]) -> str:
    """'0.05 / 0' (lower / upper radius) for a perturbing method; '—' for one that perturbs nothing."""
    return "—" if radii_text(record) == "—" else f"{fmt(record['alpha_low'])} / {fmt(record['alpha_up'])}"


def stored_table(stored: list[Baseline]) -> Table:
    """Every stored row in one compact table: a heading row per setting (in the setting tables'
    order), one line per row, citations and notes as footnotes."""
    notes = Footnotes()
    columns = ["method", "scale", "α low / up", "accuracy % ± 95% CI", "seeds", "iterations", "source"]
    rows: list[list[Any]] = []
    ordered = sorted(
        stored, key=lambda r: (setting_key(r), not r.is_paper, r.source, method_rank(r.method), r.method)
    )
    for i, r in enumerate(ordered):
        if i == 0 or setting_name(r) != setting_name(ordered[i - 1]):
            rows.append([Cell(setting_name(r), "group", span=len(columns))])
        rows.append(
            [
                method_label(r.method),
                r.scale,
                radii_pair(_stored_record(r)),
                fmt_ci(r.accuracy, r.ci95),
                fmt(r.n_seeds),
                fmt(r.iterations),
                citation(r, notes),
            ]
        )
    return make_table(
        columns,
        rows,
        caption="Stored baselines (paper rows and rows measured here)",
        footnotes=notes.lines(),
    )
