"""Build the HTML report of both tracks from the results store alone (nothing is re-run).

``build_report(results, baselines)`` reads the store (reports.store), turns it into sections
of tables and figures, and renders ``templates/report.html.j2`` with autoescaping; it also
returns the inputs that exist but could not be used (named in a banner at the top of the page,
and by ``sharpmaml report``, which then exits 4). The
output depends only on the files read: no build date, sorted everything, deterministic
figures, so building twice from the same results gives the same bytes.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup, escape

from infra.paths import DEFAULT_BASELINES, DEFAULT_RESULTS
from infra.verdicts import FAIL, NOT_APPLICABLE, PASS
from realdata.baselines.format import Baseline
from reports import figures
from reports.accuracy import (
    ROW_KEYS,
    SETTING_TABLES_NOTE,
    aggregate_evaluations,
    radii_pair,
    radii_text,
    setting_name,
    setting_tables,
    short_source,
    stored_table,
)
from reports.findings import FAILING, Finding, claim_of, group_of, prediction_findings
from reports.items import Details, Heading, Notice, Section, Text, Track, Unusable, unavailable
from reports.markdown import Document, slug
from reports.methods import is_method, method_label, method_rank
from reports.outcome import outcome_lines
from reports.store import ResultsReader
from reports.study import STUDY_DIR, study_section
from reports.tables import (
    MISSING,
    Cell,
    Table,
    fmt,
    frame_table,
    is_missing,
    make_table,
    verdict_class,
    verdict_counts,
    verdict_rank,
)
from reports.theory import DEFAULT_THEORY, claim_sections, read_theory, theory_section

TEMPLATES = Path(__file__).resolve().parent / "templates"
PROVENANCE_COLUMNS = ("git_sha", "versions", "device", "date", "seed", "scale", "config_hash")


@dataclass(frozen=True)
class Report:
    """A built report: its HTML, and one line per input file that exists but could not be used."""

    html: str
    unusable: list[str]


def build_report(
    results: Path = DEFAULT_RESULTS, baselines: Path = DEFAULT_BASELINES, theory: Path = DEFAULT_THEORY
) -> Report:
    """The report for the store under ``results``, the stored-baselines CSV and the theory
    document."""
    reader = ResultsReader(results, baselines)
    document = read_theory(reader, theory)
    tracks: list[Track] = []
    sections = [
        synthetic_section(reader, tracks),
        generalization_section(reader, tracks),
        realdata_section(reader, tracks),
        study_section(reader),
    ]
    sections.insert(0, summary_section(tracks, document))
    sections.append(theory_section(document, theory))
    sections.append(provenance_section(reader))
    return Report(render(sections, reader), reader.unusable_lines())


# Where a long id or name may break across lines: after '/', '_' or ':', and after a '.' that
# a letter follows ("rate.bound/H1/sharp_low:quarter/B8"; never inside a number such as 0.00356).
BREAK_AFTER = re.compile(r"(?<=[/_:])(?=\S)|(?<=[A-Za-z]\.)(?=[A-Za-z])")


def breakable(text: Any) -> Markup:
    """A cell's text, escaped, with a line-break opportunity (<wbr>) where a long id may wrap, so
    narrow screens and print wrap it instead of cutting or widening the table."""
    return Markup("<wbr>").join(escape(part) for part in BREAK_AFTER.split(str(text)))


def render(sections: list[Section], reader: ResultsReader) -> str:
    """Render the template (autoescaped) with the sections."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["breakable"] = breakable
    return env.get_template("report.html.j2").render(
        sections=sections, results=reader.root.as_posix(), unusable=reader.unusable_lines()
    )


# ----- predictions (synthetic and generalization) --------------------------------------------

PREDICTION_COLUMNS = {
    "id": "id",
    "prediction": "prediction",
    "source": "source",
    "predicted": "predicted",
    "measured": "measured",
    "ratio": "ratio",
    "tolerance": "tolerance",
    "verdict": "verdict",
    "details": "details",
}


# Groups whose rows check the engine and the families' constants rather than a claim
# (docs/theory.md, "Prediction smooth"): shown per family, collapsed, after the predictions.
SELF_CHECK_GROUPS = ("smooth",)
SELF_CHECK_STATEMENT = "Self-checks: every family's closed-form constants and the engine's identities"


def family_of(prediction_id: str) -> str:
    """A self-check row's family: the id's second part ("smooth/Q1/L_F" -> "Q1")."""
    parts = str(prediction_id).split("/")
    return parts[1] if len(parts) > 1 else ""


def prediction_anchor(track: str, prediction_id: str) -> str:
    """The anchor of the report table (or self-check block) that shows a prediction row."""
    group = group_of(prediction_id)
    if group in SELF_CHECK_GROUPS:
        return f"{slug(track)}-selfcheck-{slug(family_of(prediction_id))}"
    return f"{slug(track)}-pred-{slug(group)}"


def _ranked(predictions: pd.DataFrame) -> pd.DataFrame:
    words = predictions["outcome"] if "outcome" in predictions else predictions["verdict"]
    return predictions.assign(
        _group=predictions["id"].map(group_of),
        _order=range(len(predictions)),
        _rank=words.fillna(predictions["verdict"]).map(verdict_rank),
    )


def prediction_columns(predictions: pd.DataFrame) -> dict[str, str]:
    """The columns of a predictions table to show: the outcome next to the verdict when present."""
    columns = dict(PREDICTION_COLUMNS)
    if "outcome" in predictions:
        columns = {
            **{k: v for k, v in columns.items() if k != "details"},
            "outcome": "outcome",
            "details": "details",
        }
    return columns


# What rows of one claim share: stated once in the claim's heading row, not in every row.
SHARED_COLUMNS = ("prediction", "source", "tolerance")


def claim_heading(record: dict[str, Any]) -> str:
    """'rate.slope: <statement>. Source: paper claim (shape). Rule: slope <= -0.4'; the N/A rows of
    a claim share one heading (their details say why each does not apply)."""
    if str(record.get("verdict")) == NOT_APPLICABLE:
        return f"{record['_claim']}: not applicable to these rows (the details say why)"
    text = {c: "" if is_missing(record.get(c)) else str(record.get(c)).strip() for c in SHARED_COLUMNS}
    parts = [f"{record['_claim']}: {text['prediction']}".rstrip(": ")]
    parts += [
        f"{label}: {text[c]}"
        for c, label in (("source", "Source"), ("tolerance", "Rule"))
        if text[c] not in ("", "-")
    ]
    return ". ".join(parts)


def prediction_table(part: pd.DataFrame, columns: dict[str, str], caption: str, anchor: str = "") -> Table:
    """A predictions table with the rows of each claim together (the claim with the most urgent
    row first, then failing rows first): a heading row states what the claim's rows share
    (statement, source, rule) once, and each row keeps its id, numbers, verdict and details."""
    frame = part.assign(_claim=part["id"].map(claim_of))
    worst = frame.groupby("_claim", sort=False)["_rank"].transform("min")
    first = frame.groupby("_claim", sort=False)["_order"].transform("min")
    frame = frame.assign(_worst=worst, _first=first).sort_values(
        ["_worst", "_first", "_rank", "_order"], kind="stable"
    )
    shown = {k: v for k, v in columns.items() if k not in SHARED_COLUMNS}
    body = frame_table(frame, shown)
    rows: list[tuple[Cell, ...]] = []
    heading = None
    for record, cells in zip(frame.to_dict("records"), body.rows):
        if claim_heading(record) != heading:
            heading = claim_heading(record)
            rows.append((Cell(heading, "group", span=len(shown)),))
        rows.append(cells)
    return dataclasses.replace(body, rows=tuple(rows), caption=caption, anchor=anchor)


def prediction_tables(predictions: pd.DataFrame, track: Track) -> list[Any]:
    """One table per id group (self-check groups excluded); groups with a failing row first, and
    failing rows first in each group."""
    frame = _ranked(predictions)
    track.verdicts += frame["verdict"].astype(str).tolist()
    track.predictions = predictions
    claims = frame[~frame["_group"].isin(SELF_CHECK_GROUPS)]
    first_seen = claims.groupby("_group", sort=False)["_order"].min()
    worst = claims.groupby("_group", sort=False)["_rank"].min()
    groups = sorted(first_seen.index, key=lambda g: (worst[g], first_seen[g]))
    columns = prediction_columns(predictions)
    items: list[Any] = []
    for group in groups:
        part = claims[claims["_group"] == group].sort_values(["_rank", "_order"], kind="stable")
        caption = f"Predictions '{group}' ({status_line(part['verdict'])})"
        anchor = prediction_anchor(track.name, str(part["id"].iloc[0]))
        items.append(prediction_table(part, columns, caption, anchor))
    return items


def self_check_items(predictions: pd.DataFrame, constants: pd.DataFrame | None, track: str) -> list[Any]:
    """Per family, one collapsed block: the summary line of its self-check rows and constant
    verifications, expanding to their tables."""
    frame = _ranked(predictions)
    checks = frame[frame["_group"].isin(SELF_CHECK_GROUPS)].sort_values(["_rank", "_order"], kind="stable")
    families = list(dict.fromkeys(checks["id"].map(family_of)))
    if constants is not None and "family" in constants:
        families += [f for f in dict.fromkeys(constants["family"].astype(str)) if f not in families]
    items: list[Any] = []
    for family in families:
        part = checks[checks["id"].map(family_of) == family]
        tables: list[Any] = []
        summary = [f"Family {family}:"]
        if len(part):
            tables.append(prediction_table(part, prediction_columns(part), f"Self-checks of {family}"))
            summary.append(f"{plural(len(part), 'self-check row')} ({status_line(part['verdict'])})")
        if constants is not None and "family" in constants:
            own = constants[constants["family"].astype(str) == family]
            if len(own):
                table = constants_table(own, family)
                verified = [row[4].text for row in table.rows if row[4].text != MISSING]
                summary.append(
                    f"{plural(len(table) - len(verified), 'constant')}, {plural(len(verified), 'verification')}"
                    + (f" ({status_line(pd.Series(verified))})" if verified else "")
                )
                tables.append(table)
        anchor = f"{slug(track)}-selfcheck-{slug(family)}"
        items.append(Details(" ".join(summary[:1]) + " " + "; ".join(summary[1:]), tuple(tables), anchor))
    return items


# ----- synthetic ------------------------------------------------------------------------------


def suite_track(
    reader: ResultsReader, tracks: list[Track], name: str, title: str, suite: str
) -> tuple[Section, Track, pd.DataFrame | None, tuple[str, str]]:
    """The section and summary track of a suite's results folder ``name``, its predictions
    (None when absent, with a "not run yet" notice, or unusable, saying why) and the commands
    that produce them."""
    section = Section(name, title)
    track = Track(name)
    tracks.append(track)
    path = f"{name}/predictions.parquet"
    predictions = reader.table(path, {"id", "verdict"})
    command = (f"sharpmaml {suite} --out {reader.root.as_posix()}/{name}", f"tox -e {suite}")
    if predictions is None:
        section.items.append(unavailable(reader, path, f"{name} predictions", command, track))
        section.status = f"could not use {path}" if track.unusable else "not run yet"
        return section, track, None, command
    track.ran = True
    section.status = status_line(predictions["verdict"])
    return section, track, predictions, command


def synthetic_section(reader: ResultsReader, tracks: list[Track]) -> Section:
    """Predictions table, convergence/floor/bias figures, other curves, constants."""
    section, track, predictions, command = suite_track(
        reader, tracks, "synthetic", "Synthetic theory track", "convergence"
    )
    if predictions is None:
        return section
    section.items += [
        Heading("Predictions", "synthetic-predictions"),
        Text(
            "Each row: what theory predicts, what was measured, the verdict. Groups are the "
            "id's prefix; groups and rows with a FAIL come first."
        ),
    ]
    section.items += prediction_tables(predictions, track)
    runs = reader.table("synthetic/runs.parquet")
    curves = reader.table("synthetic/curves.parquet")
    constants = reader.table("synthetic/constants.parquet")
    section.items.append(Heading("Figures", "synthetic-figures"))
    for name, frame in (("runs", runs), ("curves", curves)):
        if frame is None:
            path = f"synthetic/{name}.parquet"
            section.items.append(unavailable(reader, path, f"synthetic {name} ({path})", command))
    runs = runs if runs is not None else pd.DataFrame()
    curves = curves if curves is not None else pd.DataFrame(columns=["run_id", "lane", "step", "grad_norm2"])
    fo = predictions[predictions["id"].astype(str).str.startswith("fo.floor")]["predicted"].dropna()
    families = rate_families(runs)
    builders: list[Callable[[], Any]] = [
        lambda f=family: family_figure(
            figures.rate_figure(of_family(runs, f), constants_of(constants, f)), f, len(families)
        )
        for family in families
    ]
    builders += [
        lambda f=family: family_figure(figures.iteration_figure(curves, of_family(runs, f)), f, len(families))
        for family in families
    ]
    builders += [
        lambda: figures.floor_figure(curves, runs, float(fo.iloc[0]) if len(fo) else None),
        lambda: figures.bias_figure(runs),
    ]
    profiles = reader.table("synthetic/profiles.parquet")
    covered = {"rate", "floor", "fo", "bias"}
    if profiles is not None and not runs.empty and "z_robust" in runs:
        builders.append(lambda: figures.flat_figure(runs, profiles))
        covered.add("flat")  # its convergence curves say nothing the end points do not
    for group in sorted(set(curves["run_id"].map(group_of)) - covered):
        builders.append(
            lambda g=group: figures.curve_group_figure(curves[curves["run_id"].map(group_of) == g], runs, g)
        )
    guarded(builders, section.items)
    section.items.append(
        Heading("Self-checks: constants and engine identities per family", "synthetic-constants")
    )
    section.items.append(
        Text(
            "Every closed-form constant of a family checked against an independent measurement, and "
            "the engine's identities; a FAIL here makes every prediction that uses the constant suspect. "
            "Expand a family to see its rows."
        )
    )
    if constants is None:
        path = "synthetic/constants.parquet"
        section.items.append(unavailable(reader, path, f"synthetic constants ({path})", command))
    section.items += self_check_items(predictions, constants, track.name)
    return section


def rate_families(runs: pd.DataFrame) -> list[str]:
    """The families the rate check ran on, in the order of the runs table."""
    if runs.empty or "family" not in runs or "check" not in runs:
        return []
    return list(dict.fromkeys(figures.runs_of(runs, "rate")["family"]))


def of_family(runs: pd.DataFrame, family: str) -> pd.DataFrame:
    """The runs of one family (a rate figure shows one family: its R1 needs its constants)."""
    return runs[runs["family"] == family]


def family_figure(figure: Any, family: str, families: int) -> Any:
    """One family's figure, with the family in its id and title when several families have one."""
    if figure is None or families == 1:
        return figure
    return dataclasses.replace(figure, id=f"{figure.id}-{family}", title=f"{figure.title} ({family})")


def constants_of(constants: pd.DataFrame | None, family: str) -> dict[str, float]:
    """Closed-form constants of one family (for its R1 bound)."""
    if constants is None:
        return {}
    part = constants[(constants["family"] == family) & ~constants["constant"].str.startswith("check:")]
    return {str(k): float(v) for k, v in zip(part["constant"], part["value"])}


def constants_table(constants: pd.DataFrame, family: str) -> Table:
    """A family's constants, then each verification (closed form, measured, PASS/FAIL)."""
    rows = []
    for r in constants.to_dict("records"):
        name = str(r["constant"])
        holds = r.get("holds")
        verdict = None if is_missing(holds) else (PASS if bool(holds) else FAIL)
        rows.append(
            [
                name.removeprefix("check:"),
                "verification" if name.startswith("check:") else "constant",
                r.get("value"),
                r.get("closed_form"),
                verdict,
                r.get("method"),
            ]
        )
    rows.sort(key=lambda row: (row[1] == "verification", verdict_rank(row[4]) if row[4] else 99))
    return make_table(
        ["name", "kind", "value / measured", "closed form", "verdict", "how verified"],
        rows,
        caption=f"Constants of {family}",
    )


# ----- generalization -------------------------------------------------------------------------


def generalization_section(reader: ResultsReader, tracks: list[Track]) -> Section:
    """Predictions and the gap-versus-M figure of the generalization track."""
    section, track, predictions, command = suite_track(
        reader, tracks, "generalization", "Generalization track", "generalization"
    )
    if predictions is None:
        return section
    section.items += prediction_tables(predictions, track)
    runs = reader.table("generalization/runs.parquet", {"M", "gap", "method"})
    if runs is not None:
        guarded([lambda: figures.generalization_figure(runs)], section.items)
    else:
        section.items.append(
            unavailable(reader, "generalization/runs.parquet", "generalization runs (runs.parquet)", command)
        )
    return section


# ----- real data --------------------------------------------------------------------------------

STUDY_NEEDS = {"method", "alpha_low", "alpha_up", "diff", "diff_ci95", "verdict"}


def study_tables(root: Path) -> list[Path]:
    """The paired tables of the store's studies: ``realdata/study`` (where the study section reads)
    and each sweep's own ``realdata/sweeps/<name>/study`` (``sharpmaml study``'s default)."""
    return [
        root / STUDY_DIR / "paired.parquet",
        *sorted((root / "realdata" / "sweeps").glob("*/study/paired.parquet")),
    ]


IMPLEMENTATIONS = {
    "reference": "per-task autograd (authors' style)",
    "engine_vmap": "engine, vmap",
    "engine_loop": "engine, loop",
}


def realdata_section(reader: ResultsReader, tracks: list[Track]) -> Section:
    """Accuracy against paper rows and baselines with the gate's verdicts; cost per iteration."""
    section = Section("realdata", "Real-data track (few-shot classification)")
    track = Track("real data (regression gate)")
    tracks.append(track)
    root = reader.root.as_posix()
    evaluations = reader.table("realdata/evaluations.parquet", {*ROW_KEYS, "accuracy", "ci95"})
    stored = reader.stored_baselines()
    check = reader.table("baselines/check.csv", {*ROW_KEYS, "verdict"})
    measured = aggregate_evaluations(evaluations) if evaluations is not None else pd.DataFrame()
    studies = {
        path.parent.relative_to(reader.root).as_posix(): frame
        for path in study_tables(reader.root)
        if (frame := reader.table(path.relative_to(reader.root).as_posix(), STUDY_NEEDS)) is not None
    }
    track.outcome = outcome_lines(measured, studies)
    section.items.append(Heading("Accuracy", "realdata-accuracy"))
    if evaluations is None:
        section.items.append(
            unavailable(
                reader,
                "realdata/evaluations.parquet",
                "test-set evaluations (realdata/evaluations.parquet)",
                (
                    f"sharpmaml evaluate {root}/realdata/runs/RUN/best.pt --out {root}/realdata/evaluations.parquet",
                ),
                track,
            )
        )
    if stored is None:
        baselines = reader.display(reader.baselines)
        section.items.append(
            unavailable(
                reader, baselines, f"stored baselines ({baselines})", ("sharpmaml baselines update",), track
            )
        )
    if check is None:
        section.items.append(
            unavailable(
                reader,
                "baselines/check.csv",
                "regression gate table (baselines/check.csv)",
                ("sharpmaml baselines check", "tox -e regression"),
                track,
            )
        )
    else:
        track.ran = True
        track.verdicts += check["verdict"].astype(str).tolist()
        track.predictions = gate_predictions(check)
    if not measured.empty or stored is not None or check is not None:
        section.items.append(Text(SETTING_TABLES_NOTE))
        section.items += setting_tables(measured, stored or [], check)
        entries = accuracy_entries(measured, stored or [])
        guarded([lambda: figures.accuracy_figure(entries)], section.items)
    if check is not None:
        section.items.append(gate_table(check, prediction_anchor(track.name, "gate/")))
    if stored is not None:
        section.items.append(stored_table(stored))
    section.items.append(Heading("Cost per meta-iteration", "realdata-cost"))
    section.items += cost_items(reader)
    ran = [
        name
        for name, frame in (("evaluations", evaluations), ("baselines", stored), ("gate", check))
        if frame is not None
    ]
    section.status = (status_line(check["verdict"]) + "; " if check is not None else "") + (
        f"read: {', '.join(ran)}" if ran else "not run yet"
    )
    if track.unusable:
        section.status += f"; could not use {', '.join(track.unusable)}"
    return section


def accuracy_entries(measured: pd.DataFrame, stored: list[Baseline]) -> pd.DataFrame:
    """The points of the accuracy figure: measured, paper and stored-baseline rows of this
    project's methods (other papers' methods are in the stored-baselines table only)."""
    entries = []
    for r in measured.to_dict("records"):
        radii = radii_text(r)
        entries.append(
            {
                **r,
                "source": "measured",
                "label": f"{method_label(r['method'])}"
                + (f" [{radii}]" if radii != "—" else "")
                + f" measured ({r['preset'] or 'no preset'})",
            }
        )
    for b in stored:
        if not is_method(b.method):
            continue
        detail = f"paper ({short_source(b.source)})" if b.is_paper else f"stored baseline ({b.scale})"
        radii = "—" if b.is_paper else radii_text({"alpha_low": b.alpha_low, "alpha_up": b.alpha_up})
        entries.append(
            {
                "dataset": b.dataset,
                "ways": b.ways,
                "shots": b.shots,
                "method": b.method,
                "source": "paper" if b.is_paper else "stored baseline",
                "accuracy": b.accuracy,
                "ci95": np.nan if b.ci95 is None else b.ci95,
                "label": f"{method_label(b.method)}" + (f" [{radii}]" if radii != "—" else "") + f" {detail}",
            }
        )
    if not entries:
        return pd.DataFrame()
    frame = pd.DataFrame(entries)
    frame["setting"] = [setting_name(r) for r in frame.to_dict("records")]
    frame["_m"] = frame["method"].map(method_rank)
    # settings in the tables' order (5-way before 20-way), not the names' alphabetical one
    frame = frame.sort_values(["dataset", "ways", "shots", "_m", "method", "source", "label"], kind="stable")
    return frame[["setting", "method", "label", "source", "accuracy", "ci95"]].astype({"ci95": float})


def gate_predictions(check: pd.DataFrame) -> pd.DataFrame:
    """The gate's rows as a predictions table (id, statement, stored, measured, rule, verdict)."""
    return pd.DataFrame(
        {
            "id": [f"gate/{r.get('row_id', setting_name(r))}" for r in check.to_dict("records")],
            "prediction": "accuracy within tolerance of the stored baseline",
            "predicted": check["stored"] if "stored" in check else np.nan,
            "measured": check["measured"] if "measured" in check else np.nan,
            "tolerance": "|measured − stored| ≤ the row's tolerance",
            "verdict": check["verdict"].astype(str),
        }
    )


GATE_COLUMNS = {  # the gate's columns shown; its row id already names setting, method and scale
    "row_id": "row",
    "radii": "α low / up",
    "stored": "stored %",
    "measured": "measured %",
    "delta": "Δ (points)",
    "tolerance": "tolerance",
    "verdict": "verdict",
    "reason": "reason",
    "n_seeds": "seeds",
}


def gate_table(check: pd.DataFrame, anchor: str) -> Table:
    """The regression gate's rows, failures first."""
    frame = check.assign(_rank=check["verdict"].map(verdict_rank)).sort_values("_rank", kind="stable")
    if {"alpha_low", "alpha_up"} <= set(frame.columns):
        frame = frame.assign(radii=[radii_pair(r) for r in frame.to_dict("records")])
    table = frame_table(
        frame,
        {c: label for c, label in GATE_COLUMNS.items() if c in frame},
        caption="Regression gate (baselines/check.csv): re-run against stored rows",
        anchor=anchor,
    )
    return dataclasses.replace(table, stack=True)


def cost_items(reader: ResultsReader) -> list[Any]:
    """Training time per meta-iteration from the runs' metrics, and the speed benchmark."""
    root = reader.root.as_posix()
    items: list[Any] = []
    metrics = reader.run_metrics()
    if metrics is None or not {"run", "method", "iteration", "elapsed_s"} <= set(metrics.columns):
        items.append(
            Notice(
                "training runs (realdata/runs/*/metrics.parquet)",
                (f"sharpmaml train --preset ci --method maml --out {root}/realdata/runs/RUN",),
            )
        )
    else:
        items.append(training_cost_table(metrics))
    speed = reader.table("realdata/speed.json")
    if speed is None:
        speed = reader.table("realdata/speed.csv")
    if speed is None or not {"name", "method"} <= set(speed.columns):
        items.append(
            Notice(
                "speed benchmark (realdata/speed.json or .csv)",
                (f"python benchmarks/realdata_speed.py --out {root}/realdata/speed.json",),
            )
        )
        return items
    present = {p: label for p, label in IMPLEMENTATIONS.items() if f"{p}_median_s" in speed}
    items.append(speed_table(speed, present))
    guarded([lambda: figures.cost_figure(speed, present)], items)
    return items


def training_cost_table(metrics: pd.DataFrame) -> Table:
    """Per run: iterations, wall time per meta-iteration (validation included), ratio to MAML."""
    last = metrics.sort_values("iteration", kind="stable").groupby("run", sort=True).tail(1)
    val = (
        metrics[metrics["split"] == "val"].groupby("run")["accuracy"].max()
        if "split" in metrics
        else pd.Series(dtype=float)
    )
    last = last.assign(per_it=last["elapsed_s"] / last["iteration"].where(last["iteration"] > 0))
    for col in ("preset", "device", "alpha_low", "alpha_up", "seed", "status", "planned_iterations"):
        if col not in last:
            last[col] = np.nan
    diverged = set(metrics.loc[metrics["status"] == "diverged", "run"]) if "status" in metrics else set()
    maml = last[last["method"] == "maml"].groupby(["preset", "device"], dropna=False)["per_it"].mean()
    rows = []
    for r in last.sort_values(["preset", "method", "run"]).to_dict("records"):
        base = maml.get((r["preset"], r["device"]), np.nan)
        rows.append(
            [
                r["run"],
                r["preset"],
                method_label(r["method"]),
                radii_text(r),
                r["seed"],
                r["device"],
                int(r["iteration"]),
                100 * val.get(r["run"], np.nan),
                1e3 * r["per_it"],
                r["per_it"] / base,
                run_status(r, r["run"] in diverged),
            ]
        )
    return make_table(
        [
            "run",
            "preset",
            "method",
            "radii",
            "seed",
            "device",
            "iterations",
            "best val. accuracy %",
            "ms / meta-iteration",
            "× MAML (same preset, device)",
            "status",
        ],
        rows,
        caption="Training runs: wall time per meta-iteration",
        stack=True,
        note="Wall time of the whole run (validation included) divided by its iterations.",
    )


def run_status(last_row: dict, diverged: bool) -> Any:
    """diverged, unfinished (i / N iterations) or done; a table written before the planned
    iteration count was logged keeps its own status column (missing when it has none)."""
    planned = last_row["planned_iterations"]
    if diverged:
        return "diverged"
    if pd.isna(planned):
        return last_row["status"]
    if int(last_row["iteration"]) < int(planned):
        return f"unfinished ({int(last_row['iteration'])} / {int(planned)} iterations)"
    return "done"


SPEED_PROVENANCE = ("git_sha", "threads", "load", "date")


def speed_table(speed: pd.DataFrame, implementations: dict[str, str]) -> Table:
    """The speed benchmark: median ms and peak memory per implementation, ratio to MAML, and the
    provenance the benchmark stored (git sha, threads, load) where it did."""
    provenance = [c for c in SPEED_PROVENANCE if c in speed]
    rows = []
    for r in speed.to_dict("records"):
        maml = speed[(speed["name"] == r["name"]) & (speed["method"] == "maml")]
        for p, label in implementations.items():
            ratio = r[f"{p}_median_s"] / float(maml[f"{p}_median_s"].iloc[0]) if len(maml) else np.nan
            peak = r.get(f"{p}_peak_mib", np.nan)
            rows.append(
                [
                    r["name"],
                    method_label(r["method"]),
                    r.get("tasks"),
                    label,
                    1e3 * r[f"{p}_median_s"],
                    ratio,
                    "not measured (CPU)" if is_missing(peak) else peak,
                    r.get("device_name", r.get("device")),
                    *[r.get(c) for c in provenance],
                ]
            )
    return make_table(
        [
            "case",
            "method",
            "tasks",
            "implementation",
            "ms / meta-iteration (median)",
            "× MAML",
            "peak memory (MiB)",
            "device",
            *provenance,
        ],
        rows,
        caption="Speed benchmark: time and memory per meta-iteration",
        stack=True,
    )


# ----- summary and provenance -----------------------------------------------------------------


def summary_section(tracks: list[Track], document: Document | None) -> Section:
    """The findings first (one line per claim, failing causes grouped), the real-data outcome,
    then the verdict counts per track (the contents list each section's status)."""
    section = Section("summary", "Summary: findings")
    titles = {s.anchor: s.title for s in document.sections} if document is not None else {}
    stated_in = claim_sections(document)
    found = [
        f
        for t in tracks
        if t.predictions is not None
        for f in prediction_findings(
            t.predictions, t.name, lambda i, t=t: prediction_anchor(t.name, i), titles, stated_in
        )
    ]
    found = [
        dataclasses.replace(f, statement=SELF_CHECK_STATEMENT) if f.claim in SELF_CHECK_GROUPS else f
        for f in found
    ]
    found.sort(key=lambda f: verdict_rank(f.word))
    failing = [f for f in found if f.word in FAILING]
    section.status = (
        f"{plural(len(failing), 'failing finding')}, {plural(len(found) - len(failing), 'other claim')}"
        if found
        else "no findings"
        if any(t.unusable for t in tracks)
        else "nothing run yet"
    )
    unread = [f"{t.name} ({', '.join(t.unusable)})" for t in tracks if t.unusable]
    if unread:
        section.status += "; incomplete: inputs could not be used"
        section.items.append(
            Unusable(
                "the findings leave out what these files hold, since they could not be used: "
                + "; ".join(unread)
            )
        )
    section.items += [Text(line) for t in tracks for line in t.outcome]  # the real-data answer, first
    if found:
        section.items.append(findings_table(found))
    words = sorted({FAIL, PASS} | {v for t in tracks for v in t.verdicts}, key=lambda v: (verdict_rank(v), v))
    rows = []
    for t in tracks:
        counts = verdict_counts(t.verdicts)
        if t.ran:
            rows.append([Cell(t.name), *[counts.get(w, 0) for w in words], len(t.verdicts)])
        else:
            rows.append([Cell(t.name), *["—"] * len(words), "could not use" if t.unusable else "not run yet"])
    section.items.append(make_table(["track", *words, "rows"], rows, caption="Verdicts per track"))
    return section


def findings_table(found: list[Finding]) -> Table:
    """One row per finding: what is claimed, the verdict, why, where the rows are."""
    rows = [
        [
            f.track,
            Cell(f.statement or f.claim),
            Cell(f.word, verdict_class(f.word)),
            f.reason,
            f.settings or "—",
            f.counts,
            Cell(f.claim, href="#" + f.anchor),
            Cell("statement", href="#" + f.theory) if f.theory else "—",
        ]
        for f in found
    ]
    return make_table(
        ["track", "claim", "verdict", "reason", "settings", "rows", "table", "theory"],
        rows,
        caption="Findings: one line per claim; rows that fail for one cause are one line",
        stack=True,
        note="Verdict: the most urgent word of the line's rows (CHANGED, FAIL, NEW, FINDING, then PASS, "
        "N/A, INFO); the Theory section says what each word and column means.",
    )


def provenance_section(reader: ResultsReader) -> Section:
    """Files read (sha256) and the provenance the rows of each carry: sha, versions, device, dates."""
    section = Section("provenance", "Provenance")
    section.items.append(
        Text(
            f"Paths are relative to the results store {reader.root.as_posix()}. The report "
            "is built from these files alone and carries no build date, so the same files "
            "give the same bytes."
        )
    )
    section.items.append(
        make_table(
            ["file", "rows", "bytes", "sha256"],
            [[f.path, f.rows, f.size, Cell(f.sha256, "hash")] for f in reader.files],
            caption="Results files read",
        )
    )
    section.items += [Unusable(line) for line in reader.unusable_lines()]
    columns = [c for c in PROVENANCE_COLUMNS if any(c in frame for frame in reader.frames.values())]
    rows = [
        [name, *[distinct(frame[c]) if c in frame else "—" for c in columns]]
        for name, frame in reader.frames.items()
        if any(c in frame for c in columns)
    ]
    if rows:
        section.items.append(
            make_table(
                ["file", *columns], rows, caption="Provenance columns of the rows read (distinct values)"
            )
        )
    section.status = f"{len(reader.files)} files read" + (
        f", {len(reader.unusable)} could not be used" if reader.unusable else ""
    )
    return section


def distinct(values: pd.Series) -> str:
    """Distinct values, sorted; dates as their range; long lists shortened with a count."""
    uniq = sorted({fmt(v) for v in values if not is_missing(v)})
    if values.name == "date" and len(uniq) > 2:
        return f"{uniq[0]} to {uniq[-1]} ({len(uniq)} distinct)"
    return ", ".join(uniq[:6]) + (f" and {len(uniq) - 6} more" if len(uniq) > 6 else "")


# ----- helpers ----------------------------------------------------------------------------------


def guarded(builders: Iterable[Callable[[], Any]], items: list[Any]) -> None:
    """Build each figure into ``items``; one that fails on unexpected data becomes an Unusable item."""
    for build in builders:
        try:
            figure = build()
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            items.append(Unusable(f"a figure could not be drawn ({type(exc).__name__}: {exc})"))
            continue
        if figure is not None:
            items.append(figure)


def plural(n: int, noun: str) -> str:
    """'1 row', '3 rows'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def status_line(verdicts: pd.Series) -> str:
    """'67 PASS, 4 N/A, 1 INFO' with FAIL first."""
    return ", ".join(f"{n} {v}" for v, n in verdict_counts(verdicts).items())
