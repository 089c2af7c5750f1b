"""The generalization suite: PAC-Bayes / sharpness bound checks on L2, flatness on L2 and E2.

Results under ``out`` (default results/generalization): predictions.parquet / .csv,
runs.parquet, sharpness.parquet, gaps.parquet and the cells/ cache an interrupted run resumes
from. docs/generalization.md ("Results files") lists every column.
"""

from __future__ import annotations

import functools
from dataclasses import asdict
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from infra.cells import CellCache
from infra.provenance import config_hash, provenance
from infra.store import write_table
from synthetic.generalization.cells import GenGrid, e2_cell, fresh_tasks, l2_cell
from synthetic.generalization.predictions import add_bound_columns, generalization_predictions
from synthetic.problems.base import build_problem

GENERALIZATION_GRIDS: dict[str, GenGrid] = {
    "quick": GenGrid(
        tasks=(25, 100), samples=(2, 5), n_seeds=4, alphas=(0.1, 0.5), gibbs_evaluations=5_000, e2_steps=300
    ),
    "default": GenGrid(
        tasks=(25, 50, 100, 200, 400, 800, 1600), samples=(2, 5, 20), n_seeds=10, alphas=(0.1, 0.5)
    ),
    "full": GenGrid(
        tasks=(25, 50, 100, 200, 400, 800, 1600, 3200),
        samples=(2, 5, 20),
        n_seeds=10,
        alphas=(0.05, 0.1, 0.2, 0.5),
        fresh_tasks=50_000,
        gibbs_evaluations=20_000,
        posterior_sigmas=(0.05, 0.1, 0.2, 0.4, 0.8),
        ascent_restarts=4,
        ascent_steps=10,
        e2_alphas=(0.05, 0.15, 0.3, 0.5),
        e2_steps=2000,
    ),
}
GAP_COLUMNS = ("train_risk", "true_risk", "gap", "foret_rhs", "pac_bayes_kl_rhs", "sharpness", "hessian_top")


def grid_key(grid: GenGrid, global_seed: int) -> dict:
    """What every cell's numbers depend on besides its own (M, m_tr): the grid without its lists
    of M and m_tr, so a cell is reused by any scale that measures it the same way."""
    return {**asdict(grid), "tasks": None, "samples": None, "global_seed": global_seed}


def run_hash(row: pd.Series, common: dict, problem_settings: dict) -> str:
    """config_hash of one run: its method, radius, cell and seed, and what the cell depends on."""
    keys = ("family", "method", "alpha_up", "M", "m_tr", "seed_index")
    own = {k: None if pd.isna(row[k]) else row[k] for k in keys}
    return config_hash({**own, **common, "problem": problem_settings if row["family"] == "L2" else "E2"})


def gaps_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard error over seeds per (method, alpha_up, M, m_tr) of the L2 runs."""
    ok = runs[(runs["family"] == "L2") & (runs["status"] == "ok")]
    grouped = ok.groupby(["method", "alpha_up", "M", "m_tr"])
    table = grouped[list(GAP_COLUMNS)].agg(["mean", "sem"])
    table.columns = [f"{c}_{'se' if stat == 'sem' else stat}" for c, stat in table.columns]
    table["seeds"] = grouped.size()
    table["foret_vacuous_fraction"] = grouped["foret_vacuous"].mean()
    table["pac_bayes_vacuous_fraction"] = grouped["pac_bayes_vacuous"].mean()
    return table.reset_index()


def run_generalization_suite(
    scale: str, out: Path, seed: int, fresh: bool = False, progress: bool = True
) -> pd.DataFrame:
    """Run the suite at ``scale`` and write its runs, sharpness and gaps; returns the
    predictions table, which the command prints, compares and then writes."""
    grid = GENERALIZATION_GRIDS[scale]
    problem = build_problem("L2", seed=seed, verify=False)
    bar = tqdm(total=len(grid.tasks) * len(grid.samples) + 1, disable=not progress, unit="cell")
    cache = CellCache(out / "cells", fresh, bar, seed)
    common = grid_key(grid, seed)
    runs, sharpness = [], []
    for m_tr in grid.samples:
        fresh_draw = functools.cache(lambda m_tr=m_tr: fresh_tasks(problem, seed, m_tr, grid.fresh_tasks))
        for M in grid.tasks:
            key = {**common, "cell": "L2", "M": M, "m_tr": m_tr, "problem": problem.settings}
            cell = cache(
                f"generalization/L2/M{M}/m{m_tr}",
                key,
                lambda M=M, m_tr=m_tr, draw=fresh_draw: l2_cell(problem, grid, M, m_tr, seed, draw()),
            )
            runs += cell["runs"]
            sharpness += cell["sharpness"]
    runs += cache("generalization/E2", {**common, "cell": "E2"}, lambda: e2_cell(grid, seed))["runs"]
    bar.close()

    table = pd.DataFrame(runs)
    l2 = table["family"] == "L2"
    table = pd.concat([add_bound_columns(table[l2]), table[~l2]], ignore_index=True)
    table = table.astype({"M": "Int64", "m_tr": "Int64", "m_val": "Int64"})
    d = problem.init_params["theta"].numel()
    predictions = generalization_predictions(table, pd.DataFrame(sharpness), grid, seed, d)
    stamp = provenance("cpu", seed=seed, scale=scale, config_hash=config_hash(asdict(grid)))
    hashes = [run_hash(row, common, problem.settings) for _, row in table.iterrows()]
    frame = pd.DataFrame([p.to_row() for p in predictions]).assign(**stamp)
    write_table(table.assign(**stamp).assign(config_hash=hashes), out / "runs.parquet")
    write_table(pd.DataFrame(sharpness).assign(**stamp), out / "sharpness.parquet")
    write_table(gaps_table(table).assign(**stamp), out / "gaps.parquet")
    return frame
