"""The study: a finished sweep turned into the paired Sharp-MAML vs MAML comparison.

Reads the sweep folder (``manifest.parquet``, ``spec.toml``, each run's ``evaluations.parquet``
and ``metrics.parquet``) and writes tidy tables (parquet + csv) into ``SWEEP_DIR/study``:

- ``accuracy``: per (preset, method, variant, radii, test-time inner loop, iteration) the mean
  test accuracy over seeds with its 95% CI (Student t over seeds);
- ``paired``: per (method, variant, radii, inner loop) the paired difference to MAML on the same
  seeds at the sweep's iteration budget, its 95% CI, the smallest detectable difference and the
  verdict (BETTER / WORSE / NOT DETECTED); the cost (gradient evaluations and measured seconds
  per iteration relative to MAML); the same comparison at equal compute, against MAML trained
  to the same number of gradient evaluations (``equal_compute`` in the spec); and for a variant
  (a spec's ``[variants.LABEL]``) the paired difference to its parent, the plain method it
  derives from at the same radii, with the cost relative to it (``parent_*`` columns);
- ``inner_loops``: per (method, radii) the paired difference of the test-time inner loops
  (plain - same) on the same runs and test episodes (issue #14: which default);
- ``curves``: mean test and validation accuracy per iteration with the seed band, and the
  gradient evaluations spent, for the report's two figures.

Accuracies and differences are in percentage points. docs/realdata.md ("Study") defines
every column.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from infra.csvtable import text_diff
from infra.errors import UsageError
from infra.provenance import config_hash
from infra.store import read_table, write_table
from realdata.baselines.format import (
    STUDY_RULE,
    Baseline,
    load_baselines,
    render_baselines,
    replace_rows,
    write_baselines,
)
from realdata.presets import PRESETS
from realdata.stats import comparison_verdict, paired_difference, seed_mean_ci
from realdata.sweep.driver import SPEC_COPY
from realdata.sweep.manifest import DONE, read_manifest
from realdata.sweep.runner import EVALUATIONS
from realdata.sweep.spec import load_spec
from realdata.train import METRICS

BASELINE = "maml"
KEYS = ["preset", "method", "variant", "alpha_low", "alpha_up"]
SETTING = ["method", "variant", "alpha_low", "alpha_up"]  # a setting within one sweep
TABLES = ("accuracy", "paired", "inner_loops", "curves")
STUDY_DIR = "study"


def _done_runs(sweep_dir: Path) -> pd.DataFrame:
    """The manifest's finished runs; ``variant`` '' for plain methods (also in older manifests)."""
    manifest = read_manifest(sweep_dir)
    if "variant" not in manifest.columns:
        manifest["variant"] = ""
    manifest["variant"] = manifest["variant"].fillna("")
    return manifest[manifest["status"] == DONE]


def _gathered(sweep_dir: Path, name: str, manifest: pd.DataFrame) -> pd.DataFrame:
    frames = []
    for row in manifest.itertuples():
        path = Path(row.run_dir) / name
        if path.exists():
            frame = read_table(path)
            frame["run_id"] = row.run_id
            frame["variant"] = row.variant
            frames.append(frame)
    if not frames:
        raise UsageError(f"{sweep_dir}: no run has written {name} yet; run the sweep first")
    return pd.concat(frames, ignore_index=True)


def _seed_band(values: pd.Series) -> dict[str, float]:
    ci = seed_mean_ci(values.to_numpy())
    return {"mean": ci.mean, "ci95": ci.ci95, "n_seeds": ci.n, "seed_std": values.std(ddof=1)}


def accuracy_table(evaluations: pd.DataFrame) -> pd.DataFrame:
    """Mean test accuracy over seeds with its 95% CI, per setting, inner loop and iteration."""
    rows = []
    group = [*KEYS, "eval_inner_loop", "iterations"]
    for key, part in evaluations.groupby(group, sort=False):
        rows.append(
            {
                **dict(zip(group, key)),
                **_seed_band(part["accuracy"]),
                "episode_ci95": part["ci95"].mean(),
                "n_episodes": int(part["n_episodes"].iloc[0]),
                "seeds": " ".join(map(str, sorted(part["seed"]))),
            }
        )
    return pd.DataFrame(rows)


def _select(frame: pd.DataFrame, setting: dict[str, Any]) -> pd.DataFrame:
    """The rows of ``frame`` whose columns equal every value of ``setting``."""
    mask = pd.Series(True, index=frame.index)
    for key, value in setting.items():
        mask &= frame[key] == value
    return frame[mask]


def _by_seed(evaluations: pd.DataFrame, setting: dict[str, Any], loop: str, it: int) -> pd.Series:
    """Accuracy per seed of one setting (``SETTING`` keys) with inner loop ``loop`` at ``it``."""
    part = _select(evaluations, {**setting, "eval_inner_loop": loop, "iterations": it})
    return part.drop_duplicates("seed", keep="last").set_index("seed")["accuracy"]


MAML = {"method": BASELINE, "variant": "", "alpha_low": 0.0, "alpha_up": 0.0}


def _paired(a: pd.Series, b: pd.Series) -> dict[str, Any]:
    seeds = sorted(set(a.index) & set(b.index))
    if len(seeds) < 2:
        nan = math.nan
        return {"diff": nan, "diff_ci95": nan, "diff_low": nan, "diff_high": nan, "mdd": nan, "verdict": ""}
    d = paired_difference(a[seeds].to_numpy(), b[seeds].to_numpy())
    return {
        "diff": d.mean,
        "diff_ci95": d.ci95,
        "diff_low": d.low,
        "diff_high": d.high,
        "diff_sd": d.sd,
        "mdd": d.mdd,
        "n_pairs": d.n,
        "verdict": comparison_verdict(d),
    }


def paired_table(
    evaluations: pd.DataFrame, manifest: pd.DataFrame, iterations: int, equal_compute: int | None, grad_evals
) -> pd.DataFrame:
    """Each setting against MAML on the same seeds (at equal iterations and at equal compute),
    and each variant against its parent method at the same radii."""
    done = manifest[manifest["status"] == DONE]
    seconds = done.groupby(SETTING)["train_s_per_iteration"].mean()

    def time_of(setting: dict[str, Any]) -> float:
        return seconds.get(tuple(setting[k] for k in SETTING), math.nan)

    rows = []
    settings = evaluations[KEYS].drop_duplicates()
    for setting in settings.to_dict("records"):
        key = {k: setting[k] for k in SETTING}
        if key == MAML:
            continue
        for loop in evaluations["eval_inner_loop"].unique():
            own = _by_seed(evaluations, key, loop, iterations)
            maml = _by_seed(evaluations, MAML, loop, iterations)
            row = {
                **setting,
                "eval_inner_loop": loop,
                "iterations": iterations,
                "accuracy": own.mean(),
                "maml_accuracy": maml.reindex(own.index).mean(),
                **_paired(own, maml),
                "grad_evals_per_iteration": grad_evals(key),
                "grad_ratio": grad_evals(key) / grad_evals(MAML),
                "time_ratio": time_of(key) / time_of(MAML),
            }
            if key["variant"]:
                parent = {**key, "variant": ""}
                mine = _by_seed(evaluations, parent, loop, iterations)
                row.update(
                    {
                        "parent_accuracy": mine.reindex(own.index).mean(),
                        **{f"parent_{k}": v for k, v in _paired(own, mine).items()},
                        "parent_time_ratio": time_of(key) / time_of(parent),
                    }
                )
            if equal_compute is not None:
                maml_eq = _by_seed(evaluations, MAML, loop, equal_compute)
                eq = _paired(own, maml_eq)
                row.update(
                    {
                        "maml_equal_compute_iterations": equal_compute,
                        "maml_equal_compute_accuracy": maml_eq.reindex(own.index).mean(),
                        **{f"eqc_{k}": v for k, v in eq.items()},
                    }
                )
            rows.append(row)
    return pd.DataFrame(rows)


def inner_loop_table(evaluations: pd.DataFrame, iterations: int) -> pd.DataFrame:
    """Per setting whose test-time loops differ (a lower perturbation): plain - same, paired."""
    rows = []
    loops = set(evaluations["eval_inner_loop"])
    if not {"same", "plain"} <= loops:
        return pd.DataFrame()
    for setting in evaluations[KEYS].drop_duplicates().to_dict("records"):
        if setting["alpha_low"] == 0:
            continue  # no lower perturbation: both loops are plain MAML adaptation
        key = {k: setting[k] for k in SETTING}
        same = _by_seed(evaluations, key, "same", iterations)
        plain = _by_seed(evaluations, key, "plain", iterations)
        rows.append(
            {
                **setting,
                "iterations": iterations,
                "same": same.mean(),
                "plain": plain.mean(),
                **_paired(plain, same),
            }
        )
    return pd.DataFrame(rows)


def curves_table(
    evaluations: pd.DataFrame, metrics: pd.DataFrame, grad_evals, meta_batch: int
) -> pd.DataFrame:
    """Test (each evaluated point) and validation accuracy per iteration, mean and seed band."""
    test = evaluations.rename(columns={"iterations": "iteration"}).assign(split="test")
    val = metrics[metrics["split"] == "val"].assign(
        accuracy=lambda f: 100 * f["accuracy"], eval_inner_loop=""
    )
    rows = []
    for frame in (test, val):
        group = [*KEYS, "split", "eval_inner_loop", "iteration"]
        for key, part in frame.groupby(group, sort=False):
            row = dict(zip(group, key))
            band = part.drop_duplicates("seed", keep="last")["accuracy"]
            rows.append(
                {
                    **row,
                    **_seed_band(band),
                    "grad_evals": int(row["iteration"]) * grad_evals(row) * meta_batch,
                }
            )
    return pd.DataFrame(rows)


def study_tables(sweep_dir: Path) -> dict[str, pd.DataFrame]:
    """The four tables of a sweep folder (runs not done are left out)."""
    sweep_dir = Path(sweep_dir)
    spec = load_spec(sweep_dir / SPEC_COPY)
    done = _done_runs(sweep_dir)
    if done.empty:
        raise UsageError(f"{sweep_dir}: no finished run; run (or resume) the sweep first")
    evaluations = _gathered(sweep_dir, EVALUATIONS, done)
    metrics = _gathered(sweep_dir, METRICS, done)
    runs = {(run.config.method, run.variant): run.config.meta_config() for run in spec.runs()}

    def grad_evals(setting: dict[str, Any]) -> float:
        return runs[setting["method"], setting["variant"]].gradient_evaluations

    return {
        "accuracy": accuracy_table(evaluations),
        "paired": paired_table(
            evaluations, done, spec.iterations, spec.equal_compute_iterations(), grad_evals
        ),
        "inner_loops": inner_loop_table(evaluations, spec.iterations),
        "curves": curves_table(evaluations, metrics, grad_evals, spec.preset.meta_batch),
    }


def write_study(tables: dict[str, pd.DataFrame], out: Path) -> None:
    """Write each table of ``study_tables`` as parquet and csv into ``out``."""
    for name, frame in tables.items():
        write_table(frame, out / f"{name}.parquet")
        write_table(frame, out / f"{name}.csv")
    print(f"study tables in {out}: {', '.join(TABLES)} (.parquet, .csv)")


def _pm(mean: float, half: float) -> str:
    return "-" if math.isnan(mean) else f"{mean:+.2f} ± {half:.2f}"


def print_study(tables: dict[str, pd.DataFrame]) -> None:
    """The paired table on the terminal: one line per setting and test-time inner loop."""
    paired = tables["paired"]
    for r in paired.itertuples():
        name = f"{r.method}+{r.variant}" if r.variant else r.method
        line = (
            f"{name:<11} lo={r.alpha_low:g} up={r.alpha_up:g} [{r.eval_inner_loop}] "
            f"{r.accuracy:6.2f} vs MAML {r.maml_accuracy:6.2f}: {_pm(r.diff, r.diff_ci95)} "
            f"{r.verdict} (detectable >= {r.mdd:.2f}); cost x{r.grad_ratio:.1f} gradients, "
            f"x{r.time_ratio:.2f} time"
        )
        if "eqc_verdict" in paired.columns:
            line += f"; equal compute: {_pm(r.eqc_diff, r.eqc_diff_ci95)} {r.eqc_verdict}"
        if r.variant:
            line += (
                f"; vs {r.method}: {_pm(r.parent_diff, r.parent_diff_ci95)} {r.parent_verdict}, "
                f"x{r.parent_time_ratio:.2f} its time"
            )
        print(line)
    for r in tables["inner_loops"].itertuples():
        name = f"{r.method}+{r.variant}" if r.variant else r.method
        print(
            f"test-time inner loop, {name} lo={r.alpha_low:g}: plain - same = "
            f"{_pm(r.diff, r.diff_ci95)} ({r.verdict})"
        )


def baseline_rows(sweep_dir: Path, tables: dict[str, pd.DataFrame], scale: str, loop: str) -> list[Baseline]:
    """The study's plain methods as reference rows of the baselines file (scale ``scale``), at
    the sweep's iterations with the test-time inner loop ``loop``. accuracy: the mean over seeds;
    ci95: its 95% CI over seeds (Student t); the paired verdicts go into the note. Variants are
    not stored (a baselines row is one method and radii; they stay in the study tables)."""
    sweep_dir = Path(sweep_dir)
    spec = load_spec(sweep_dir / SPEC_COPY)
    evaluations = _gathered(sweep_dir, EVALUATIONS, _done_runs(sweep_dir))
    evaluations = evaluations[evaluations["variant"] == ""]
    acc = tables["accuracy"]
    acc = acc[
        (acc["eval_inner_loop"] == loop) & (acc["iterations"] == spec.iterations) & (acc["variant"] == "")
    ]
    if acc.empty:
        raise UsageError(f"--loop: no accuracy rows for inner loop {loop!r} at {spec.iterations} iterations")
    paired = tables["paired"]
    preset, defaults = spec.preset, PRESETS[spec.preset.name]
    overrides = ", ".join(
        f"{k}={getattr(preset, k)}"
        for k in ("filters", "meta_batch", "queries", "val_every", "val_episodes", "train_classes")
        if getattr(preset, k) != getattr(defaults, k)
    )
    rows = []
    for r in acc.to_dict("records"):
        runs = evaluations[
            (evaluations["method"] == r["method"])
            & (evaluations["alpha_low"] == r["alpha_low"])
            & (evaluations["alpha_up"] == r["alpha_up"])
            & (evaluations["eval_inner_loop"] == loop)
            & (evaluations["iterations"] == spec.iterations)
        ]
        note = f"study: preset {preset.name}" + (f" with {overrides}" if overrides else "")
        note += f"; executor {spec.executor}; ci95 over seeds (t)"
        match = paired[
            (paired["method"] == r["method"])
            & (paired["variant"] == "")
            & (paired["alpha_low"] == r["alpha_low"])
            & (paired["alpha_up"] == r["alpha_up"])
            & (paired["eval_inner_loop"] == loop)
        ]
        if not match.empty:
            p = match.iloc[0]
            note += f"; vs MAML {p['diff']:+.2f} ± {p['diff_ci95']:.2f} {p['verdict']}"
            if "eqc_verdict" in match.columns:
                note += (
                    f"; at equal compute {p['eqc_diff']:+.2f} ± {p['eqc_diff_ci95']:.2f} {p['eqc_verdict']}"
                )
        seeds = tuple(sorted(int(s) for s in runs["seed"]))
        rows.append(
            Baseline(
                row_id=f"{scale}:{preset.dataset}-{preset.ways}w{preset.shots}s-{r['method']}"
                f"-lo{r['alpha_low']:g}-up{r['alpha_up']:g}",
                scale=scale,
                dataset=preset.dataset,
                ways=preset.ways,
                shots=preset.shots,
                method=r["method"],
                alpha_low=float(r["alpha_low"]),
                alpha_up=float(r["alpha_up"]),
                accuracy=float(r["mean"]),
                ci95=float(r["ci95"]),
                seed_std=float(r["seed_std"]),
                n_episodes=int(r["n_episodes"]),
                n_seeds=len(seeds),
                seeds=seeds,
                spread_seeds=seeds,
                iterations=spec.iterations,
                preset=preset.name,
                eval_inner_loop=loop,
                test_seed=spec.test_seed,
                source=f"reproduced here: sharpmaml sweep {spec.path.name}; sharpmaml study --store-baselines {scale}",
                device=distinct(runs["device"]),
                git_sha=distinct(runs["train_git_sha"]),
                date=str(runs["date"].max()),
                config_hash=config_hash(sorted(runs["config_hash"])),
                tolerance_rule=STUDY_RULE,
                note=note,
            )
        )
    return rows


def distinct(values: pd.Series) -> str:
    """The one value of a column, or its values joined with ' | '."""
    return " | ".join(sorted(set(map(str, values))))


def store_baselines(
    sweep_dir: Path, tables: dict[str, pd.DataFrame], scale: str, loop: str, path: Path
) -> str:
    """Write the study's rows into the baselines file (replacing rows with the same id); the diff."""
    rows = baseline_rows(sweep_dir, tables, scale, loop)
    path = Path(path)
    stored = load_baselines(path)
    old = render_baselines(stored)
    new = write_baselines(path, replace_rows(stored, rows))
    return text_diff(old, new, path)
