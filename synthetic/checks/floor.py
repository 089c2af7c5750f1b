"""Checks "floor" (R2) and "fo": where deterministic methods stop on a quadratic problem.

R2 [derived]: deterministic Sharp-MAML_up with a constant radius alpha on a quadratic F with
a simple top eigenvalue l1 and eta l1 < 2 ends on a 2-cycle along the top eigenvector with
||grad F|| = eta l1^2 alpha / (2 - eta l1).

FO [derived here, literature: Fallah et al. 2020]: FO-MAML's meta-gradient is affine in
theta on quadratic tasks, so deterministic FO-MAML converges to the root theta_FO of that
affine map, where MAML's stationarity measure ||grad F(theta_FO)||^2 is a floor > 0.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from harness.meta import plain_meta_gradient
from infra.verdicts import DERIVED, Prediction, verdict
from synthetic.checks.common import (
    Cell,
    CheckOutput,
    CheckRun,
    curve_frame,
    filled,
    lane_status,
    lanes,
    run_cost,
)
from synthetic.methods import method_config
from synthetic.problems.base import ProblemInstance
from synthetic.runs import LaneResults, run_lanes
from synthetic.theory import r2_cycle_gradient_norm

CYCLE_TOLERANCE = 1e-6
ALIGNMENT_MIN = 0.999
# R2 needs a quadratic F's top eigenpair (simple top eigenvalue), FO needs quadratic tasks
# (FO-MAML's meta-gradient is affine only there) and L_bar for its step size.
NEEDS = ("quadratic", "L_bar")


@dataclass(frozen=True)
class FloorGrid:
    """Step sizes, radii and run length of the R2 check; run length of the FO check."""

    etas: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    alphas: tuple[float, ...] = (0.01, 0.1)
    steps: int = 8000
    fo_steps: int = 8000


def run_floor_check(problem: ProblemInstance, grid: FloorGrid, global_seed: int) -> CheckRun:
    """R2 on every (eta, alpha) lane of one batched deterministic run, and the FO floor."""
    out = CheckOutput()
    label = problem.label
    lambda1 = problem.quadratic.top_eigenvalue
    v1 = problem.quadratic.top_eigenvector.numpy()
    layout = [(eta, alpha) for eta, alpha in itertools.product(grid.etas, grid.alphas) if eta * lambda1 < 2]
    eta = [e for e, _ in layout]
    alpha = [a for _, a in layout]
    cfg = method_config(problem, "sharp_up")
    key = {
        "check": "floor",
        "family": problem.family,
        "layout": layout,
        "steps": grid.steps,
        "problem": problem.settings,
    }
    compute = functools.partial(
        run_lanes,
        problem,
        cfg,
        lanes(eta),
        filled(len(layout), 0.0),
        lanes(alpha),
        grid.steps,
        None,
        torch.Generator(),
    )
    run_id = f"floor/{label}/sharp_up"
    fo_cell, fo_judge = first_order_cell(problem, grid)
    result, fo_result = yield [Cell(run_id, key, compute, run_cost(cfg, grid.steps, len(layout))), fo_cell]
    out.curves.append(curve_frame(run_id, result.curve_steps, result.curve))
    grads = torch.func.vmap(problem.meta_grad)(
        {k: torch.as_tensor(v) for k, v in result.final_params.items()}
    )
    final_grad = grads["theta"].numpy()
    for lane, (e, a) in enumerate(layout):
        predicted = r2_cycle_gradient_norm(e, lambda1, a)
        before, last = result.final_grad_norm[lane]
        alignment = abs(float(final_grad[lane] @ v1)) / max(float(np.linalg.norm(final_grad[lane])), 1e-300)
        rel_err = abs(last - predicted) / predicted
        ok = (
            rel_err <= CYCLE_TOLERANCE
            and abs(before - last) <= CYCLE_TOLERANCE * predicted
            and alignment > ALIGNMENT_MIN
        )
        out.predictions.append(
            Prediction(
                id=f"floor/{label}/eta={e:g}/alpha={a:g}",
                prediction="deterministic Sharp-MAML_up, constant alpha: 2-cycle with ||grad F|| = eta l1^2 alpha/(2 - eta l1)",
                source=DERIVED,
                predicted=predicted,
                measured=float(last),
                tolerance=f"relative error <= {CYCLE_TOLERANCE:g}, alignment with v1 > {ALIGNMENT_MIN}",
                verdict=verdict(bool(ok)),
                details=f"relative error {rel_err:.2e}; |cos(grad F, v1)| = {alignment:.6f}; "
                f"||grad F|| at T-1 and T: {before:.6e}, {last:.6e}; eta*l1 = {e * lambda1:.3f}; {grid.steps} steps",
            )
        )
        out.runs.append(
            {
                "check": "floor",
                "run_id": run_id,
                "family": label,
                "method": "sharp_up",
                "lane": lane,
                "eta": e,
                "alpha": a,
                "T": grid.steps,
                "final_grad_norm": float(last),
                "predicted_grad_norm": predicted,
                "alignment_v1": alignment,
                "status": lane_status(result, lane),
            }
        )
    out.extend(fo_judge(fo_result))
    return out


def first_order_fixed_point(problem: ProblemInstance) -> torch.Tensor:
    """Root of FO-MAML's full-batch meta-gradient, which is affine in theta on quadratic tasks.

    The affine map g(theta) = K theta + g(0) is read off the engine column by column
    (d + 1 evaluations), then solved.
    """
    cfg = method_config(problem, "fomaml")
    theta0 = problem.init_params["theta"]
    d = theta0.numel()

    def g(theta: torch.Tensor) -> torch.Tensor:
        return plain_meta_gradient(problem.loss, {"theta": theta}, problem.tasks, cfg).grad["theta"]

    origin = g(torch.zeros_like(theta0))
    columns = [g(e) - origin for e in torch.eye(d, dtype=theta0.dtype)]
    return torch.linalg.solve(torch.stack(columns, dim=1), -origin)


def first_order_cell(
    problem: ProblemInstance, grid: FloorGrid
) -> tuple[Cell, Callable[[LaneResults], CheckOutput]]:
    """Deterministic FO-MAML reaches theta_FO and stalls at ||grad F(theta_FO)||^2 > 0: the cell
    and the function that judges its result."""
    theta_fo = first_order_fixed_point(problem)
    floor = float(problem.meta_grad({"theta": theta_fo})["theta"].pow(2).sum())
    eta = 1.0 / problem.constants.L_bar
    cfg = method_config(problem, "fomaml")
    key = {
        "check": "fo",
        "family": problem.family,
        "steps": grid.fo_steps,
        "eta": eta,
        "problem": problem.settings,
    }
    run_id = f"fo/{problem.label}/fomaml"
    compute = functools.partial(
        run_lanes,
        problem,
        cfg,
        filled(1, eta),
        filled(1, 0.0),
        filled(1, 0.0),
        grid.fo_steps,
        None,
        torch.Generator(),
    )
    return Cell(run_id, key, compute, run_cost(cfg, grid.fo_steps, 1)), functools.partial(
        judge_first_order, problem, grid, run_id, theta_fo, floor
    )


def judge_first_order(
    problem: ProblemInstance,
    grid: FloorGrid,
    run_id: str,
    theta_fo: torch.Tensor,
    floor: float,
    result: LaneResults,
) -> CheckOutput:
    """The fo.floor row from the FO-MAML run."""
    out = CheckOutput()
    out.curves.append(curve_frame(run_id, result.curve_steps, result.curve))
    measured = float(result.final_grad_norm[0, 1] ** 2)
    rel_err = abs(measured - floor) / floor
    distance = float(np.linalg.norm(result.final_params["theta"][0] - theta_fo.numpy()))
    out.predictions.append(
        Prediction(
            id=f"fo.floor/{problem.label}/deterministic",
            prediction="deterministic FO-MAML stalls at theta_FO with ||grad F(theta_FO)||^2 > 0",
            source=DERIVED,
            predicted=floor,
            measured=measured,
            tolerance="relative error <= 1e-6 and floor > 0",
            verdict=verdict(rel_err <= 1e-6 and floor > 0),
            details=f"relative error {rel_err:.2e}; ||theta_T - theta_FO|| = {distance:.2e}; "
            f"||theta_FO - theta*|| = {float(torch.linalg.vector_norm(theta_fo - problem.quadratic.theta_star)):.4f}; "
            f"eta = 1/L_bar, {grid.fo_steps} steps"
            + (f"; {result.divergence_cause(0)}" if result.diverged[0] else ""),
        )
    )
    return out
