"""Linear-algebra helpers of the synthetic families: rotations and Hessian spectra from HVPs.

Hessian spectra are measured, never assumed: ``hessian_ritz`` applies exact Hessian-vector
products of an autodiff objective to every basis vector at once (one vmapped HVP) and takes the
eigendecomposition of the (symmetrised) Hessian: Rayleigh-Ritz on the whole space, so the Ritz
values are the eigenvalues to rounding error, also where the top eigenvalues are nearly equal
and plain power iteration would stall. With ``steps`` below the dimension it runs Lanczos (the
Krylov generalisation of power iteration, with full reorthogonalisation) instead, for
dimensions where the whole Hessian would not fit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.func import grad

from harness.config import MetaConfig
from harness.meta import LossFn, task_meta_grad_fn, task_meta_loss
from harness.tasks import TaskBatch

MatVec = Callable[[torch.Tensor], torch.Tensor]
FlatObjective = Callable[[torch.Tensor], torch.Tensor]


def random_rotation(d: int, generator: torch.Generator, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A Haar-distributed orthogonal d x d matrix (QR of a Gaussian matrix, signs fixed)."""
    gaussian = torch.randn(d, d, generator=generator, dtype=dtype)
    q, r = torch.linalg.qr(gaussian)
    return q * torch.sign(torch.diagonal(r))


def random_unit_vector(
    d: int, generator: torch.Generator, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """A direction uniform on the unit sphere of R^d."""
    v = torch.randn(d, generator=generator, dtype=dtype)
    return v / torch.linalg.vector_norm(v)


def hvp_operator(fn: FlatObjective, x: torch.Tensor) -> MatVec:
    """v -> (Hessian of fn at x) v, exact, by reverse-over-reverse autodiff (grad of <grad, v>)."""
    x = x.detach()
    return lambda v: grad(lambda y: (grad(fn)(y) * v).sum())(x)


@dataclass(frozen=True)
class RitzPairs:
    """Ritz values (ascending), Ritz vectors (columns) and residuals ||Hu - value u||."""

    values: torch.Tensor
    vectors: torch.Tensor
    residuals: torch.Tensor

    @property
    def top(self) -> float:
        """Largest Ritz value (lambda_max estimate)."""
        return float(self.values[-1])

    @property
    def bottom(self) -> float:
        """Smallest Ritz value (lambda_min estimate)."""
        return float(self.values[0])

    @property
    def norm(self) -> float:
        """Spectral-norm estimate max |value| (the Hessian norm of an indefinite Hessian)."""
        return float(self.values.abs().max())


def lanczos(
    matvec: MatVec,
    dim: int,
    generator: torch.Generator,
    steps: int | None = None,
    dtype: torch.dtype = torch.float64,
) -> RitzPairs:
    """Rayleigh-Ritz on the Krylov space of a symmetric operator, ``steps`` (<= dim) products.

    Stops early on an invariant subspace (the Ritz values are then exact for it).
    """
    steps = dim if steps is None else min(steps, dim)
    basis: list[torch.Tensor] = []
    images: list[torch.Tensor] = []
    v = random_unit_vector(dim, generator, dtype)
    for _ in range(steps):
        basis.append(v)
        w = matvec(v).detach()
        images.append(w)
        v, size = _orthonormal_remainder(w, torch.stack(basis))
        if size <= 1e-12 * max(1.0, float(torch.linalg.vector_norm(w))):
            break
    return _ritz(torch.stack(basis), torch.stack(images))


def _orthonormal_remainder(w: torch.Tensor, basis: torch.Tensor) -> tuple[torch.Tensor, float]:
    """w minus its projection on the rows of basis (Gram-Schmidt twice), normalised; its size."""
    for _ in range(2):
        w = w - basis.T @ (basis @ w)
    size = float(torch.linalg.vector_norm(w))
    return w / max(size, 1e-300), size


def _ritz(basis: torch.Tensor, images: torch.Tensor) -> RitzPairs:
    projected = basis @ images.T
    values, coords = torch.linalg.eigh(0.5 * (projected + projected.T))
    vectors = basis.T @ coords
    residuals = torch.linalg.vector_norm(images.T @ coords - vectors * values, dim=0)
    return RitzPairs(values, vectors, residuals)


def hessian_ritz(
    fn: FlatObjective, x: torch.Tensor, generator: torch.Generator, steps: int | None = None
) -> RitzPairs:
    """Ritz pairs of the Hessian of fn at x from exact Hessian-vector products: the whole
    space (all HVPs in one vmap, exact eigenpairs) unless ``steps`` < dim asks for Lanczos
    (which draws its start vector from ``generator``)."""
    dim = x.numel()
    if steps is not None and steps < dim:
        return lanczos(hvp_operator(fn, x), dim, generator, steps, x.dtype)
    basis = torch.eye(dim, dtype=x.dtype, device=x.device)
    return _ritz(basis, torch.func.vmap(hvp_operator(fn, x))(basis).detach())


def meta_objective_fn(loss: LossFn, tasks: TaskBatch, cfg: MetaConfig) -> FlatObjective:
    """theta -> F(theta), the engine's autodiff meta-objective averaged over all tasks.

    Built on ``harness.meta.task_meta_loss`` with params ``{"theta": theta}``, vmapped over the
    task dimension, so it is exactly the objective the engine differentiates.
    """

    def per_task(theta: torch.Tensor, support: object, query: object) -> torch.Tensor:
        return task_meta_loss(loss, {"theta": theta}, support, query, cfg)

    batched = torch.func.vmap(per_task, in_dims=(None, 0, 0))
    return lambda theta: batched(theta, tasks.support, tasks.query).mean()


def task_objective_fn(loss: LossFn, tasks: TaskBatch, index: int, cfg: MetaConfig) -> FlatObjective:
    """theta -> F_m(theta), the engine's meta-objective of task ``index`` alone."""
    support, query = tasks.task(index)
    return lambda theta: task_meta_loss(loss, {"theta": theta}, support, query, cfg)


def task_meta_gradients(loss: LossFn, tasks: TaskBatch, cfg: MetaConfig, theta: torch.Tensor) -> torch.Tensor:
    """grad F_m(theta) of every task by the engine's per-task meta-gradient, shape (M, d)."""
    per_task = torch.func.vmap(task_meta_grad_fn(loss, cfg), in_dims=(None, 0, 0))
    return per_task({"theta": theta}, tasks.support, tasks.query)[0]["theta"]


@dataclass(frozen=True)
class GradientSpread:
    """Per-task meta-gradients at one point: sigma^2 = mean_m ||grad F_m - grad F||^2 (grad F
    their mean) and max_m ||grad F_m||."""

    variance: float
    max_norm: float


def meta_gradient_variance(
    loss: LossFn, tasks: TaskBatch, cfg: MetaConfig, theta: torch.Tensor
) -> GradientSpread:
    """The spread of the engine's per-task meta-gradients at theta."""
    grads = task_meta_gradients(loss, tasks, cfg, theta)
    return GradientSpread(
        float(((grads - grads.mean(0)) ** 2).sum(-1).mean()),
        float(torch.linalg.vector_norm(grads, dim=-1).max()),
    )
