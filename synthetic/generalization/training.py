"""Training of the generalization track: MAML and Sharp-MAML_up on per-seed task sets, batched.

Every seed has its own training tasks (a leading seed dimension on every task leaf); every
method is a radius alpha_up of the engine's Sharp-MAML_up step, alpha_up = 0 being MAML
exactly (the ascent step eps = 0 * g/(|g| + eps) is zero, so pass 2 recomputes MAML's
meta-gradient at theta). All (seed, radius) lanes advance together under two nested
torch.func.vmaps over ``harness.meta.meta_gradient``: seeds outside (task sets batched),
radii inside (task sets shared), so no task set is copied per radius.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.func import vmap
from torch.utils import _pytree as pytree

from harness.config import MetaConfig
from harness.meta import LossFn, Radii, meta_gradient
from harness.tasks import TaskBatch

Tensor = torch.Tensor
# Task scalars one vmap chunk should touch (about 50,000 L2 data points). Larger chunks spill
# the CPU caches: measured 2.5x slower per lane at M = 1600, m_tr = 20 with 10 seeds at once.
SCALAR_BUDGET = 500_000


def chunk_for(tasks: TaskBatch, per_seed: bool) -> int:
    """Lanes (or seeds) per vmap chunk so that one chunk touches about SCALAR_BUDGET scalars of
    task data: ``per_seed`` means the leaves have a leading seed dim and one seed's set counts."""
    leaves = pytree.tree_leaves((tasks.support, tasks.query))
    scalars = sum(leaf[0].numel() if per_seed else leaf.numel() for leaf in leaves)
    return max(1, SCALAR_BUDGET // scalars)


def stack_tasks(batches: list[TaskBatch]) -> TaskBatch:
    """One TaskBatch whose leaves have a leading seed dimension (all batches the same shape)."""
    return _combine(batches, torch.stack)


def concat_tasks(batches: list[TaskBatch]) -> TaskBatch:
    """The tasks of several batches in one batch, in order."""
    return _combine(batches, torch.cat)


def _combine(batches: list[TaskBatch], op: Callable[[list[Tensor]], Tensor]) -> TaskBatch:
    join = lambda *leaves: op(list(leaves))  # noqa: E731
    return TaskBatch(
        pytree.tree_map(join, *[b.support for b in batches]),
        pytree.tree_map(join, *[b.query for b in batches]),
    )


def seed_slice(tasks: TaskBatch, seed: int) -> TaskBatch:
    """The task set of one seed of a seed-stacked TaskBatch."""
    return TaskBatch(*(pytree.tree_map(lambda x: x[seed], part) for part in (tasks.support, tasks.query)))


def over_seed_lanes(
    fn: Callable[..., Any],
    lane_args: int,
    seed_args: int,
    lane_chunk: int | None = None,
    seed_chunk: int | None = None,
) -> Callable[..., Any]:
    """Lift fn(*lane_args, *seed_args) to lane arguments with leading dims (S, L) and seed
    arguments with a leading dim S: vmap over the L lanes of a seed (seed arguments shared),
    then over the S seeds; the chunks bound how many lanes / seeds run at once."""
    inner = vmap(fn, in_dims=(0,) * lane_args + (None,) * seed_args, chunk_size=lane_chunk)
    return vmap(inner, in_dims=(0,) * (lane_args + seed_args), chunk_size=seed_chunk)


def meta_gradient_lanes(
    loss: LossFn, cfg: MetaConfig, seed_chunk: int | None = None
) -> Callable[[Tensor, Tensor, TaskBatch], tuple[Tensor, Tensor]]:
    """(theta (S, A, d), alpha_up (S, A), seed-stacked tasks) -> the full-batch meta-gradients
    (S, A, d) a method applies and the meta-losses F_S(theta) (S, A)."""

    def one(theta: Tensor, alpha: Tensor, support: Any, query: Any) -> tuple[Tensor, Tensor]:
        step = meta_gradient(loss, {"theta": theta}, TaskBatch(support, query), cfg, Radii(0.0, alpha))
        return step.grad["theta"], step.loss

    batched = over_seed_lanes(one, lane_args=2, seed_args=2, seed_chunk=seed_chunk)
    return lambda theta, alpha, tasks: batched(theta, alpha, tasks.support, tasks.query)


def train_lanes(
    loss: LossFn,
    cfg: MetaConfig,
    tasks: TaskBatch,
    alpha_up: Tensor,
    init: Tensor,
    eta: float,
    steps: int,
) -> Tensor:
    """Full-batch gradient descent with Sharp-MAML_up's meta-gradient on every (seed, radius) lane.

    ``cfg``: Sharp-MAML_up on the problem's inner loop (``method_config(problem, "sharp_up")``);
    ``tasks``: seed-stacked training tasks (leaves (S, M, ...)); ``alpha_up``: (A,) radii,
    0 = MAML; ``init``: theta_0 (d,). Returns theta_T of shape (S, A, d); a lane that leaves
    the finite range stays non-finite (the suite records it as diverged).
    """
    grad_fn = meta_gradient_lanes(loss, cfg, chunk_for(tasks, per_seed=True))
    n_seeds = pytree.tree_leaves(tasks.support)[0].shape[0]
    theta = init.expand(n_seeds, alpha_up.numel(), *init.shape).clone()
    alpha = alpha_up.to(theta).expand(n_seeds, -1)
    for _ in range(steps):
        theta = theta - eta * grad_fn(theta, alpha, tasks)[0]
    return theta
