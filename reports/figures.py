"""The report's figures: matplotlib without pyplot (no global state), seaborn's colour-blind palette.

Each figure comes back as SVG (base64, for an ``<img>`` data URI) with alt text that states
its numeric finding and a Table of the numbers drawn. The SVG is byte-identical for the
same data: fixed hash salt, no date or creator metadata, text kept as text.
"""

from __future__ import annotations

import base64
import functools
import io
import re
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib
import matplotlib.colors
import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure as MplFigure
from matplotlib.lines import Line2D

from reports.methods import METHOD_LOOKS, line_style, method_label, method_rank
from reports.tables import Table, fmt, make_table
from synthetic.theory import NEAR_FRACTION, loglog_slope, r1_bound

QUANTILES = (0.1, 0.9)
BAND = f"{int(QUANTILES[0] * 100)}–{int(QUANTILES[1] * 100)}% quantile band"
# A white grid (what seaborn's "whitegrid" sets), written out so that no seaborn (and no pyplot) is imported.
RC = {
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "axes.edgecolor": "0.8",
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "0.8",
    "grid.linestyle": "-",
    "axes.labelcolor": "0.15",
    "text.color": "0.15",
    "xtick.color": "0.15",
    "ytick.color": "0.15",
    "xtick.direction": "out",
    "ytick.direction": "out",
    "xtick.bottom": False,
    "ytick.left": False,
    "lines.solid_capstyle": "round",
    "font.family": ["sans-serif"],
    "font.sans-serif": ["DejaVu Sans", "Liberation Sans", "sans-serif"],
    "svg.hashsalt": "sharp-maml-bench",
    "svg.fonttype": "none",
    "font.size": 9,
    "axes.titlesize": 10,
    "legend.fontsize": 8,
    "lines.linewidth": 1.6,
    "lines.markersize": 5,
}
# Reference lines (bounds, predicted slopes) are black and thin, never in a method's colour or style:
# a bound dashed, a predicted slope dash-dotted.
BOUND_LINE = {"color": "black", "linestyle": "--", "linewidth": 1.2}
SLOPE_LINE = {"color": "black", "linestyle": (0, (7, 2, 1.5, 2)), "linewidth": 1.1}
SVG_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}
PANEL_WIDTH, PANEL_HEIGHT = 5.0, 3.3


@dataclass(frozen=True)
class Figure:
    """One rendered figure: its alt text (what it draws), its finding (the caption's numbers)
    and the table of the numbers behind it."""

    id: str
    title: str
    alt: str
    svg_base64: str
    table: Table
    finding: str
    kind: str = field(default="figure", init=False)

    @property
    def data_uri(self) -> str:
        return "data:image/svg+xml;base64," + self.svg_base64


def styled(build: Callable[..., Figure | None]) -> Callable[..., Figure | None]:
    """Run a figure builder inside the report's matplotlib style (rcParams), start to SVG."""

    @functools.wraps(build)
    def wrapper(*args: Any, **kwargs: Any) -> Figure | None:
        with matplotlib.rc_context(RC):
            return build(*args, **kwargs)

    return wrapper


def svg_bytes(fig: MplFigure) -> bytes:
    """The figure as SVG without the XML prolog and DOCTYPE (nothing for a viewer to fetch)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", metadata=SVG_METADATA)
    return re.sub(rb"\A.*?(?=<svg)", b"", buffer.getvalue(), flags=re.S)


def new_figure(rows: int, cols: int, width: float = PANEL_WIDTH) -> tuple[MplFigure, np.ndarray]:
    """A figure of rows x cols panels (an array of Axes)."""
    fig = MplFigure(figsize=(width * cols, PANEL_HEIGHT * rows), layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False)


def shared_legend(fig: MplFigure) -> None:
    """One legend below the panels with every distinct label, so no data is hidden under it."""
    entries: dict[str, Any] = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if entries:
        room = fig.get_figwidth() * 12 / max(len(label) + 6 for label in entries)  # ~12 characters per inch
        fig.legend(
            list(entries.values()),
            list(entries),
            loc="outside lower center",
            ncols=int(np.clip(room, 1, min(3, len(entries)))),
            frameon=False,
        )


def _axis(label: str, scale: str) -> str:
    return label + (f" ({scale} scale)" if scale in ("log", "symlog") else "")


def describe(fig: MplFigure) -> str:
    """Alt text of what a figure draws, read from the figure itself: its panels (titles), axes
    (labels, log scales) and series (legend entries); the caption states the numbers."""
    panels = [ax for ax in fig.axes if ax.get_visible()]
    titles = [ax.get_title() or ax.get_title(loc="left") for ax in panels]
    axes = list(
        dict.fromkeys(
            f"x: {_axis(ax.get_xlabel(), ax.get_xscale())}; y: {_axis(ax.get_ylabel(), ax.get_yscale())}"
            for ax in panels
            if ax.get_xlabel() or ax.get_ylabel()
        )
    )
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    for ax in panels:
        labels += [label for label in ax.get_legend_handles_labels()[1] if not label.startswith("_")]
    series = list(dict.fromkeys(labels))
    text = f"{'Chart' if len(panels) == 1 else f'{len(panels)} panels'}"
    if any(titles):
        text += " (" + "; ".join(t for t in titles if t) + ")"
    text += ". " + " | ".join(axes) + "."
    if series:
        text += " Drawn: " + ", ".join(series) + "."
    return text


def finish(fig: MplFigure, fid: str, title: str, finding: str, table: Table, legend: bool = True) -> Figure:
    """Render a figure (with the shared legend) to a Figure record: the finding for its caption,
    a description of what it draws for its alt text."""
    if legend:
        shared_legend(fig)
    data = base64.b64encode(svg_bytes(fig)).decode("ascii")
    return Figure(fid, title, describe(fig), data, table, finding)


def value_ticks(ax: Axes, values: Iterable[float]) -> None:
    """Major ticks at the values drawn (plain numbers), no minor tick labels on a log axis."""
    values = sorted(set(float(v) for v in values))
    ax.set_xticks(values, [fmt(v) for v in values])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def quantile_band(values: np.ndarray) -> dict[str, np.ndarray]:
    """Median, mean and the quantile band over the rows (samples) of a (samples, x) array."""
    with np.errstate(all="ignore"):
        lo, hi = np.nanquantile(values, QUANTILES, axis=0)
        return {
            "median": np.nanmedian(values, axis=0),
            "mean": np.nanmean(values, axis=0),
            "lo": lo,
            "hi": hi,
            "n": np.sum(np.isfinite(values), axis=0),
        }


def draw_band(
    ax: Axes,
    x: np.ndarray,
    stats: dict[str, np.ndarray],
    label: str,
    st: dict[str, Any],
    markevery: int | None = None,
) -> None:
    """Median line with markers and a translucent quantile band in the same colour."""
    ax.fill_between(x, stats["lo"], stats["hi"], color=st["color"], alpha=0.18, linewidth=0)
    ax.plot(x, stats["median"], label=label, markevery=markevery, **st)


def slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Log-log slope over the finite positive points (NaN with fewer than two)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(y) & (y > 0) & (x > 0)
    return loglog_slope(x[ok], y[ok]) if ok.sum() >= 2 else float("nan")


def span(values: Iterable[float]) -> str:
    """'a to b' (or 'a' when equal) of finite values, three significant figures."""
    finite = sorted(v for v in values if np.isfinite(v))
    if not finite:
        return "n/a"
    lo, hi = fmt(finite[0], 3), fmt(finite[-1], 3)
    return lo if lo == hi else f"{lo} to {hi}"


SCHEDULE_LABELS = {"sqrt": "alpha ~ 1/sqrt T", "quarter": "alpha ~ 1/T^(1/4)"}


def series_name(method: str, schedule: str) -> str:
    """'MAML' or 'Sharp-MAML_up, alpha ~ 1/sqrt T' for a rate run."""
    if schedule in ("", "none"):
        return method_label(method)
    return f"{method_label(method)}, {SCHEDULE_LABELS.get(schedule, schedule)}"


def runs_of(runs: pd.DataFrame, check: str) -> pd.DataFrame:
    """The synthetic runs rows of one check (none when the table has no check column)."""
    return runs[runs["check"] == check] if "check" in runs else runs.iloc[0:0]


def _method_order(pair: tuple[str, str]) -> tuple[int, str, str]:
    return (method_rank(pair[0]), *pair)


SeriesKey = tuple[float, str, str]  # (batch size, method, schedule)


def method_panels(
    frame: pd.DataFrame,
    x: str,
    value: str,
    extra: Callable[[Axes, SeriesKey, dict[str, np.ndarray]], None] | None = None,
    markevery: int | None = None,
) -> tuple[MplFigure, np.ndarray, dict[SeriesKey, dict[str, np.ndarray]]]:
    """Panels batch size x schedule of a rate-style frame, one band per (method, schedule).

    Methods without a schedule (MAML, FO-MAML) appear in every schedule's panel. Samples are
    the seeds (column ``seed_index``). ``extra(ax, key, stats)`` draws reference lines.
    Returns the figure, its axes and the band statistics of every series (x in "x").
    """
    series: dict[SeriesKey, dict[str, np.ndarray]] = {}
    for (batch, method, sch), part in frame.groupby(["batch_size", "method", "schedule"], sort=True):
        table = part.pivot_table(index="seed_index", columns=x, values=value)
        series[(batch, method, sch)] = {"x": table.columns.to_numpy(float), **quantile_band(table.to_numpy())}
    batches = sorted({k[0] for k in series})
    schedules = sorted({k[2] for k in series} - {"none"}) or ["none"]
    fig, axes = new_figure(len(batches), len(schedules))
    for i, batch in enumerate(batches):
        for j, schedule in enumerate(schedules):
            ax = axes[i, j]
            keys = sorted(
                ((m, s) for b, m, s in series if b == batch and s in (schedule, "none")), key=_method_order
            )
            for k, (method, sch) in enumerate(keys):
                stats = series[(batch, method, sch)]
                draw_band(ax, stats["x"], stats, series_name(method, sch), line_style(method, k), markevery)
                if extra is not None:
                    extra(ax, (batch, method, sch), stats)
            title = f"B = {fmt(batch)}" + (
                f", {SCHEDULE_LABELS.get(schedule, schedule)}" if schedule != "none" else ""
            )
            ax.set(xscale="log", yscale="log", title=title)
    return fig, axes, series


# ----- synthetic: rate (R1) ------------------------------------------------------------------

R1_METHODS = ("maml", "sharp_up")  # the rate check bounds these methods' rows by R1


def r1_by_T(part: pd.DataFrame, constants: dict[str, float]) -> dict[float, float]:
    """R1 at each T of one series, from its lanes' eta and alpha (NaN without the constants)."""
    out = {}
    for T, lanes_ in part.groupby("T", sort=True):
        first = lanes_.iloc[0]
        try:
            out[float(T)] = r1_bound(
                constants["Delta"],
                float(first["eta"]),
                int(T),
                constants["L_bar"],
                float(first["alpha"]),
                constants["sigma2"],
                int(first["batch_size"]),
            )
        except (KeyError, ValueError):
            out[float(T)] = float("nan")
    return out


@styled
def rate_figure(runs: pd.DataFrame, constants: dict[str, float]) -> Figure | None:
    """G_avg(T) against T (log-log) per method with seed bands, R1 and the −1/2 slope."""
    rate = runs_of(runs, "rate")
    if rate.empty:
        return None
    r1 = {
        key: r1_by_T(part, constants)
        for key, part in rate.groupby(["batch_size", "method", "schedule"], sort=True)
        if key[1] in R1_METHODS
    }

    def references(ax: Axes, key: SeriesKey, stats: dict[str, np.ndarray]) -> None:
        if key[1] == "maml":
            ax.plot(
                stats["x"],
                [r1[key][T] for T in stats["x"]],
                label="R1 bound (MAML)",
                **BOUND_LINE,
            )
            ax.plot(
                stats["x"],
                stats["mean"][0] * (stats["x"] / stats["x"][0]) ** -0.5,
                label="predicted slope −1/2 (through MAML's first mean)",
                **SLOPE_LINE,
            )

    fig, axes, series = method_panels(rate, "T", "grad_norm2_avg", references)
    for ax in axes.flat:
        ax.set(xlabel="run length T", ylabel="G_avg(T)")
        value_ticks(ax, rate["T"])
    rows, findings = [], []
    for batch in sorted({k[0] for k in series}):
        keys = sorted(((m, s) for b, m, s in series if b == batch), key=_method_order)
        slopes, ratios = {}, []
        for method, sch in keys:
            stats = series[(batch, method, sch)]
            bounds = np.asarray([r1.get((batch, method, sch), {}).get(T, np.nan) for T in stats["x"]])
            ratios += [r for r in stats["mean"] / bounds if np.isfinite(r)]
            slopes[(method, sch)] = slope(stats["x"], stats["mean"])
            for row in zip(
                stats["x"],
                stats["n"],
                stats["mean"],
                stats["median"],
                stats["lo"],
                stats["hi"],
                bounds,
                stats["mean"] / bounds,
            ):
                rows.append([batch, series_name(method, sch), *row])
        findings.append(_rate_finding(batch, series, slopes, ratios))
    table = make_table(
        ["B", "series", "T", "seeds", "mean G_avg", "median", "q10", "q90", "R1", "mean / R1"], rows
    )
    title = "Convergence rate (R1): G_avg(T), the mean of ||grad F(theta_t)||² over a run of length T"
    return finish(fig, "fig-rate", title, " ".join(findings) + f" Lines: seed medians; bands: {BAND}.", table)


def _rate_finding(
    batch: float,
    series: dict[SeriesKey, dict[str, np.ndarray]],
    slopes: dict[tuple[str, str], float],
    ratios: list[float],
) -> str:
    horizons = series[next(k for k in series if k[0] == batch)]["x"]
    maml = slopes.get(("maml", "none"), float("nan"))
    sharp = [v for (m, _), v in slopes.items() if m.startswith("sharp")]
    text = (
        f"B = {fmt(batch)}: MAML's seed-mean G_avg falls with log-log slope {fmt(maml, 3)} over "
        f"T = {fmt(horizons[0])} to {fmt(horizons[-1])} (predicted −0.5); Sharp-MAML slopes {span(sharp)}"
    )
    if ("fomaml", "none") in slopes:
        text += f"; FO-MAML {fmt(slopes[('fomaml', 'none')], 3)}"
    if ratios:
        below = "every mean is below R1" if max(ratios) <= 1 else "some means exceed R1"
        text += f"; {below} (mean / R1 from {fmt(min(ratios), 3)} to {fmt(max(ratios), 3)})"
    return text + "."


@styled
def iteration_figure(curves: pd.DataFrame, runs: pd.DataFrame) -> Figure | None:
    """||grad F(theta_t)||² against t for the longest rate runs, with bands over seeds."""
    rate = runs_of(runs, "rate")
    if rate.empty or curves.empty:
        return None
    longest = rate[rate["T"] == rate["T"].max()]
    keys = ["run_id", "lane"]
    joined = curves.merge(longest[keys + ["method", "schedule", "batch_size", "seed_index"]], on=keys)
    joined = joined[joined["step"] > 0]
    if joined.empty:
        return None
    fig, axes, series = method_panels(joined, "step", "grad_norm2", markevery=4)
    for ax in axes.flat:
        ax.set(xlabel="iteration t", ylabel="||grad F(theta_t)||²")
    names = {
        key: f"B={fmt(key[0])} {series_name(key[1], key[2])}"
        for key in sorted(series, key=lambda k: (k[0], *_method_order(k[1:])))
    }
    cells = {
        key: {
            float(t): f"{fmt(m, 3)} [{fmt(lo, 3)}, {fmt(hi, 3)}]"
            for t, m, lo, hi in zip(s["x"], s["median"], s["lo"], s["hi"])
        }
        for key, s in series.items()
    }
    steps = sorted({t for c in cells.values() for t in c})
    table = make_table(
        ["t", *[f"{n}: median [q10, q90]" for n in names.values()]],
        [[int(t), *[cells[key].get(t, "—") for key in names]] for t in steps],
    )
    final = {key: float(s["median"][-1]) for key, s in series.items()}
    by_method = lambda test: span(v for k, v in final.items() if test(k[1]))  # noqa: E731
    alt = (
        f"At the last iteration t = {int(steps[-1])} of the runs with T = {int(longest['T'].max())} the "
        f"seed-median ||grad F||² is {by_method(lambda m: m == 'maml')} for MAML, "
        f"{by_method(lambda m: m.startswith('sharp'))} for the Sharp-MAML variants and "
        f"{by_method(lambda m: m == 'fomaml')} for FO-MAML. Bands: {BAND} over seeds."
    )
    return finish(
        fig, "fig-iterations", "Convergence curves: ||grad F(theta_t)||² along the longest runs", alt, table
    )


# ----- synthetic: floor (R2, FO) and bias (R3) -----------------------------------------------


@styled
def floor_figure(curves: pd.DataFrame, runs: pd.DataFrame, fo_floor: float | None) -> Figure | None:
    """Deterministic Sharp-MAML_up (constant alpha) and FO-MAML curves against their floors."""
    floor_runs = runs_of(runs, "floor")
    fo_curve = curves[curves["run_id"].str.startswith("fo/")] if not curves.empty else curves
    if floor_runs.empty and fo_curve.empty:
        return None
    fig, axes = new_figure(1, 2)
    rows, errors = [], []
    ax = axes[0, 0]
    for k, run in enumerate(floor_runs.sort_values(["eta", "alpha"]).itertuples(index=False)):
        part = curves[(curves["run_id"] == run.run_id) & (curves["lane"] == run.lane) & (curves["step"] > 0)]
        st = line_style(None, k)
        label = f"eta = {fmt(run.eta)}, alpha = {fmt(run.alpha)}"
        ax.plot(part["step"], part["grad_norm2"], label=label, markevery=4, **st)
        predicted2 = run.predicted_grad_norm**2
        ax.axhline(predicted2, color=st["color"], linestyle="--", linewidth=1.0)
        measured2 = run.final_grad_norm**2
        errors.append(abs(run.final_grad_norm - run.predicted_grad_norm) / run.predicted_grad_norm)
        rows.append(["Sharp-MAML_up (R2 2-cycle)", label, int(run.T), predicted2, measured2, errors[-1]])
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="iteration t",
        ylabel="||grad F(theta_t)||²",
        title="Sharp-MAML_up, constant alpha (dashed: R2 level)",
    )
    ax = axes[0, 1]
    fo_text = ""
    if not fo_curve.empty:
        part = fo_curve[fo_curve["step"] > 0].sort_values("step")
        ax.plot(part["step"], part["grad_norm2"], label="FO-MAML", markevery=4, **line_style("fomaml"))
        measured = float(part["grad_norm2"].dropna().iloc[-1])
        if fo_floor is not None:
            ax.axhline(fo_floor, label="predicted floor", **BOUND_LINE)
            rows.append(
                [
                    "FO-MAML floor",
                    "eta = 1/L_bar",
                    int(part["step"].max()),
                    fo_floor,
                    measured,
                    abs(measured - fo_floor) / fo_floor,
                ]
            )
        fo_text = f" Deterministic FO-MAML stalls at ||grad F||² = {fmt(measured, 3)}" + (
            f" (predicted floor {fmt(fo_floor, 3)})." if fo_floor is not None else "."
        )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="iteration t",
        ylabel="||grad F(theta_t)||²",
        title="FO-MAML, deterministic",
    )
    alt = ""
    if errors:
        alt = (
            f"Deterministic Sharp-MAML_up with a constant radius settles on the predicted 2-cycle level in "
            f"{sum(e <= 1e-6 for e in errors)} of {len(errors)} (eta, alpha) lanes; largest relative error "
            f"of ||grad F|| {fmt(max(errors), 2)}."
        )
    table = make_table(
        ["run", "setting", "steps", "predicted ||grad F||²", "measured (last step)", "relative error"], rows
    )
    return finish(
        fig, "fig-floor", "Error floors: where deterministic methods stop", (alt + fo_text).strip(), table
    )


@styled
def bias_figure(runs: pd.DataFrame) -> Figure | None:
    """Sharp-MAML_low's fixed-point shift and MAML gap against alpha_low; R3 bound."""
    bias = runs_of(runs, "bias").sort_values("alpha")
    if bias.empty:
        return None
    alpha = bias["alpha"].to_numpy(float)
    fig, axes = new_figure(1, 2)
    ax = axes[0, 0]
    for k, (column, label, predicted) in enumerate(
        (("shift", "shift ||theta_low − theta*||", 1.0), ("gap2", "MAML gap ||grad F(theta_low)||²", 2.0))
    ):
        y = bias[column].to_numpy(float)
        st = line_style(None, k)
        ax.plot(alpha, y, label=label, **st)
        ax.plot(
            alpha,
            y[0] * (alpha / alpha[0]) ** predicted,
            label=f"predicted slope {fmt(predicted)} (through the first point)",
            **{**SLOPE_LINE, "color": st["color"]},
        )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="alpha_low",
        ylabel="shift, gap² (log scale)",
        title="Fixed point of Sharp-MAML_low",
    )
    ax = axes[0, 1]
    at_star, bound = bias["low_grad_norm_at_star"].to_numpy(float), bias["r3_bound"].to_numpy(float)
    ax.plot(alpha, at_star, label="||grad F_low(theta*)||", **line_style(None, 2))
    ax.plot(alpha, bound, label="R3 bound", **BOUND_LINE)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="alpha_low",
        ylabel="||grad F_low(theta*)|| (log scale)",
        title="Bias at theta* (R3)",
    )
    shift_slope, gap_slope = slope(alpha, bias["shift"]), slope(alpha, bias["gap2"])
    ratio = at_star / bound
    alt = (
        f"The Sharp-MAML_low fixed point moves with log-log slope {fmt(shift_slope, 3)} in alpha_low "
        f"(predicted 1) and MAML's gap² there with slope {fmt(gap_slope, 3)} (predicted 2); "
        f"||grad F_low(theta*)|| is {fmt(ratio.min(), 2)} to {fmt(ratio.max(), 2)} times the R3 bound"
        f" ({'below it' if np.all(ratio <= 1) else 'above it somewhere'} at every alpha_low tried)."
    )
    table = make_table(
        ["alpha_low", "shift", "gap²", "||grad F_low(theta*)||", "R3 bound", "ratio to bound"],
        [list(r) for r in zip(alpha, bias["shift"], bias["gap2"], at_star, bound, ratio)],
    )
    return finish(fig, "fig-bias", "Bias of Sharp-MAML_low (R3)", alt, table)


LANE_KEYS = ("method", "schedule", "alpha", "eta")  # run columns that tell a run's lanes apart


def lane_series(curves: pd.DataFrame, runs: pd.DataFrame) -> pd.Series:
    """A series name per curve row: its run id plus the run columns that vary across its lanes.

    Lanes that share a name (seeds, starting points) become one band.
    """
    names = curves["run_id"].astype(str)
    if runs.empty or not {"run_id", "lane"} <= set(runs.columns):
        return names
    meta = runs[runs["run_id"].isin(set(names))]
    keys = [k for k in LANE_KEYS if k in meta and meta.groupby("run_id")[k].nunique().max() > 1]
    if not keys:
        return names
    meta = meta.drop_duplicates(["run_id", "lane"]).set_index(["run_id", "lane"])[keys]
    labels = {
        idx: ", ".join(method_label(v) if k == "method" else f"{k} = {fmt(v)}" for k, v in zip(keys, row))
        for idx, row in zip(meta.index, meta.itertuples(index=False))
    }
    prefix = names.nunique() > 1
    return pd.Series(
        [
            (f"{r}: " if prefix else "") + labels[(r, lane)] if (r, lane) in labels else r
            for r, lane in zip(names, curves["lane"])
        ],
        index=curves.index,
    )


@styled
def curve_group_figure(curves: pd.DataFrame, runs: pd.DataFrame, group: str) -> Figure | None:
    """Any curve family without a dedicated figure: median and band over the lanes of each series."""
    part = curves[curves["step"] > 0]
    if part.empty:
        return None
    part = part.assign(series=lane_series(part, runs))
    fig, axes = new_figure(1, 1, width=2 * PANEL_WIDTH)
    ax = axes[0, 0]
    rows, finals = [], []
    for k, (name, run) in enumerate(part.groupby("series", sort=True)):
        table = run.pivot_table(index="lane", columns="step", values="grad_norm2")
        steps = table.columns.to_numpy(float)
        stats = quantile_band(table.to_numpy())
        draw_band(ax, steps, stats, str(name), line_style(None, k), markevery=4)
        last = int(np.max(np.nonzero(np.isfinite(stats["median"]))[0], initial=0))
        rows.append(
            [
                name,
                int(table.shape[0]),
                stats["median"][0],
                int(steps[last]),
                stats["median"][last],
                stats["lo"][last],
                stats["hi"][last],
            ]
        )
        finals.append(f"{name}: {fmt(stats['median'][last], 3)}")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="iteration t",
        ylabel="||grad F(theta_t)||²",
        title=f"Curves of '{group}' (median over the lanes of a series, {BAND})",
    )
    alt = f"Median ||grad F||² at the last recorded iteration: {'; '.join(finals)}."
    table = make_table(
        ["series", "lanes", "median at t = 1", "last t", "median at last t", "q10", "q90"], rows
    )
    return finish(
        fig,
        f"fig-curves-{re.sub(r'[^a-z0-9]+', '-', group.lower())}",
        f"Convergence curves: {group}",
        alt,
        table,
    )


# ----- generalization ------------------------------------------------------------------------

GEN_BOUNDS = {
    "foret": ("foret_rhs", "Foret-style bound"),
    "pac_bayes": ("pac_bayes_kl_rhs", "PAC-Bayes-kl bound"),
}


def gap_bounds(runs: pd.DataFrame) -> dict[str, pd.Series]:
    """Per bound present: its bound on the gap, RHS − train risk (``<b>_gap_bound`` if stored)."""
    out = {}
    for name, (rhs, _) in GEN_BOUNDS.items():
        if f"{name}_gap_bound" in runs:
            out[name] = runs[f"{name}_gap_bound"].astype(float)
        elif rhs in runs and "train_risk" in runs:
            out[name] = (runs[rhs] - runs["train_risk"]).astype(float)
    return out


def _bound_finding(runs: pd.DataFrame, name: str, bound: pd.Series) -> str:
    """'the Foret-style bound holds in 35 of 36 runs (vacuous in 12)'."""
    label = GEN_BOUNDS[name][1]
    holds = runs[f"{name}_holds"].astype(bool) if f"{name}_holds" in runs else runs["gap"] <= bound
    text = f"the {label} holds in {int(holds.sum())} of {len(runs)} runs"
    if f"{name}_vacuous" in runs:
        text += f" (vacuous, RHS ≥ 1, in {int(runs[f'{name}_vacuous'].astype(bool).sum())})"
    return text


@styled
def generalization_figure(runs: pd.DataFrame) -> Figure | None:
    """Measured gap against M per method (bands over seeds) under the bounds on the gap."""
    if runs.empty or not {"M", "gap", "method"} <= set(runs.columns):
        return None
    runs = runs[runs["M"].notna() & runs["gap"].notna()]  # the L2 runs (E2 rows have no gap)
    if runs.empty:
        return None
    bounds = gap_bounds(runs)
    runs = runs.assign(
        series=[_gen_series(r) for r in runs.to_dict("records")],
        M=runs["M"].astype(float),
        **{f"_bound_{b}": v for b, v in bounds.items()},
    )
    m_values = sorted(runs["m_tr"].unique()) if "m_tr" in runs else [None]
    fig, axes = new_figure(1, len(m_values))
    rows = []
    for j, m in enumerate(m_values):
        ax = axes[0, j]
        panel = runs if m is None else runs[runs["m_tr"] == m]
        for k, (name, part) in enumerate(panel.groupby("series", sort=True)):
            by_m = part.groupby("M", sort=True)
            gap = by_m["gap"]
            stats = {
                "median": gap.median().to_numpy(),
                "lo": gap.quantile(QUANTILES[0]).to_numpy(),
                "hi": gap.quantile(QUANTILES[1]).to_numpy(),
            }
            ms = gap.median().index.to_numpy(float)
            draw_band(ax, ms, stats, name, line_style(None, k))  # one style per (method, alpha_up)
            medians = [by_m[f"_bound_{b}"].median().to_numpy() for b in bounds]
            for idx, (M, n) in enumerate(zip(ms, gap.count())):
                rows.append(
                    [
                        fmt(m),
                        name,
                        M,
                        n,
                        stats["median"][idx],
                        stats["lo"][idx],
                        stats["hi"][idx],
                        *[med[idx] for med in medians],
                    ]
                )
        if "train_risk" in panel:
            ax.axhline(
                float((1 - panel["train_risk"]).median()),
                color="0.45",
                linestyle=(0, (1, 1)),
                linewidth=1.2,
                label="vacuity: a bound on the gap above 1 − train risk (RHS ≥ 1) says nothing",
            )
        for b, line in zip(bounds, ("--", ":")):
            lowest = panel.groupby("M", sort=True)[f"_bound_{b}"].min()
            ax.plot(
                lowest.index.to_numpy(float),
                lowest.to_numpy(float),
                color="black",
                linestyle=line,
                linewidth=1.2,
                label=f"{GEN_BOUNDS[b][1]} on the gap (lowest over runs)",
            )
        ax.set(
            xscale="log",
            xlabel="training tasks M",
            ylabel="gap = true − train risk",
            title="all m_tr" if m is None else f"m_tr = {fmt(m)}",
        )
        if (panel["gap"] > 0).all() and all((panel[f"_bound_{b}"] > 0).all() for b in bounds):
            ax.set_yscale("log")
        else:
            ax.set_yscale("symlog", linthresh=1e-3)
        value_ticks(ax, panel["M"])
    findings = [_bound_finding(runs, b, v) for b, v in bounds.items()]
    largest = runs[runs["M"] == runs["M"].max()]
    findings.append(
        f"at M = {fmt(runs['M'].max())} the gap spans {span(largest['gap'])}"
        + "".join(f", the {GEN_BOUNDS[b][1]} on it {span(largest[f'_bound_{b}'])}" for b in bounds)
    )
    findings.append(f"the median gap's log-log slope in M is {span(_gap_slopes(runs))} over the series")
    table = make_table(
        [
            "m_tr",
            "series",
            "M",
            "runs",
            "median gap",
            "q10",
            "q90",
            *[f"median {GEN_BOUNDS[b][1]} on the gap" for b in bounds],
        ],
        rows,
    )
    text = "; ".join(findings)
    alt = text[:1].upper() + text[1:] + f". Bands: {BAND} over seeds; bounds on the gap are RHS − train risk."
    return finish(fig, "fig-generalization", "Generalization gap against the bounds as M grows", alt, table)


def _gen_series(row: dict[str, Any]) -> str:
    alpha = row.get("alpha_up")
    if row["method"] == "maml" or alpha is None or not np.isfinite(alpha) or alpha == 0:
        return method_label(row["method"])
    return f"{method_label(row['method'])}, alpha_up = {fmt(alpha)}"


def _gap_slopes(runs: pd.DataFrame) -> list[float]:
    keys = ["series"] + (["m_tr"] if "m_tr" in runs else [])
    out = []
    for _, part in runs.groupby(keys, sort=True):
        med = part.groupby("M")["gap"].median()
        out.append(slope(med.index.to_numpy(float), med.to_numpy(float)))
    return out


# ----- real data -----------------------------------------------------------------------------

ENTRY_MARKERS = {"measured": ("o", True), "paper": ("D", False), "stored baseline": ("s", False)}


@styled
def accuracy_figure(entries: pd.DataFrame) -> Figure | None:
    """Accuracy ± 95% CI per method and setting: measured, paper and stored baseline rows.

    ``entries`` columns: setting, method, label, source (a key of ENTRY_MARKERS), accuracy, ci95.
    """
    if entries.empty:
        return None
    settings = list(dict.fromkeys(entries["setting"]))
    heights = [max(1.6, 0.45 * entries[entries["setting"] == s]["label"].nunique() + 1.0) for s in settings]
    fig = MplFigure(figsize=(2 * PANEL_WIDTH, sum(heights)), layout="constrained")
    axes = fig.subplots(len(settings), 1, squeeze=False, sharex=True, gridspec_kw={"height_ratios": heights})
    rows = []
    for ax, setting in zip(axes[:, 0], settings):
        part = entries[entries["setting"] == setting]
        labels = list(dict.fromkeys(part["label"]))
        for rec in part.to_dict("records"):
            y = labels.index(rec["label"])
            marker, filled = ENTRY_MARKERS[rec["source"]]
            colour = line_style(rec["method"])["color"]
            ci = rec["ci95"] if np.isfinite(rec["ci95"]) else 0.0
            ax.errorbar(
                rec["accuracy"],
                y,
                xerr=ci,
                fmt=marker,
                color=colour,
                capsize=3,
                markerfacecolor=colour if filled else "white",
                markersize=6,
            )
            rows.append([setting, rec["label"], rec["source"], rec["accuracy"], rec["ci95"]])
        ax.set_yticks(range(len(labels)), labels)
        ax.set_ylim(len(labels) - 0.5, -0.5)
        ax.set(xlabel="test accuracy (%), 95% CI", title=setting)
        ax.tick_params(labelbottom=True)  # every panel readable on its own, not only the last
    handles = [
        Line2D([], [], marker=m, color="0.3", linestyle="", markerfacecolor="0.3" if f else "white", label=k)
        for k, (m, f) in ENTRY_MARKERS.items()
        if k in set(entries["source"])
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
    findings = [_accuracy_finding(entries[entries["setting"] == s], s) for s in settings]
    unmeasured = [s for s, f in zip(settings, findings) if not f]
    alt = " ".join(f for f in findings if f) + (
        f" No measured rows for {', '.join(unmeasured)}: paper and stored rows only (numbers in the table)."
        if unmeasured
        else ""
    )
    table = make_table(["setting", "method", "row", "accuracy (%)", "95% CI (±)"], rows)
    return finish(fig, "fig-accuracy", "Few-shot test accuracy with 95% CIs", alt, table, legend=False)


def _accuracy_finding(part: pd.DataFrame, setting: str) -> str:
    """The measured rows of a setting and their differences from MAML ('' without measured rows)."""
    measured = part[part["source"] == "measured"]
    if measured.empty:
        return ""
    text = "; ".join(f"{r.label} {r.accuracy:.2f} ± {r.ci95:.2f}%" for r in measured.itertuples())
    maml = measured[measured["method"] == "maml"]
    if len(maml) == 1:
        base = float(maml["accuracy"].iloc[0])
        diffs = [f"{r.label} {r.accuracy - base:+.2f}" for r in measured.itertuples() if r.method != "maml"]
        if diffs:
            text += f" (points vs MAML: {', '.join(diffs)})"
    return f"{setting}: {text}."


@styled
def cost_figure(speed: pd.DataFrame, implementations: dict[str, str]) -> Figure | None:
    """Median time per meta-iteration per case, implementation and method; ratio to MAML on top.

    ``implementations``: column prefix (e.g. "engine_vmap") -> label, for the prefixes present.
    """
    if speed.empty or not implementations:
        return None
    cases = list(dict.fromkeys(speed["name"]))
    methods = [m for m in METHOD_LOOKS if m in set(speed["method"])]
    fig, axes = new_figure(1, len(cases))
    hatches = ["", "//", "..", "xx", "\\\\"]
    rows, findings = [], []
    width = 0.8 / max(len(methods), 1)
    for ax, case in zip(axes[0], cases):
        part = speed[speed["name"] == case].set_index("method")
        xs = np.arange(len(implementations))
        for k, method in enumerate(methods):
            if method not in part.index:
                continue
            ms = [1e3 * float(part.loc[method, f"{p}_median_s"]) for p in implementations]
            bars = ax.bar(
                xs + (k - (len(methods) - 1) / 2) * width,
                ms,
                width,
                label=method_label(method),
                color=line_style(method)["color"],
                hatch=hatches[k % len(hatches)],
                edgecolor="0.2",
            )
            if method != "maml" and "maml" in part.index:
                ratios = [
                    float(part.loc[method, f"{p}_median_s"] / part.loc["maml", f"{p}_median_s"])
                    for p in implementations
                ]
                ax.bar_label(bars, labels=[f"×{r:.2f}" for r in ratios], fontsize=8)
                findings.append(
                    f"{case}: {method_label(method)} / MAML time per meta-iteration "
                    + ", ".join(f"×{r:.2f} ({label})" for r, label in zip(ratios, implementations.values()))
                )
            for p, label, value in zip(implementations, implementations.values(), ms):
                peak = part.loc[method].get(f"{p}_peak_mib", float("nan"))
                rows.append([case, method_label(method), label, value, peak])
        ax.set_xticks(xs, [textwrap.fill(label, 16) for label in implementations.values()])
        ax.margins(y=0.12)
        ax.set(ylabel="ms per meta-iteration (median)", title=case)
    table = make_table(["case", "method", "implementation", "ms / meta-iteration", "peak memory (MiB)"], rows)
    alt = "; ".join(findings) + "." if findings else "Time per meta-iteration of each method."
    return finish(fig, "fig-cost", "Time per meta-iteration (speed benchmark)", alt, table)


# ----- synthetic: flat minima (E2) -----------------------------------------------------------


def robust_profile(z: np.ndarray, f: np.ndarray, alpha: float) -> np.ndarray:
    """max_{|eps| <= alpha} F(z + eps) on an even grid (NaN where the window leaves it)."""
    half = int(round(alpha / (z[1] - z[0])))
    if half == 0:
        return f.copy()
    windows = np.lib.stride_tricks.sliding_window_view(f, 2 * half + 1)
    out = np.full_like(f, np.nan)
    out[half : len(f) - half] = windows.max(axis=1)
    return out


def basin_minima(z: np.ndarray, f: np.ndarray, barrier: float) -> tuple[float, float]:
    """(sharp, flat) minimisers of the profile: the lowest point on each side of the barrier."""
    sharp, flat = z < barrier, z > barrier
    return float(z[sharp][np.argmin(f[sharp])]), float(z[flat][np.argmin(f[flat])])


@styled
def flat_figure(runs: pd.DataFrame, profiles: pd.DataFrame) -> Figure | None:
    """F along E2's basin axis per radius: both minima, the alpha-robust minimiser and its
    objective, the barrier, and where every run starts and ends (per instance: 1-D, embedded)."""
    flat = runs_of(runs, "flat")
    if flat.empty or profiles.empty or not {"z_end", "z_robust", "start"} <= set(flat.columns):
        return None
    profile = profiles[profiles["family"] == profiles["family"].iloc[0]].sort_values("z")
    z, f = profile["z"].to_numpy(float), profile["F"].to_numpy(float)
    barrier = float(profile["barrier"].iloc[0])
    sharp, flat_min = basin_minima(z, f, barrier)
    at = lambda points: np.interp(points, z, f)  # noqa: E731
    alphas = sorted(flat["alpha"].unique())
    families = list(dict.fromkeys(flat["family"]))
    fig = MplFigure(figsize=(2 * PANEL_WIDTH, 1.75 * len(alphas) + 0.8), layout="constrained")
    axes = fig.subplots(len(alphas), 1, sharex=True, squeeze=False)[:, 0]
    rows, findings = [], []
    for ax, alpha in zip(axes, alphas):
        part = flat[flat["alpha"] == alpha]
        ax.plot(z, f, color="black", linewidth=1.3, label="F along the basin axis")
        if alpha > 0:
            ax.plot(
                z,
                robust_profile(z, f, alpha),
                color="0.45",
                linestyle="--",
                linewidth=1.1,
                label="α-robust objective max F(z + ε), |ε| ≤ α",
            )
        ax.axvline(barrier, color="0.45", linestyle=":", linewidth=1.0, label="barrier between the basins")
        ax.plot(
            [sharp, flat_min],
            at([sharp, flat_min]),
            linestyle="",
            marker="^",
            markersize=8,
            color="black",
            markerfacecolor="white",
            label="sharp and flat minimum",
        )
        robust = float(part["z_robust"].iloc[0])
        ax.plot(
            [robust],
            at([robust]),
            linestyle="",
            marker="*",
            markersize=13,
            color=line_style("maml")["color"],
            label="α-robust minimiser",
        )
        starts = np.sort(part["start"].unique())
        ax.plot(
            starts,
            at(starts),
            linestyle="",
            marker="o",
            markersize=5,
            color="0.45",
            markerfacecolor="white",
            label="starts",
        )
        for k, family in enumerate(families):
            ends = part[part["family"] == family]
            st = line_style(None, k + 1)
            ax.plot(
                ends["z_end"],
                at(ends["z_end"].to_numpy(float)),
                linestyle="",
                marker=st["marker"],
                markersize=max(9 - 3 * k, 4),
                color=st["color"],
                label=f"end of a run, {family}",
            )
            for r in ends.to_dict("records"):
                rows.append(
                    [
                        alpha,
                        family,
                        r["start"],
                        r["z_end"],
                        r.get("basin_end"),
                        r.get("curvature_end"),
                        r.get("grad_norm2_end"),
                        robust,
                    ]
                )
        method = "MAML" if alpha == 0 else "Sharp-MAML_up"
        beyond = int((part["z_end"] > barrier).sum())
        reached = int((np.abs(part["z_end"] - robust) <= NEAR_FRACTION * (flat_min - sharp)).sum())
        ax.set_title(
            f"α = {fmt(alpha)} ({method}): {reached} of {len(part)} runs end at the α-robust minimiser "
            f"(z = {fmt(robust, 3)})",
            loc="left",
        )
        ax.set_ylabel("F(z)")
        ax.margins(x=0.01)
        where = "flat basin" if robust > barrier else "sharp basin"
        findings.append(
            f"α = {fmt(alpha)}: robust minimiser z = {fmt(robust, 3)} ({where}), runs end at z = "
            f"{span(part['z_end'])}: {reached} of {len(part)} at the robust minimiser (within "
            f"{fmt(NEAR_FRACTION * (flat_min - sharp), 3)}), {beyond} past the barrier"
        )
    axes[-1].set_xlabel("z, the coordinate along the basin axis")
    table = make_table(
        [
            "alpha",
            "instance",
            "start z",
            "end z",
            "end basin",
            "F'' at end",
            "||grad F||² at end",
            "α-robust minimiser",
        ],
        rows,
    )
    alt = (
        f"Sharp minimum z = {fmt(sharp, 3)}, flat minimum z = {fmt(flat_min, 3)}, barrier z = {fmt(barrier, 3)}. "
        + "; ".join(findings)
        + "."
    )
    title = "Flat minima (E2): where the runs end on F, next to the α-robust minimiser"
    return finish(fig, "fig-flat", title, alt, table)
