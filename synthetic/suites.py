"""The convergence suite: builds the problems, runs every check, writes the results store.

Checks: smooth (constants), rate (R1), floor (R2 and FO-MAML), bias (R3), flat (E2: does
Sharp-MAML_up find the flat basin? several rows FAIL by design: they are findings).

Results under ``out``: predictions.parquet/.csv (the table), runs.parquet (one row per run x
T x seed, with config and provenance), curves.parquet (per-iteration ||grad F||^2),
constants.parquet (every family constant with its verification), cells/ (per-cell cache
that makes an interrupted suite resume where it stopped).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from infra.cells import CellCache
from infra.provenance import config_hash, provenance
from infra.store import write_table
from infra.verdicts import DERIVED, FAIL, Prediction, verdict
from synthetic.checks.bias import BiasGrid, run_bias_check
from synthetic.checks.common import CheckOutput
from synthetic.checks.flat import FlatGrid, problem_label, run_flat_check, switch_radius_prediction
from synthetic.checks.floor import FloorGrid, run_floor_check
from synthetic.checks.rate import RateGrid, run_rate_check
from synthetic.problems.base import ProblemInstance, build_problem


@dataclass(frozen=True)
class SuiteScale:
    """Grid sizes of one scale of the suite."""

    rate: RateGrid
    floor: FloorGrid
    bias: BiasGrid
    flat: FlatGrid


SCALES: dict[str, SuiteScale] = {
    "quick": SuiteScale(
        RateGrid(horizons=(100, 316, 1000), seeds=4, batch_sizes=(8,)),
        FloorGrid(etas=(2.0, 4.0), steps=1500, fo_steps=1500),
        BiasGrid(alphas=(0.005, 0.02, 0.05, 0.2), steps=400),
        FlatGrid(alphas=(0.0, 0.05, 0.15, 0.3), starts=(-0.15, 0.1, 0.28), steps=800, dims=(1,)),
    ),
    "default": SuiteScale(
        RateGrid(horizons=(100, 316, 1000, 3162), seeds=8, batch_sizes=(8,)),
        FloorGrid(etas=(1.0, 2.0, 4.0), steps=3000, fo_steps=2500),
        BiasGrid(steps=800),
        FlatGrid(),
    ),
    "full": SuiteScale(
        RateGrid(horizons=(100, 316, 1000, 3162, 10000, 31623), seeds=20, batch_sizes=(1, 8)),
        FloorGrid(steps=8000, fo_steps=8000),
        BiasGrid(steps=4000),
        FlatGrid(starts=(-0.3, -0.2, -0.1, 0.05, 0.1, 0.15, 0.2, 0.25, 0.28), steps=4000, dims=(1, 2, 5, 10)),
    ),
}
FAMILIES = ("Q1", "L2", "E2")


def smooth_predictions(problem: ProblemInstance, label: str | None = None) -> list[Prediction]:
    """One row per constant check of a family (closed form vs numerical verification)."""
    return [
        Prediction(
            id=f"smooth/{label or problem.family}/{check.name}",
            prediction=f"{check.relation} ({check.method})",
            source=DERIVED,
            predicted=check.closed_form,
            measured=check.measured,
            tolerance=check.relation,
            verdict=verdict(check.holds),
        )
        for check in problem.checks
    ]


def constants_table(problems: dict[str, ProblemInstance]) -> pd.DataFrame:
    """Every constant and every verification of the problems, keyed by their labels."""
    rows = [
        {"family": n, "constant": k, "value": v} for n, p in problems.items() for k, v in p.constants.items()
    ]
    rows += [
        {
            "family": n,
            "constant": f"check:{c.name}",
            "value": c.measured,
            "closed_form": c.closed_form,
            "holds": c.holds,
            "method": c.method,
        }
        for n, p in problems.items()
        for c in p.checks
    ]
    return pd.DataFrame(rows)


def run_convergence_suite(
    scale: str, out: Path, seed: int, fresh: bool = False, progress: bool = True
) -> pd.DataFrame:
    """Run the suite at ``scale`` and write its runs, curves and constants; returns the
    predictions table, which the command prints, compares and then writes."""
    grids = SCALES[scale]
    problems = {name: build_problem(name, seed=seed) for name in FAMILIES}
    basins = [build_problem("E2", seed=seed, d=d) if d > 1 else problems["E2"] for d in grids.flat.dims]
    problems.update({problem_label(p): p for p in basins})
    q1 = problems["Q1"]
    n_cells = 5 * len(grids.rate.batch_sizes) + 3 + len(basins)
    bar = tqdm(total=n_cells, disable=not progress, unit="cell")
    cache = CellCache(out / "cells", fresh, bar, seed)
    result = CheckOutput()
    for label, p in problems.items():
        result.predictions += smooth_predictions(p, label)
    result.extend(run_rate_check(q1, grids.rate, seed, cache))
    result.extend(run_floor_check(q1, grids.floor, cache))
    result.extend(run_bias_check(q1, grids.bias, cache))
    result.predictions.append(switch_radius_prediction(problems["E2"]))
    for p in basins:
        result.extend(run_flat_check(p, grids.flat, cache))
    bar.close()
    stamp = provenance("cpu", seed=seed, scale=scale, config_hash=config_hash(asdict(grids)))
    predictions = pd.DataFrame([p.to_row() for p in result.predictions]).assign(**stamp)
    runs = pd.DataFrame(result.runs).assign(**stamp)
    write_table(runs, out / "runs.parquet")
    write_table(pd.concat(result.curves, ignore_index=True).assign(**stamp), out / "curves.parquet")
    write_table(constants_table(problems).assign(**stamp), out / "constants.parquet")
    return predictions


def any_failed(predictions: pd.DataFrame) -> bool:
    return bool((predictions["verdict"] == FAIL).any())
