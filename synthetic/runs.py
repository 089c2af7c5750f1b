"""Vectorised runs of one method on one problem: many independent runs advance together.

A "lane" is one run (a seed, or a cell of a grid of step sizes and radii). All lanes share
the method and the number of steps; each has its own step size eta, radii and task draws.
Lanes are batched with torch.func.vmap over the engine's meta-gradient, so 20 seeds cost
little more than one. The exact grad F of the problem is evaluated at every iterate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.func import vmap

from harness.config import MetaConfig
from harness.meta import Radii, meta_gradient
from harness.tasks import TaskBatch
from harness.tree import Params
from infra.codec import stored_value
from synthetic.problems.base import ProblemInstance

DIVERGENCE_NORM = 1e8
# Why a lane stopped, by code (LaneResults.divergence_code); the step is divergence_step.
DIVERGENCE_CAUSES = (
    "",
    "non-finite meta-loss",
    "non-finite meta-gradient",
    "non-finite ||grad F||^2",
    f"||theta|| above {DIVERGENCE_NORM:g}",
)


@stored_value
@dataclass
class LaneResults:
    """Per-lane outcome of a batched run (numpy arrays with the lane index first).

    grad_norm2_avg: (1/T) sum_{t<T} ||grad F(theta_t)||^2, the primary metric G_avg.
    grad_norm2_min: min_t ||grad F(theta_t)||^2.
    curve_steps / curve: ||grad F(theta_t)||^2 at the recorded steps t.
    final_grad_norm: ||grad F|| at the last two iterates (T-1, T), for cycle checks.
    final_params: theta_T of every lane.
    diverged: True where the run left the finite range (recorded, never raised).
    divergence_code / divergence_step: why (index into DIVERGENCE_CAUSES, 0 = none) and at
    which step (-1 = none); ``divergence_cause(lane)`` says it in words.
    All fields are numbers and arrays (plain data: cacheable, and sent between processes).
    """

    grad_norm2_avg: np.ndarray
    grad_norm2_min: np.ndarray
    curve_steps: np.ndarray
    curve: np.ndarray
    final_grad_norm: np.ndarray
    final_params: dict[str, np.ndarray]
    diverged: np.ndarray
    divergence_code: np.ndarray
    divergence_step: np.ndarray

    def divergence_cause(self, lane: int) -> str:
        """'non-finite meta-loss at step 12' and the like; '' for a lane that did not diverge."""
        code = int(self.divergence_code[lane])
        return f"{DIVERGENCE_CAUSES[code]} at step {int(self.divergence_step[lane])}" if code else ""


def log_spaced_steps(steps: int, points: int = 40) -> np.ndarray:
    """Distinct steps 0..steps, log-spaced, always including 0 and steps."""
    grid = np.unique(np.round(np.logspace(0, np.log10(steps + 1), points) - 1).astype(int))
    return np.unique(np.concatenate([[0], grid, [steps]]))


def _squared_norm(tree: Params) -> torch.Tensor:
    """Per-lane squared norm of a lane-batched parameter dict."""
    return sum(v.reshape(v.shape[0], -1).pow(2).sum(1) for v in tree.values())


def _select_tasks(tasks: TaskBatch, index: torch.Tensor) -> tuple:
    """support/query pytrees of the tasks index (lanes, B) -> leaves of shape (lanes, B, ...)."""
    picked = tasks.select(index.reshape(-1))
    lanes, batch = index.shape
    reshape = lambda x: x.reshape(lanes, batch, *x.shape[1:])  # noqa: E731
    return (
        torch.utils._pytree.tree_map(reshape, picked.support),
        torch.utils._pytree.tree_map(reshape, picked.query),
    )


def _lanes_where(mask: torch.Tensor) -> torch.Tensor | None:
    """The indices of the lanes where ``mask`` holds; None when it holds on every lane (the
    batched calls then take the full tensors, with no gather or scatter)."""
    return None if bool(mask.all()) else mask.nonzero().squeeze(1)


def _rows(tree: Any, index: torch.Tensor | None) -> Any:
    """The lanes ``index`` of every tensor in a pytree (all of them when index is None)."""
    return tree if index is None else torch.utils._pytree.tree_map(lambda x: x[index], tree)


def _scattered(
    values: torch.Tensor, index: torch.Tensor | None, lanes: int, fill: float | bool
) -> torch.Tensor:
    """Per-lane values computed on the lanes ``index``, placed in a lane vector, ``fill`` elsewhere."""
    if index is None:
        return values
    out = torch.full((lanes,), fill, dtype=values.dtype)
    out[index] = values
    return out


def _stepped(theta: Params, g: Params, step: torch.Tensor, index: torch.Tensor | None) -> Params:
    """theta - step * g on the lanes ``index`` (g holds only those lanes); the others unchanged."""
    scale = lambda v: step.view(-1, *[1] * (v.dim() - 1))  # noqa: E731
    if index is None:
        return {k: v - scale(v) * g[k] for k, v in theta.items()}
    out = {k: v.clone() for k, v in theta.items()}
    for k, v in out.items():
        v[index] = v[index] - scale(v)[index] * g[k]
    return out


def run_lanes(
    problem: ProblemInstance,
    cfg: MetaConfig,
    eta: torch.Tensor,
    alpha_low: torch.Tensor,
    alpha_up: torch.Tensor,
    steps: int | np.ndarray,
    batch_size: int | None,
    generator: torch.Generator,
    draw_rows: np.ndarray | None = None,
    record_steps: np.ndarray | None = None,
    init: Params | None = None,
    second_order: torch.Tensor | None = None,
) -> LaneResults:
    """Run ``len(eta)`` lanes of ``cfg.method``; lane i makes ``steps[i]`` SGD steps.

    batch_size None uses all M tasks every step (deterministic). Otherwise each step draws
    B task indices with replacement for each draw row; lane i uses row ``draw_rows[i]``
    (default: its own row), so lanes that differ only in step size or radius can share
    their task sequence (common random numbers). ``init`` gives lane-batched starting
    points, else every lane starts at problem.init_params. A lane is frozen after its
    steps; curve entries past them are NaN. ``second_order`` (lane tensor of 0s and 1s,
    ``Radii.second_order``) makes the lanes with 0 first order inside a second-order ``cfg``.
    """
    lanes = eta.shape[0]
    lane_steps = torch.as_tensor(np.broadcast_to(np.asarray(steps), (lanes,)).copy())
    horizon = int(lane_steps.max())
    draw_rows = torch.arange(lanes) if draw_rows is None else torch.as_tensor(draw_rows)
    n_rows = int(draw_rows.max()) + 1
    dtype = next(iter(problem.init_params.values())).dtype
    theta = init or {k: v.expand(lanes, *v.shape).clone() for k, v in problem.init_params.items()}
    record_steps = log_spaced_steps(horizon) if record_steps is None else record_steps
    record_at = {int(s): i for i, s in enumerate(record_steps)}
    curve = np.full((lanes, len(record_steps)), np.nan)
    loss = problem.loss
    exact_grad = problem.lane_meta_grad

    def lane_meta_gradient(p: Params, support, query, *settings) -> tuple[Params, torch.Tensor]:
        step = meta_gradient(loss, p, TaskBatch(support, query), cfg, Radii(*settings))
        return step.grad, step.loss

    batched_meta_gradient = vmap(lane_meta_gradient)
    full = problem.tasks
    full_support = torch.utils._pytree.tree_map(lambda x: x.expand(lanes, *x.shape), full.support)
    full_query = torch.utils._pytree.tree_map(lambda x: x.expand(lanes, *x.shape), full.query)

    total = torch.zeros(lanes, dtype=dtype)
    minimum = torch.full((lanes,), float("inf"), dtype=dtype)
    diverged = torch.zeros(lanes, dtype=torch.bool)
    code = torch.zeros(lanes, dtype=torch.long)
    at_step = torch.full((lanes,), -1, dtype=torch.long)
    before_last = torch.zeros(lanes, dtype=dtype)
    eta_b = eta.to(dtype)
    settings = [alpha_low.to(dtype), alpha_up.to(dtype)]
    settings += [] if second_order is None else [second_order.to(dtype)]
    for t in range(horizon + 1):
        live = _lanes_where(t <= lane_steps)
        g2 = _scattered(_squared_norm(exact_grad(_rows(theta, live))), live, lanes, float("nan"))
        active = t < lane_steps
        if t in record_at:
            curve[:, record_at[t]] = torch.where(t <= lane_steps, g2, torch.nan).numpy()
        before_last = torch.where(t == lane_steps - 1, g2.sqrt(), before_last)
        if t == horizon:
            break
        total += torch.where(active, g2, 0.0)
        minimum = torch.where(active, torch.minimum(minimum, g2), minimum)
        running = _lanes_where(active)
        if batch_size is None:
            support, query = _rows(full_support, running), _rows(full_query, running)
        else:
            index = torch.randint(0, full.num_tasks, (n_rows, batch_size), generator=generator)
            support, query = _select_tasks(full, index[_rows(draw_rows, running)])
        g, meta_loss = batched_meta_gradient(_rows(theta, running), support, query, *_rows(settings, running))
        step = torch.where(active, eta_b, 0.0)
        theta = _stepped(theta, g, step, running)
        causes = torch.stack(
            [
                _scattered(~torch.isfinite(meta_loss), running, lanes, False),
                _scattered(~torch.isfinite(_squared_norm(g)), running, lanes, False),
                ~torch.isfinite(g2),
                _squared_norm(theta).sqrt() > DIVERGENCE_NORM,
            ]
        )
        new = active & ~diverged & causes.any(0)
        code = torch.where(new, 1 + causes.int().argmax(0), code)
        at_step = torch.where(new, t, at_step)
        diverged |= new
        if bool(diverged.all()):
            break
    nan = torch.tensor(float("nan"), dtype=dtype)
    final = _squared_norm(exact_grad(theta)).sqrt()
    return LaneResults(
        grad_norm2_avg=torch.where(diverged, nan, total / lane_steps).numpy(),
        grad_norm2_min=torch.where(diverged, nan, minimum).numpy(),
        curve_steps=np.asarray(record_steps),
        curve=curve,
        final_grad_norm=torch.where(diverged[:, None], nan, torch.stack([before_last, final], 1)).numpy(),
        final_params={k: v.detach().numpy() for k, v in theta.items()},
        diverged=diverged.numpy(),
        divergence_code=code.numpy(),
        divergence_step=at_step.numpy(),
    )
