"""The convergence suite: builds every registered family, runs every check whose needs a family
meets, writes the results store.

Checks (``CHECKS``): smooth (every family's constants against their verification), rate (R1),
floor (R2 and FO-MAML), bias (R3), flat (two basins: does Sharp-MAML_up find the flat basin?
several rows FAIL by design: they are findings). A check a family cannot run is one N/A row
naming what the family lacks.

The cells (batched runs) of every check are computed in ``jobs`` processes (``synthetic.parallel``):
the same numbers as one process, bit for bit.

Results under ``out``: predictions.parquet/.csv (the table), runs.parquet (one row per run x
T x seed, with config and provenance), curves.parquet (per-iteration ||grad F||^2),
constants.parquet (every family constant with its verification), cells/ (per-cell cache
that makes an interrupted suite resume where it stopped).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from infra.cells import CellCache
from infra.errors import stage
from infra.provenance import config_hash, provenance
from infra.store import write_table
from infra.verdicts import DERIVED, FAIL, NOT_APPLICABLE, Prediction, verdict
from synthetic.checks import bias, flat, floor, rate
from synthetic.checks.common import CheckOutput, CheckRun
from synthetic.parallel import run_checks
from synthetic.problems.base import (
    CAPABILITIES,
    ProblemInstance,
    build_problem,
    family_names,
    missing_capabilities,
)


@dataclass(frozen=True)
class SuiteScale:
    """Grid sizes of one scale of the suite."""

    rate: rate.RateGrid
    floor: floor.FloorGrid
    bias: bias.BiasGrid
    flat: flat.FlatGrid


CONVERGENCE_GRIDS: dict[str, SuiteScale] = {
    "quick": SuiteScale(
        rate.RateGrid(horizons=(100, 316, 1000), n_seeds=2, batch_sizes=(8,), slope_from=316),
        floor.FloorGrid(etas=(2.0, 4.0), steps=600, fo_steps=1000),
        bias.BiasGrid(alphas=(0.005, 0.02, 0.05, 0.2), steps=200),
        flat.FlatGrid(alphas=(0.0, 0.05, 0.15, 0.3), starts=(-0.15, 0.1, 0.28), steps=400, dims=(1,)),
    ),
    "default": SuiteScale(
        rate.RateGrid(horizons=(100, 316, 1000), n_seeds=4, batch_sizes=(8,), slope_from=316),
        floor.FloorGrid(etas=(2.0, 4.0), steps=600, fo_steps=1000),
        bias.BiasGrid(steps=200),
        flat.FlatGrid(steps=400),
    ),
    "full": SuiteScale(
        rate.RateGrid(horizons=(100, 316, 1000, 3162, 10000, 31623), n_seeds=20, batch_sizes=(1, 8)),
        floor.FloorGrid(steps=8000, fo_steps=8000),
        bias.BiasGrid(steps=4000),
        flat.FlatGrid(
            starts=(-0.3, -0.2, -0.1, 0.05, 0.1, 0.15, 0.2, 0.25, 0.28), steps=4000, dims=(1, 2, 5, 10)
        ),
    ),
}


@dataclass(frozen=True)
class SuiteCheck:
    """A check of the suite: its name, what it needs from a family (``CAPABILITIES`` names) and
    how to start it on a problem with the scale's grid and the global seed."""

    name: str
    needs: tuple[str, ...]
    start: Callable[[ProblemInstance, SuiteScale, int], CheckRun]


CHECKS = (
    SuiteCheck("rate", rate.NEEDS, lambda p, g, seed: rate.run_rate_check(p, g.rate, seed)),
    SuiteCheck("floor", floor.NEEDS, lambda p, g, seed: floor.run_floor_check(p, g.floor, seed)),
    SuiteCheck("bias", bias.NEEDS, lambda p, g, seed: bias.run_bias_check(p, g.bias, seed)),
    SuiteCheck("flat", flat.NEEDS, lambda p, g, seed: flat.run_flat_check(p, g.flat, seed)),
)


def not_applicable(check: SuiteCheck, problem: ProblemInstance, missing: list[str]) -> Prediction:
    """The one row of a check that a family cannot run, naming what it lacks."""
    lacking = "; ".join(f"{name} ({CAPABILITIES[name]})" for name in missing)
    return Prediction(
        id=f"{check.name}/{problem.label}",
        prediction=f"check {check.name} on family {problem.label}",
        source=DERIVED,
        predicted=None,
        measured=None,
        tolerance="-",
        verdict=NOT_APPLICABLE,
        details=f"needs {lacking}, which {problem.label} does not provide",
    )


def default_jobs() -> int:
    """One process per core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def smooth_predictions(problem: ProblemInstance) -> list[Prediction]:
    """One row per constant check of a family (closed form vs numerical verification)."""
    return [
        Prediction(
            id=f"smooth/{problem.label}/{check.name}",
            prediction=f"{check.relation} ({check.method})",
            source=DERIVED,
            predicted=check.closed_form,
            measured=check.measured,
            tolerance=check.relation,
            verdict=verdict(check.holds),
            details=slack_note(check),
        )
        for check in problem.checks
    ]


def slack_note(check: Any) -> str:
    """A bound row's slack, bound / measured (1 = tight: a wrong constant shows; large: it may
    not); empty for equality rows."""
    if not check.relation.startswith("measured <= closed_form") or check.measured == 0:
        return ""
    return f"slack closed_form/measured = {check.closed_form / check.measured:.3g}"


def constants_table(problems: list[ProblemInstance]) -> pd.DataFrame:
    """Every constant and every verification of the problems, keyed by their labels."""
    rows = [
        {"family": p.label, "constant": k, "value": v}
        for p in problems
        for k, v in {**p.constants.provided(), **p.reported}.items()
    ]
    rows += [
        {
            "family": p.label,
            "constant": f"check:{c.name}",
            "value": c.measured,
            "closed_form": c.closed_form,
            "holds": c.holds,
            "method": c.method,
        }
        for p in problems
        for c in p.checks
    ]
    return pd.DataFrame(rows)


def run_convergence_suite(
    scale: str,
    out: Path,
    seed: int,
    fresh: bool = False,
    progress: bool = True,
    families: tuple[str, ...] | None = None,
    jobs: int | None = None,
) -> pd.DataFrame:
    """Run the suite at ``scale`` on ``families`` (default: every registered one) with ``jobs``
    processes (default: one per core) and write its runs, curves and constants; returns the
    predictions table, which the command prints, compares and then writes."""
    grids = CONVERGENCE_GRIDS[scale]
    problems = [build_problem(name, seed=seed) for name in families or family_names()]
    result = CheckOutput()
    started: list[tuple[str, CheckRun]] = []
    for problem in problems:
        result.predictions += smooth_predictions(problem)
        for check in CHECKS:
            missing = missing_capabilities(problem, check.needs)
            if missing:
                result.predictions.append(not_applicable(check, problem, missing))
            else:
                with stage(f"{check.name} on {problem.label}"):
                    started.append((f"{check.name} on {problem.label}", check.start(problem, grids, seed)))
    cache = CellCache(out / "cells", fresh, None, seed)
    with tqdm(disable=not progress, unit="cell") as bar:
        outputs = run_checks(started, cache, jobs or default_jobs(), bar)
    for output in outputs:
        result.extend(output)
        for instance in output.instances:
            result.predictions += smooth_predictions(instance)
    stamp = provenance("cpu", seed=seed, scale=scale, config_hash=config_hash(asdict(grids)))
    predictions = pd.DataFrame([p.to_row() for p in result.predictions]).assign(**stamp)
    runs = pd.DataFrame(result.runs).assign(**stamp)
    write_table(runs, out / "runs.parquet")
    write_table(pd.concat(result.curves, ignore_index=True).assign(**stamp), out / "curves.parquet")
    write_table(constants_table(problems + result.instances).assign(**stamp), out / "constants.parquet")
    if result.profiles:
        write_table(pd.concat(result.profiles, ignore_index=True).assign(**stamp), out / "profiles.parquet")
    return predictions


def any_failed(predictions: pd.DataFrame) -> bool:
    return bool((predictions["verdict"] == FAIL).any())
