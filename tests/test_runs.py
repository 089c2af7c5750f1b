"""synthetic.runs.run_lanes: batched lanes against a hand-written gradient-descent loop, frozen
lanes, common task draws, and divergence with its cause."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.meta import plain_meta_gradient
from synthetic.checks.common import filled, lane_status, lanes
from synthetic.methods import lane_radii, lane_second_order, method_config
from synthetic.problems.base import ProblemInstance, build_problem
from synthetic.runs import run_lanes


@pytest.fixture(scope="module")
def q1() -> ProblemInstance:
    return build_problem("Q1", 0, d=4, M=6, verify=False)


def test_deterministic_lanes_match_a_plain_loop_and_freeze_after_their_steps(q1) -> None:
    cfg = method_config(q1, "maml")
    etas, steps = [0.5, 1.5], np.asarray([3, 5])
    result = run_lanes(q1, cfg, lanes(etas), filled(2, 0.0), filled(2, 0.0), steps, None, torch.Generator())
    for lane, (eta, T) in enumerate(zip(etas, steps, strict=True)):
        theta, norms = q1.init_params["theta"].clone(), []
        for _ in range(T):
            norms.append(float(q1.meta_grad({"theta": theta})["theta"].pow(2).sum()))
            step = plain_meta_gradient(q1.loss, {"theta": theta}, q1.tasks, cfg).grad["theta"]
            theta = theta - eta * step
        assert np.allclose(result.final_params["theta"][lane], theta.numpy(), rtol=1e-12, atol=1e-14)
        assert result.grad_norm2_avg[lane] == pytest.approx(np.mean(norms), rel=1e-12)
        assert result.grad_norm2_min[lane] == pytest.approx(min(norms), rel=1e-12)
        final = float(q1.meta_grad({"theta": theta})["theta"].norm())
        assert result.final_grad_norm[lane, 1] == pytest.approx(final, rel=1e-12)
        assert result.final_grad_norm[lane, 0] == pytest.approx(np.sqrt(norms[-1]), rel=1e-12)
    recorded = dict(zip(result.curve_steps.tolist(), result.curve[0], strict=True))
    assert np.isnan(recorded[5]) and np.isfinite(recorded[3])  # lane 0 stops after 3 steps
    assert not result.diverged.any() and lane_status(result, 0) == "ok"


def test_lanes_sharing_a_draw_row_see_the_same_tasks(q1) -> None:
    cfg = method_config(q1, "sharp_both")
    low, up = lane_radii(["maml", "maml", "sharp_both"], np.asarray([0.0, 0.0, 0.05]))
    result = run_lanes(
        q1,
        cfg,
        filled(3, 0.2),
        low,
        up,
        20,
        2,
        torch.Generator().manual_seed(1),
        draw_rows=np.asarray([0, 0, 1]),
    )
    assert np.array_equal(result.final_params["theta"][0], result.final_params["theta"][1])
    assert not np.array_equal(result.final_params["theta"][0], result.final_params["theta"][2])
    # sharp_both at radii (0, 0) is MAML exactly: the same numbers as a MAML run (two draw rows,
    # so that both runs draw the same task indices).
    maml = run_lanes(
        q1,
        method_config(q1, "maml"),
        filled(2, 0.2),
        filled(2, 0.0),
        filled(2, 0.0),
        20,
        2,
        torch.Generator().manual_seed(1),
        draw_rows=np.asarray([0, 1]),
    )
    assert np.array_equal(maml.final_params["theta"][0], result.final_params["theta"][0])


def test_first_order_lanes_in_a_second_order_run_are_fo_maml_bit_for_bit(q1) -> None:
    """The rate check runs FO-MAML as lanes of its Sharp-MAML_both run (``Radii.second_order`` 0):
    those lanes give exactly the numbers of an FO-MAML run, and the second-order lanes exactly
    those of a MAML run, on the same task draws."""
    methods = ["maml", "fomaml", "maml", "fomaml"]
    draws = np.asarray([0, 0, 1, 1])

    def run(method: str, lane_methods: list[str], rows: np.ndarray, order: bool):
        low, up = lane_radii(lane_methods, np.zeros(len(lane_methods)))
        return run_lanes(
            q1,
            method_config(q1, method),
            filled(len(lane_methods), 0.3),
            low,
            up,
            12,
            2,
            torch.Generator().manual_seed(3),
            draw_rows=rows,
            second_order=lane_second_order(lane_methods) if order else None,
        )

    mixed = run("sharp_both", methods, draws, order=True)
    for method, lanes_of_method in (("maml", [0, 2]), ("fomaml", [1, 3])):
        alone = run(method, [method, method], np.asarray([0, 1]), order=False)
        assert np.array_equal(mixed.final_params["theta"][lanes_of_method], alone.final_params["theta"])
        assert np.array_equal(mixed.grad_norm2_avg[lanes_of_method], alone.grad_norm2_avg)
    assert not np.array_equal(mixed.final_params["theta"][0], mixed.final_params["theta"][1])


def test_lanes_of_different_lengths_equal_separate_runs_and_leave_the_batch_when_done(q1) -> None:
    """The rate check runs every horizon T as lanes of one run: a lane that has made its steps
    leaves the batched calls (the others go on without it), and every lane's numbers are exactly
    those of a run of its own length on the same task draws."""
    import dataclasses

    seen: list[int] = []

    def recording(params):
        seen.append(params["theta"].shape[0])
        return q1.exact_gradient(params)

    problem = dataclasses.replace(q1, exact_gradient=recording)
    methods = ["sharp_both", "sharp_both", "fomaml"]

    def run(steps: list[int], rows: list[int], eta: list[float], alpha: list[float], lane_methods: list[str]):
        low, up = lane_radii(lane_methods, np.asarray(alpha))
        return run_lanes(
            problem,
            method_config(q1, "sharp_both"),
            lanes(eta),
            low,
            up,
            np.asarray(steps),
            2,
            torch.Generator().manual_seed(5),
            draw_rows=np.asarray(rows),
            second_order=lane_second_order(lane_methods),
        )

    merged = run([5, 12, 12], [0, 1, 0], [0.3, 0.2, 0.25], [0.05, 0.02, 0.0], methods)
    assert seen == [3] * 6 + [2] * 7 + [3]  # lane 0 leaves after step 5 (then the final grad F of all)
    short = run([5, 5], [0, 1], [0.3, 0.2], [0.05, 0.02], methods[:2])  # two draw rows, as in the merged run
    long = run([12, 12], [1, 0], [0.2, 0.25], [0.02, 0.0], methods[1:])
    for field in ("final_params", "grad_norm2_avg", "grad_norm2_min", "final_grad_norm"):
        pick = lambda r, i: r.final_params["theta"][i] if field == "final_params" else getattr(r, field)[i]  # noqa: E731
        assert np.array_equal(pick(merged, 0), pick(short, 0))
        assert np.array_equal(pick(merged, [1, 2]), pick(long, [0, 1]))
    assert np.isnan(merged.curve[0, merged.curve_steps > 5]).all()


def test_run_cost_orders_runs_by_method_before_lanes() -> None:
    """The suite's schedule (largest first): a 4-lane Sharp-MAML_up run costs more than an 8-lane
    FO-MAML run of as many steps (measured 12 vs 4 ms a step on Q1), and a step's lanes add little."""
    from harness.config import MetaConfig
    from synthetic.checks.common import run_cost

    up, fo = MetaConfig(method="sharp_up"), MetaConfig(method="fomaml")
    assert run_cost(up, 1000, 4) > 1.5 * run_cost(fo, 1000, 8)
    assert run_cost(up, 1000, 56) < 2 * run_cost(up, 1000, 4)
    assert run_cost(up, 2000, 4) == 2 * run_cost(up, 1000, 4)


def test_a_diverging_lane_is_recorded_with_its_cause(q1) -> None:
    cfg = method_config(q1, "maml")
    result = run_lanes(
        q1, cfg, lanes([0.1, 1e6]), filled(2, 0.0), filled(2, 0.0), 50, None, torch.Generator()
    )
    assert list(result.diverged) == [False, True]
    assert np.isnan(result.grad_norm2_avg[1]) and np.isfinite(result.grad_norm2_avg[0])
    assert lane_status(result, 1).startswith("diverged: ||theta|| above 1e+08 at step ")
    nan_tasks = build_problem("Q1", 0, d=4, M=6, verify=False)
    nan_tasks.loss = lambda params, batch: q1.loss(params, batch) * torch.nan
    result = run_lanes(
        nan_tasks, cfg, lanes([0.1]), filled(1, 0.0), filled(1, 0.0), 5, None, torch.Generator()
    )
    assert lane_status(result, 0) == "diverged: non-finite meta-loss at step 0"


def test_cells_in_two_processes_equal_one_process_bit_for_bit(q1, tmp_path) -> None:
    """The suite's parallel path (forked workers, largest cell first) returns exactly the
    numbers of the serial path, in the cells' order, and stores them in the cell cache."""
    import functools

    from infra.cells import CellCache
    from synthetic.checks.common import Cell
    from synthetic.parallel import compute_cells

    def make_cells() -> list[Cell]:  # fresh generators: a cell's compute consumes its own
        return [
            Cell(
                f"c{i}",
                {"i": i},
                functools.partial(
                    run_lanes,
                    q1,
                    method_config(q1, method),
                    filled(3, 0.1),
                    filled(3, 0.02 if method == "sharp_both" else 0.0),
                    filled(3, 0.02 if method == "sharp_both" else 0.0),
                    15 + 5 * i,
                    2,
                    torch.Generator().manual_seed(i),
                ),
                cost=float(i),
            )
            for i, method in enumerate(["maml", "sharp_both", "fomaml", "sharp_both"])
        ]

    cells = make_cells()
    serial = compute_cells(cells, lambda name, key, compute: compute(), jobs=1)
    parallel = compute_cells(make_cells(), CellCache(tmp_path, False, None, seed=0), jobs=2)
    for a, b in zip(serial, parallel, strict=True):
        for field in ("grad_norm2_avg", "curve", "final_grad_norm", "divergence_code"):
            assert np.array_equal(getattr(a, field), getattr(b, field), equal_nan=field == "curve")
        assert np.array_equal(a.final_params["theta"], b.final_params["theta"])
    assert len(list(tmp_path.iterdir())) == len(cells)  # each worker stored its cell
    again = compute_cells(make_cells(), CellCache(tmp_path, False, None, seed=0), jobs=2)
    assert np.array_equal(again[3].grad_norm2_avg, serial[3].grad_norm2_avg)


PARALLEL_SIGNALS = """
import os, signal, sys, time
from infra.errors import Interrupted
from infra.interrupts import stop_requests
from synthetic.checks.common import Cell
from synthetic.parallel import compute_cells

def cache(name, key, compute):
    value = compute()
    open(os.path.join(sys.argv[1], name), "w").close()
    return value

def cell(i, compute, round_=1):
    return Cell(f"r{round_}c{i}", {"i": i}, compute, cost=float(-i))

def signal_parent():
    os.kill(os.getppid(), signal.SIGTERM)
    return 0

with stop_requests("finishing the current cell"):
    print("done", compute_cells([cell(i, lambda i=i: i * i) for i in range(4)], cache, jobs=2))
    cells = [cell(0, signal_parent, 2)] + [cell(i, lambda i=i: time.sleep(0.2) or i, 2) for i in range(1, 40)]
    try:
        compute_cells(cells, cache, jobs=2)
    except Interrupted as stop:
        print("stopped", stop.signal_name, len(os.listdir(sys.argv[1])))
"""


def test_parallel_cells_leave_signals_to_the_parent(tmp_path) -> None:
    """Inside the CLI's stop_requests block a parallel round ends (its workers do not inherit
    the deferred SIGTERM that Pool.terminate sends, which left the suite waiting forever), and a
    SIGTERM to the parent stops it at the next finished cell, the finished cells stored."""
    import subprocess
    import sys

    from infra.paths import repo_root

    script = subprocess.run(
        [sys.executable, "-c", PARALLEL_SIGNALS, str(tmp_path)],
        cwd=repo_root(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = script.stdout.splitlines()
    assert lines[0] == "done [0, 1, 4, 9]", script.stderr
    word, name, stored = lines[1].split()
    assert (word, name) == ("stopped", "SIGTERM")
    assert 4 < int(stored) < 4 + 40  # the first round's 4 cells, then the signalling one, not all 40
