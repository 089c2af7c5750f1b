"""pytest-benchmark: one rate cell of the convergence suite, vectorised lanes vs a seed loop.

Run with ``tox -e bench`` (or ``pytest benchmarks --benchmark-only``). The cell is
Sharp-MAML_both on Q1 with B = 8 and the 1/sqrt(T) schedule: 8 seeds x T in {100, 316}.
Both benchmarks compute the same lanes from the same task draws (asserted to 1e-12), so the
ratio of their means in one run is the speedup of advancing seeds together under vmap over a
Python loop of seeds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from infra.seeding import generator
from synthetic.checks.common import lanes
from synthetic.methods import lane_radii, method_config
from synthetic.problems.base import build_problem
from synthetic.runs import LaneResults, run_lanes
from synthetic.theory import rate_radius, rate_step_size

SEEDS, HORIZONS, BATCH, METHOD = 8, (100, 316), 8, "sharp_both"


@pytest.fixture(scope="module")
def cell():
    """The Q1 problem and the lane layout of one rate cell."""
    torch.set_num_threads(1)
    problem = build_problem("Q1", seed=0)
    layout = [(T, s) for T in HORIZONS for s in range(SEEDS)]
    steps = np.asarray([T for T, _ in layout])
    eta = lanes([rate_step_size(T, problem.constants.L_bar) for T in steps])
    low, up = lane_radii([METHOD] * len(steps), np.asarray([rate_radius(T, "sqrt") for T in steps]))
    return problem, method_config(problem, METHOD), steps, eta, low, up


def run_cell(cell, lane_slice: slice) -> LaneResults:
    problem, cfg, steps, eta, low, up = cell
    n = len(steps[lane_slice])
    return run_lanes(
        problem,
        cfg,
        eta[lane_slice],
        low[lane_slice],
        up[lane_slice],
        steps[lane_slice],
        BATCH,
        generator(0, "bench"),
        draw_rows=np.zeros(n, dtype=int),
    )


def test_rate_cell_vmapped_lanes(benchmark, cell) -> None:
    result = benchmark.pedantic(lambda: run_cell(cell, slice(None)), rounds=3, iterations=1)
    assert np.isfinite(result.grad_norm2_avg).all()


def test_rate_cell_one_lane_at_a_time(benchmark, cell) -> None:
    def loop() -> list[LaneResults]:
        return [run_cell(cell, slice(i, i + 1)) for i in range(SEEDS * len(HORIZONS))]

    results = benchmark.pedantic(loop, rounds=3, iterations=1)
    together = run_cell(cell, slice(None)).grad_norm2_avg
    np.testing.assert_allclose([r.grad_norm2_avg[0] for r in results], together, rtol=1e-12)
