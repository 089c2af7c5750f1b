"""What the generalization track measures on trained lanes theta of shape (S seeds, L lanes, d).

- ``task_risks``: the bounded loss of every task (0-1 error of the adapted model on the query
  data, ``l2_logistic.bounded_task_loss``): on the training tasks (the empirical risk) or on a
  large fresh sample (the true meta-risk and its standard error).
- ``noisy_task_risks``: the same at theta + sigma z with an independent Gaussian draw z per
  task evaluation: Monte Carlo estimates of the Gibbs risk of N(theta, sigma^2 I) (the
  PAC-Bayes posterior, and the premise of the Foret bound).
- ``max_in_ball``: max_{|eps| <= rho} of the empirical 0-1 risk, by projected normalised
  gradient ascent on the clipped logistic surrogate with restarts, keeping the largest 0-1
  risk met at any iterate. A lower estimate of the maximum, so the Foret bound built on it is
  smaller than the true one: the check is conservative.
- ``top_hessian_eigenvalues``: lambda_max of the Hessian of the training meta-objective F at
  theta, from exact Hessian-vector products (synthetic.linalg.hessian_ritz).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.func import grad_and_value, vmap

from harness.meta import LossFn
from harness.tasks import TaskBatch
from synthetic.generalization.training import chunk_for, over_seed_lanes, seed_slice
from synthetic.linalg import hessian_ritz, meta_objective_fn
from synthetic.problems.base import ProblemInstance
from synthetic.problems.l2_logistic import bounded_task_loss, clipped_logistic_loss, zero_one_loss

Tensor = torch.Tensor


def _per_task(problem: ProblemInstance, eval_loss: LossFn = zero_one_loss) -> Callable[..., Tensor]:
    """theta (d,), support, query (leading task dim) -> bounded loss of every task."""

    def losses(theta: Tensor, support: Any, query: Any) -> Tensor:
        one = lambda s, q: bounded_task_loss(problem, {"theta": theta}, s, q, eval_loss)  # noqa: E731
        return vmap(one)(support, query)

    return losses


def _map_lanes(
    fn: Callable[..., Tensor], lane_args: tuple[Tensor, ...], data: tuple, per_seed: bool, chunk: int
) -> Tensor:
    """fn(*lane values, *data) on every lane of lane arguments with leading dims (S, L): ``data``
    has a leading seed dim when ``per_seed``, else all lanes share it. At most ``chunk`` lanes
    (and seeds) run at once."""
    if per_seed:
        return over_seed_lanes(fn, len(lane_args), len(data), chunk, chunk)(*lane_args, *data)
    S, L = lane_args[0].shape[:2]
    flat = [a.reshape(S * L, *a.shape[2:]) for a in lane_args]
    out = vmap(lambda *lane: fn(*lane, *data), chunk_size=chunk)(*flat)
    return out.reshape(S, L, *out.shape[1:])


def task_risks(problem: ProblemInstance, theta: Tensor, tasks: TaskBatch, per_seed: bool) -> Tensor:
    """(S, L, N) 0-1 losses of every task: per-seed task sets (leaves (S, N, ...)) or one set
    shared by every lane (leaves (N, ...))."""
    return _map_lanes(
        _per_task(problem), (theta,), (tasks.support, tasks.query), per_seed, chunk_for(tasks, per_seed)
    )


def noisy_task_risks(
    problem: ProblemInstance,
    theta: Tensor,
    sigma: Tensor,
    noise: Tensor,
    tasks: TaskBatch,
    per_seed: bool,
) -> Tensor:
    """(S, L, R, N) 0-1 losses of task i at theta + sigma z_{r,i}.

    ``sigma``: (S, L) scales; ``noise``: standard normal draws (R, N, d), or (S, R, N, d) with
    per-seed task sets. The same draws serve every lane (common random numbers); each lane's
    estimate on its own uses independent draws, which is all its bound needs. R x N task
    evaluations are plenty of work for one call, so lanes and seeds run one at a time.
    """

    def one(th: Tensor, sg: Tensor, z: Tensor, support: Any, query: Any) -> Tensor:
        task = lambda zi, s, q: bounded_task_loss(problem, {"theta": th + sg * zi}, s, q)  # noqa: E731
        return vmap(lambda zr: vmap(task)(zr, support, query))(z)

    return _map_lanes(one, (theta, sigma), (noise, tasks.support, tasks.query), per_seed, 1)


def _surrogate_and_zero_one(params: dict[str, Tensor], batch: Any) -> Tensor:
    """[clipped logistic, 0-1] losses of one task's query data, to take both in one pass."""
    return torch.stack([clipped_logistic_loss(params, batch), zero_one_loss(params, batch)])


def max_in_ball(
    problem: ProblemInstance,
    theta: Tensor,
    tasks: TaskBatch,
    radii: Tensor,
    restarts: int,
    steps: int,
    generator: torch.Generator,
) -> Tensor:
    """(S, L, R) lower estimates of max_{|eps| <= radii[r]} of the empirical 0-1 risk.

    Restart 0 starts at eps = 0 (its first step is SAM's ascent direction), the others at
    uniform points of the sphere of radius rho. Each step moves by rho/2 along the normalised
    gradient of the clipped-logistic risk and projects back on the ball; the 0-1 risk is
    recorded at every iterate and the largest value kept.
    """
    S, L, d = theta.shape
    R = radii.numel()
    losses = _per_task(problem, _surrogate_and_zero_one)

    def risks(eps: Tensor, th: Tensor, support: Any, query: Any) -> tuple[Tensor, Tensor]:
        both = losses(th + eps, support, query).mean(0)
        return both[0], both[1]

    ascent = over_seed_lanes(grad_and_value(risks, has_aux=True), 2, 2, seed_chunk=chunk_for(tasks, True))
    rho = radii.to(theta).view(1, 1, R, 1, 1)
    start = torch.randn(S, L, R, restarts, d, generator=generator, dtype=theta.dtype)
    start[..., 0, :] = 0.0
    eps = rho * start / torch.linalg.vector_norm(start, dim=-1, keepdim=True).clamp_min(1e-300)
    th = theta[:, :, None, None, :].expand_as(eps).reshape(S, -1, d)
    best = torch.zeros(S, L * R * restarts, dtype=theta.dtype)
    for _ in range(steps + 1):
        g, (_, zero_one) = ascent(eps.reshape(S, -1, d), th, tasks.support, tasks.query)
        best = torch.maximum(best, zero_one)
        g = g.reshape(eps.shape)
        eps = eps + 0.5 * rho * g / torch.linalg.vector_norm(g, dim=-1, keepdim=True).clamp_min(1e-300)
        eps = eps * (rho / torch.linalg.vector_norm(eps, dim=-1, keepdim=True).clamp_min(rho))
    return best.reshape(S, L, R, restarts).amax(-1)


def top_hessian_eigenvalues(
    problem: ProblemInstance, theta: Tensor, tasks: TaskBatch, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """(S, L) lambda_max and ||Hu - lambda u|| of the Hessian of the training meta-objective F
    (the problem's loss and MAML inner loop on each seed's tasks), from exact HVPs."""
    top = torch.empty(theta.shape[:2], dtype=theta.dtype)
    residual = torch.empty_like(top)
    for s in range(theta.shape[0]):
        F = meta_objective_fn(problem.loss, seed_slice(tasks, s), problem.meta_config)
        for lane in range(theta.shape[1]):
            ritz = hessian_ritz(F, theta[s, lane], generator)
            top[s, lane], residual[s, lane] = ritz.top, ritz.residuals[-1]
    return top, residual
