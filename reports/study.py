"""The report's section for the paired Sharp-MAML vs MAML study (``sharpmaml study``'s tables).

Reads ``<results>/realdata/study/{paired,inner_loops,curves}.parquet`` (write them with
``sharpmaml study SWEEP_DIR --out results/realdata/study``) and shows the paired-difference
table with its verdicts (and, for a sweep's candidate variants, the difference to the method
each derives from), the test-time inner loop comparison, and three figures: the paired gain
over MAML against the measured cost per iteration, accuracy vs iteration per setting with the
seed band, and accuracy vs gradient evaluations spent. Tables written before variants existed
(no ``variant`` column) read as plain methods. Columns: docs/realdata.md, "Study".
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure as MplFigure

from reports.figures import PANEL_HEIGHT, PANEL_WIDTH, Figure, finish, styled
from reports.items import Section, Text, unavailable
from reports.methods import line_style, method_label, method_rank
from reports.store import ResultsReader
from reports.tables import fmt_ci, is_missing, make_table, verdict_counts

STUDY_DIR = "realdata/study"
COMMANDS = (
    "sharpmaml sweep SPEC --out DIR",
    f"sharpmaml study DIR --out results/{STUDY_DIR}",
)
PAIRED_NEEDS = {
    "method",
    "alpha_low",
    "alpha_up",
    "eval_inner_loop",
    "accuracy",
    "maml_accuracy",
    "diff",
    "diff_ci95",
    "verdict",
    "mdd",
    "grad_ratio",
    "time_ratio",
}


SETTING = ["method", "variant", "alpha_low", "alpha_up"]
VARIANT_MARKERS = ("D", "P", "X", "*", "h")  # a variant: its parent's colour, another marker


def with_variants(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a ``variant`` column ('' for plain methods, also in older tables)."""
    variant = frame["variant"].fillna("") if "variant" in frame.columns else ""
    return frame.assign(variant=variant)


def setting_label(row: Any) -> str:
    """'Sharp-MAML_both (alpha 0.05)': the method and, when it perturbs, its radius; a variant's
    label after the method ('Sharp-MAML_up + up_k5 (alpha 0.05)')."""
    radius = max(float(row["alpha_low"]), float(row["alpha_up"]))
    variant = row.get("variant", "")
    name = method_label(row["method"]) + (f" + {variant}" if variant and not is_missing(variant) else "")
    return name + (f" (alpha {radius:g})" if radius > 0 else "")


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    frame = with_variants(frame)
    order = frame.assign(
        _rank=frame["method"].map(method_rank),
        _plain=frame["variant"] != "",
        _radius=-frame[["alpha_low", "alpha_up"]].max(axis=1),
    )
    keys = ["_rank", "_plain", "variant", "_radius"]
    return order.sort_values(keys, kind="stable").drop(columns=["_rank", "_plain", "_radius"])


def _line(
    method: str, radius: float, largest: float, variant: str = "", variants: tuple[str, ...] = ()
) -> dict:
    """A method's look; a smaller radius hollow and dotted; a variant dashed with its own marker."""
    st = line_style(method)
    if variant:
        markers = [m for m in VARIANT_MARKERS if m != st["marker"]]  # never its parent's marker
        st = {**st, "linestyle": "--", "marker": markers[variants.index(variant) % len(markers)]}
    return st if radius >= largest else {**st, "linestyle": ":", "markerfacecolor": "white"}


def _variant_names(frame: pd.DataFrame) -> tuple[str, ...]:
    return tuple(sorted(v for v in set(frame["variant"]) if v))


def paired_rows(paired: pd.DataFrame, loop: str) -> list[list[Any]]:
    rows = []
    equal_compute = "eqc_verdict" in paired.columns
    parents = "parent_verdict" in paired.columns
    for r in _sorted(paired[paired["eval_inner_loop"] == loop]).to_dict("records"):
        row = [
            setting_label(r),
            fmt_ci(r["accuracy"], None),
            fmt_ci(r["maml_accuracy"], None),
            fmt_ci(r["diff"], r["diff_ci95"]),
            r["verdict"],
            r["mdd"],
            r["grad_ratio"],
            r["time_ratio"],
        ]
        if equal_compute:
            row += [fmt_ci(r["eqc_diff"], r["eqc_diff_ci95"]), r["eqc_verdict"]]
        if parents:
            plain = not r["variant"]
            row += [
                "" if plain else fmt_ci(r["parent_diff"], r["parent_diff_ci95"]),
                "" if plain else r["parent_verdict"],
                None if plain else r["parent_time_ratio"],
            ]
        rows.append(row)
    return rows


def paired_table(paired: pd.DataFrame, loop: str) -> Any:
    columns = [
        "setting",
        "accuracy (%)",
        "MAML (%)",
        "difference, 95% CI",
        "verdict",
        "detectable (points)",
        "gradients x MAML",
        "time x MAML",
    ]
    if "eqc_verdict" in paired.columns:
        columns += ["difference at equal compute", "verdict at equal compute"]
    if "parent_verdict" in paired.columns:
        columns += ["difference to its method, 95% CI", "verdict vs its method", "time x its method"]
    first = paired.iloc[0]
    note = (
        f"Mean test accuracy over {int(first.get('n_pairs', 0))} training seeds at {int(first['iterations'])} "
        f"iterations, test-time inner loop '{loop}'; difference to MAML paired on the same seeds "
        "(Student t); 'detectable': the smallest true difference a paired t-test finds with 80% power "
        "at this number of seeds."
    )
    if "maml_equal_compute_iterations" in paired.columns:
        note += (
            f" Equal compute: against MAML trained {int(first['maml_equal_compute_iterations'])} iterations, "
            "as many gradient evaluations as Sharp-MAML_both spends."
        )
    if "parent_verdict" in paired.columns:
        note += (
            " A setting named 'method + label' is a candidate variant of that method (other engine "
            "options, the spec's [variants.label]); it is also paired with the plain method at the same "
            "radii on the same seeds ('its method')."
        )
    return make_table(
        columns,
        paired_rows(paired, loop),
        caption=f"Paired difference to MAML (inner loop '{loop}')",
        note=note,
        verdict_columns=("verdict", "verdict at equal compute", "verdict vs its method"),
        digits=3,
    )


def inner_loop_table(loops: pd.DataFrame) -> Any:
    rows = [
        [
            setting_label(r),
            fmt_ci(r["same"], None),
            fmt_ci(r["plain"], None),
            fmt_ci(r["diff"], r["diff_ci95"]),
            r["verdict"],
        ]
        for r in _sorted(loops).to_dict("records")
    ]
    return make_table(
        ["setting", "same (%)", "plain (%)", "plain - same, 95% CI", "verdict"],
        rows,
        caption="Test-time inner loop: plain steps vs the training loop ('same')",
        note="Same checkpoints and test episodes, paired over seeds; BETTER means plain steps score higher.",
    )


@styled
def curve_figure(curves: pd.DataFrame) -> Figure | None:
    """Accuracy vs iteration per setting: mean over seeds with its 95% CI band (test and validation)."""
    splits = [s for s in ("test", "val") if s in set(curves["split"])]
    if not splits:
        return None
    fig = MplFigure(figsize=(PANEL_WIDTH * len(splits), PANEL_HEIGHT), layout="constrained")
    axes = fig.subplots(1, len(splits), squeeze=False)[0]
    curves = with_variants(curves)
    largest = float(curves[["alpha_low", "alpha_up"]].max(axis=1).max())
    variants = _variant_names(curves)
    rows = []
    for ax, split in zip(axes, splits):
        part = curves[curves["split"] == split]
        if split == "test":
            part = part[part["eval_inner_loop"] == part["eval_inner_loop"].iloc[0]]
        for key, series in _sorted(part).groupby(SETTING, sort=False):
            series = series.sort_values("iteration")
            first = series.iloc[0]
            st = _line(key[0], max(key[2], key[3]), largest, key[1], variants)
            x, y = series["iteration"].to_numpy(float), series["mean"].to_numpy(float)
            half = np.nan_to_num(series["ci95"].to_numpy(float))
            ax.fill_between(x, y - half, y + half, color=st["color"], alpha=0.15, linewidth=0)
            ax.plot(x, y, label=setting_label(first), **st)
            rows += [[split, setting_label(first), int(i), m, c] for i, m, c in zip(x, y, series["ci95"])]
        ax.set(
            xlabel="meta-iteration",
            ylabel="accuracy (%)",
            title=f"{split} accuracy (mean, 95% CI over seeds)",
        )
    final = curves[(curves["split"] == "test")]
    alt = "Mean accuracy over seeds per meta-iteration. " + (
        "; ".join(
            f"{setting_label(r)} {r['mean']:.1f}% at {int(r['iteration'])}"
            for r in _sorted(final.loc[final.groupby(SETTING)["iteration"].idxmax()]).to_dict("records")
        )
        if not final.empty
        else ""
    )
    table = make_table(["split", "setting", "iteration", "mean (%)", "95% CI (±)"], rows)
    return finish(fig, "fig-study-curves", "Accuracy vs meta-iteration (seed bands)", alt, table)


@styled
def compute_figure(curves: pd.DataFrame) -> Figure | None:
    """Test accuracy vs gradient evaluations spent (the points evaluated), mean ± 95% CI over seeds."""
    test = curves[curves["split"] == "test"]
    if test.empty:
        return None
    test = with_variants(test[test["eval_inner_loop"] == test["eval_inner_loop"].iloc[0]])
    fig = MplFigure(figsize=(PANEL_WIDTH * 1.4, PANEL_HEIGHT), layout="constrained")
    ax = fig.subplots()
    largest = float(test[["alpha_low", "alpha_up"]].max(axis=1).max())
    variants = _variant_names(test)
    rows = []
    for key, series in _sorted(test).groupby(SETTING, sort=False):
        series = series.sort_values("grad_evals")
        label = setting_label(series.iloc[0])
        st = _line(key[0], max(key[2], key[3]), largest, key[1], variants)
        ax.errorbar(
            series["grad_evals"],
            series["mean"],
            yerr=np.nan_to_num(series["ci95"]),
            capsize=3,
            label=label,
            **st,
        )
        rows += [
            [label, int(g), int(i), m, c]
            for g, i, m, c in series[["grad_evals", "iteration", "mean", "ci95"]].itertuples(index=False)
        ]
    ax.set(
        xlabel="gradient evaluations of the task loss (per run)",
        ylabel="test accuracy (%)",
        title="accuracy vs compute",
    )
    alt = "Test accuracy against gradient evaluations spent: " + "; ".join(
        f"{r[0]} {r[3]:.1f}% after {r[1]} evaluations" for r in rows
    )
    table = make_table(["setting", "gradient evaluations", "iteration", "mean (%)", "95% CI (±)"], rows)
    return finish(fig, "fig-study-compute", "Accuracy vs compute", alt, table)


@styled
def cost_accuracy_figure(paired: pd.DataFrame, loop: str) -> Figure | None:
    """One point per setting: x its measured training time per iteration relative to MAML, y its
    paired difference to MAML with the 95% CI (inner loop ``loop``); MAML itself at (1, 0)."""
    part = with_variants(paired[paired["eval_inner_loop"] == loop])
    part = part[np.isfinite(part["time_ratio"].astype(float)) & np.isfinite(part["diff"].astype(float))]
    if part.empty:
        return None
    fig = MplFigure(figsize=(PANEL_WIDTH * 1.4, PANEL_HEIGHT * 1.2), layout="constrained")
    ax = fig.subplots()
    ax.axhline(0, color="0.45", linewidth=0.9, zorder=0)
    ax.plot([1.0], [0.0], linestyle="none", marker="o", color="black", label="MAML (reference)")
    largest = float(part[["alpha_low", "alpha_up"]].max(axis=1).max())
    variants = _variant_names(part)
    rows = []
    for r in _sorted(part).to_dict("records"):
        label = setting_label(r)
        st = _line(r["method"], max(r["alpha_low"], r["alpha_up"]), largest, r["variant"], variants)
        ax.errorbar(
            [r["time_ratio"]],
            [r["diff"]],
            yerr=[np.nan_to_num(r["diff_ci95"])],
            capsize=4,
            markersize=8,
            label=label,
            **{**st, "linestyle": "none"},
        )
        rows.append(
            [label, r["time_ratio"], f"{r['diff']:+.2f} ± {np.nan_to_num(r['diff_ci95']):.2f}", r["verdict"]]
        )
    ax.set(
        xlabel="training time per meta-iteration (x MAML, measured in the same sweep)",
        ylabel="test accuracy - MAML (points)",
        title=f"gain over MAML vs cost (paired over seeds, inner loop '{loop}')",
    )
    finding = "Paired difference to MAML (95% CI) at its cost per iteration: " + "; ".join(
        f"{name} {diff} at x{ratio:.2f} ({verdict})" for name, ratio, diff, verdict in rows
    )
    table = make_table(["setting", "time x MAML", "difference to MAML, 95% CI", "verdict"], rows, digits=3)
    return finish(fig, "fig-study-cost", "Gain over MAML vs cost per iteration", finding, table)


def study_section(reader: ResultsReader) -> Section:
    """The study's section: verdicts first, then the tables and the two figures."""
    section = Section("study", "Paired study: Sharp-MAML vs MAML on the same seeds")
    path = f"{STUDY_DIR}/paired.parquet"
    paired = reader.table(path, PAIRED_NEEDS)
    if paired is not None and paired.empty:
        reader.reject(reader.root / path, "no rows")
        paired = None
    if paired is None:
        section.items.append(unavailable(reader, path, f"the study tables ({STUDY_DIR}/*.parquet)", COMMANDS))
        section.status = f"could not use {path}" if path in reader.unusable else "not run"
        return section
    loops = list(dict.fromkeys(paired["eval_inner_loop"]))
    primary = paired[paired["eval_inner_loop"] == loops[0]]
    counts = verdict_counts(primary["verdict"])
    section.status = ", ".join(f"{n} {v}" for v, n in counts.items()) + " vs MAML"
    preset = ", ".join(sorted(set(map(str, paired.get("preset", pd.Series(["?"]))))))
    section.items.append(
        Text(
            f"Preset {preset}: each setting against MAML trained on the same seeds (same initial "
            "parameters and training episodes), scored on the same fixed test episodes. BETTER / WORSE: "
            "the 95% CI of the paired difference excludes 0; NOT DETECTED: it holds 0, and only a true "
            "difference above the 'detectable' column would likely have been seen."
        )
    )
    for loop in loops:
        section.items.append(paired_table(paired, loop))
    inner = reader.table(f"{STUDY_DIR}/inner_loops.parquet")
    if inner is not None and not inner.empty:
        section.items.append(inner_loop_table(inner))
    if "time_ratio" in paired.columns:
        figure = cost_accuracy_figure(paired, loops[0])
        if figure is not None:
            section.items.append(figure)
    curves = reader.table(f"{STUDY_DIR}/curves.parquet")
    if curves is not None and not curves.empty:
        for figure in (curve_figure(curves), compute_figure(curves)):
            if figure is not None:
                section.items.append(figure)
    return section
