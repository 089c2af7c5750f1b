"""Tasks whose loss is the mean of a scalar profile phi of a linear model's margin.

l_m(theta) = mean_i phi(z_i(theta)) with z_i = s_i x_i^T theta - t_i affine in theta and inputs
||x_i|| <= R (|s_i| = 1): the logistic loss of L2 (phi(z) = softplus(-z), z = y x^T theta) and the
pseudo-Huber regression of H1 (phi(r) = delta^2 (sqrt(1 + (r/delta)^2) - 1), r = x^T theta - y).
Then grad l = mean phi'(z) s x, Hess l = mean phi''(z) x x^T, and the third derivative is
mean phi'''(z) s x (x) x (x) x, so with phi convex

    L = R^2 sup phi'',  rho = R^3 sup |phi'''|,  G = R sup |phi'|,

and the MAML constants follow (``smooth_convex_constants``). The verification measures the
scalar sups on a fine grid (tight: it catches a wrong constant) and the sampled Hessian and
gradient norms of the engine's own meta-objective (bounds with slack: docs/families.md).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.func import grad

from harness.config import MetaConfig
from harness.meta import LossFn, plain_meta_gradient
from harness.tasks import TaskBatch
from harness.tree import Params
from synthetic.linalg import hessian_ritz, meta_gradient_variance, meta_objective_fn, task_objective_fn
from synthetic.problems.base import (
    EXACT_RTOL,
    ConstantCheck,
    bound_check,
    equality_check,
    vector_equality_check,
)

# Grid of the scalar profile's derivative maxima: spacing 2e-4 on [-PROFILE_RANGE, PROFILE_RANGE]
# (0 included) puts an interior maximum within ~1e-8 (relative) of the sup; log-spaced tails to
# +-1e6 catch a sup approached at infinity (|phi'| of both profiles) to ~1e-7.
PROFILE_RANGE, PROFILE_POINTS, PROFILE_RTOL = 20.0, 200_001, 1e-6
# phi' and phi'' in closed form against autodiff of phi on the profile grid: autodiff loses
# about 1e-10 (relative) in the logistic tails (1 - sigmoid close to 1); a wrong closed form is
# off by O(1).
DERIVATIVE_RTOL = 1e-8


@dataclass(frozen=True, kw_only=True)
class LinearTaskDistribution(ABC):
    """Tasks of a linear model (L2, H1): task weights w = w_bar + task_std N(0, I), inputs
    uniform on the sphere of radius ``radius``; a family's ``targets`` turns the clean margins
    x^T w into its batch. ``sample`` draws fresh tasks of the same distribution."""

    w_bar: torch.Tensor
    radius: float
    task_std: float
    m_tr: int
    m_val: int

    def sample(
        self, gen: torch.Generator, n: int, m_tr: int | None = None, m_val: int | None = None
    ) -> TaskBatch:
        """n tasks with m_tr support and m_val query points each (defaults: the problem's)."""
        d = self.w_bar.numel()
        w = self.w_bar + self.task_std * torch.randn(n, d, generator=gen, dtype=self.w_bar.dtype)
        support = self._points(gen, w, self.m_tr if m_tr is None else m_tr)
        query = self._points(gen, w, self.m_val if m_val is None else m_val)
        return TaskBatch(support=support, query=query)

    def _points(self, gen: torch.Generator, w: torch.Tensor, m: int) -> dict[str, torch.Tensor]:
        x = torch.randn(w.shape[0], m, w.shape[1], generator=gen, dtype=w.dtype)
        x = self.radius * x / torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        return self.targets(gen, x, (x @ w.unsqueeze(-1)).squeeze(-1))

    @abstractmethod
    def affine_margin(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, b) with the task loss mean phi(a * x^T theta - b) over the batch, a = +-1."""

    @abstractmethod
    def targets(
        self, gen: torch.Generator, x: torch.Tensor, margins: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The batch of inputs ``x`` (tasks, m, d) with clean margins (tasks, m): the family's draw."""


def linear_meta_gradient(
    profile: ScalarProfile, distribution: LinearTaskDistribution, tasks: TaskBatch, beta: float
) -> Callable[[Params], Params]:
    """grad F(theta) in closed form for MAML with one inner step of size beta, over all tasks.

    With z = a * X theta - b (a = +-1): theta'_m = theta - beta X_s^T (a phi'(z_s)) / n_s and
    grad F_m = (I - beta Hess l_s) grad l_q(theta'_m), Hess l_s = X_s^T diag(phi''(z_s)) X_s / n_s.
    A few batched products instead of one second-order autodiff pass per task: the rate check
    evaluates grad F at every step of every lane. theta may carry leading batch dimensions (the
    lanes: one batched product per term). phi' and phi'' are the profile's closed forms; the
    verification compares the result with the engine's meta-gradient.
    """
    d1, d2 = profile.d1, profile.d2
    xs, xq = tasks.support["x"], tasks.query["x"]
    a_s, b_s = distribution.affine_margin(tasks.support)
    a_q, b_q = distribution.affine_margin(tasks.query)
    n_s, n_q = xs.shape[-2], xq.shape[-2]

    def gradient(params: Params) -> Params:
        theta = params["theta"]
        z_s = a_s * torch.einsum("mnd,...d->...mn", xs, theta) - b_s
        adapted = theta.unsqueeze(-2) - beta * torch.einsum("...mn,mnd->...md", a_s * d1(z_s), xs) / n_s
        z_q = a_q * torch.einsum("mnd,...md->...mn", xq, adapted) - b_q
        g_q = torch.einsum("...mn,mnd->...md", a_q * d1(z_q), xq) / n_q
        along = a_s**2 * d2(z_s) * torch.einsum("mnd,...md->...mn", xs, g_q)
        return {"theta": (g_q - beta * torch.einsum("...mn,mnd->...md", along, xs) / n_s).mean(-2)}

    return gradient


def profile_grid() -> torch.Tensor:
    """The points where ``profile_checks`` evaluates phi's derivatives."""
    core = torch.linspace(-PROFILE_RANGE, PROFILE_RANGE, PROFILE_POINTS, dtype=torch.float64)
    tail = torch.logspace(1.3, 6, 200, dtype=torch.float64)
    return torch.cat([-tail.flip(0), core, tail])


@dataclass(frozen=True)
class ScalarProfile:
    """phi, its first two derivatives in closed form (``d1``, ``d2``: the exact grad F uses them)
    and the closed-form sups of |phi'|, phi'' (phi convex) and |phi'''| on the real line. The
    verification compares each of them with autodiff of phi on a fine grid."""

    name: str
    phi: Callable[[torch.Tensor], torch.Tensor]
    d1: Callable[[torch.Tensor], torch.Tensor]
    d2: Callable[[torch.Tensor], torch.Tensor]
    sup_d1: float
    sup_d2: float
    sup_d3: float


def smooth_convex_constants(L: float, rho: float, G: float, beta: float) -> dict[str, float]:
    """The MAML constants of convex tasks with L-smooth, rho-Hessian-Lipschitz, G-bounded-gradient
    losses. Hess F_m = (I - beta Hess l^tr) Hess l^val(theta') (I - beta Hess l^tr)
    - beta D^3 l^tr[grad l^val(theta')], so L_bar = (1 + beta L)^2 L + beta rho G (generic),
    or L + beta rho G when beta <= 2/L (then ||I - beta Hess l|| <= 1); G_F bounds every
    ||grad F_m|| = ||(I - beta Hess l^tr) grad l^val(theta')|| (G, or (1 + beta L) G), and
    sigma2 = G_F^2 bounds mean_m ||grad F_m - grad F||^2 everywhere (a variance is at most the
    second moment)."""
    convex = beta <= 2 / L
    generic = (1 + beta * L) ** 2 * L + beta * rho * G
    G_F = G if convex else (1 + beta * L) * G
    return {
        "L": L,
        "rho": rho,
        "G": G,
        "L_bar_generic": generic,
        "L_bar_convex": L + beta * rho * G,
        "L_bar": L + beta * rho * G if convex else generic,
        "G_F": G_F,
        "sigma2": G_F**2,
    }


def linear_model_constants(profile: ScalarProfile, R: float, beta: float) -> dict[str, float]:
    """L = R^2 sup phi'', rho = R^3 sup |phi'''|, G = R sup |phi'| and the MAML constants."""
    return smooth_convex_constants(R**2 * profile.sup_d2, R**3 * profile.sup_d3, R * profile.sup_d1, beta)


def profile_checks(profile: ScalarProfile, constants: dict[str, float], R: float) -> list[ConstantCheck]:
    """sup |phi^(k)| on a fine grid by autodiff, scaled by R^k, equal to G, L, rho (tight rows:
    a wrong constant fails them)."""
    z = profile_grid().requires_grad_(True)
    derivatives = elementwise_derivatives(profile.phi, z, 3)
    measured = [R ** (k + 1) * float(d.abs().max()) for k, d in enumerate(derivatives)]
    method = f"max over {z.numel()} grid points (spacing 2e-4 on [-20, 20], tails to 1e6), autodiff of {profile.name}"
    names = [f"R^{k} sup|d^{k} {profile.name}|" for k in (1, 2, 3)]
    checks = [
        equality_check(f"{name} = {key}", constants[key], value, method, PROFILE_RTOL)
        for name, key, value in zip(names, ("G", "L", "rho"), measured, strict=True)
    ]
    grid = z.detach()
    for k, closed in ((1, profile.d1), (2, profile.d2)):
        checks.append(
            vector_equality_check(
                f"closed-form d^{k} {profile.name} = autodiff on the grid",
                closed(grid),
                derivatives[k - 1],
                f"the same {grid.numel()} grid points (norms shown)",
                DERIVATIVE_RTOL,
            )
        )
    return checks


def elementwise_derivatives(
    fn: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, order: int
) -> list[torch.Tensor]:
    """fn', ..., fn^(order) at every entry of z (requires_grad) for an elementwise fn: the
    gradient of sum fn(z) is fn'(z) entrywise, one reverse pass per order."""
    derivatives, current = [], fn(z)
    for k in range(order):
        (current,) = torch.autograd.grad(current.sum(), z, create_graph=k + 1 < order)
        derivatives.append(current.detach())
    return derivatives


def verify_linear_model(
    profile: ScalarProfile,
    constants: dict[str, float],
    loss: LossFn,
    tasks: TaskBatch,
    cfg: MetaConfig,
    theta0: torch.Tensor,
    s: dict[str, Any],
    g: torch.Generator,
    exact_gradient: Callable[[Params], Params],
) -> tuple[list[ConstantCheck], dict[str, float]]:
    """The profile rows, sampled norms (``measure``) against the closed-form bounds, and the
    closed-form grad F against the engine's at theta0 and at one more random point."""
    measured = measure(loss, tasks, cfg, theta0, s, g)
    L_bar, n_points, n_tasks = constants["L_bar"], s["hessian_points"] + 1, s["task_checks"]
    hessian = "eigenvalues of the autodiff Hessian"
    rows = [
        ("||Hess F(theta0)|| <= L_bar", L_bar, "hessian_F_theta0", f"{hessian} of F"),
        ("max sampled ||Hess F|| <= L_bar", L_bar, "hessian_F_max", f"{n_points} points, {hessian}"),
        (
            "max sampled ||Hess F_m|| <= L_bar",
            L_bar,
            "hessian_F_m_max",
            f"{n_tasks} tasks x {n_points} points, {hessian}",
        ),
        ("max sampled ||Hess l_m|| <= L", constants["L"], "hessian_l_max", f"support losses, {hessian}"),
        ("max sampled ||grad l_m|| <= G", constants["G"], "grad_l_max", "support losses, autodiff gradients"),
        (
            "max sampled ||grad F_m|| <= G_F",
            constants["G_F"],
            "grad_F_m_max",
            f"all tasks x {n_points} points, engine per-task meta-gradients",
        ),
        (
            "max sampled sigma2(theta) <= sigma2",
            constants["sigma2"],
            "sigma2_max",
            f"{n_points} points, engine per-task meta-gradients",
        ),
        (
            "max sampled F(theta0) - F(theta) <= Delta",
            constants["Delta"],
            "descent_max",
            f"{n_points} points, engine meta-objective (Delta = F(theta0): the loss is >= 0)",
        ),
    ]
    checks = profile_checks(profile, constants, float(s["R"]))
    checks += [bound_check(name, bound, measured[key], method) for name, bound, key, method in rows]
    checks.append(
        bound_check(
            "L_bar <= L_bar_generic",
            constants["L_bar_generic"],
            L_bar,
            "convex refinement L + beta rho G vs (1+beta L)^2 L + beta rho G",
        )
    )
    engine = cfg.replace(executor="vmap")
    for label, point in (
        ("theta0", theta0),
        ("a random point", torch.randn(theta0.shape, generator=g, dtype=theta0.dtype)),
    ):
        checks.append(
            vector_equality_check(
                f"closed-form grad F = engine meta-gradient at {label}",
                exact_gradient({"theta": point})["theta"],
                plain_meta_gradient(loss, {"theta": point}, tasks, engine).grad["theta"],
                "linear_meta_gradient vs harness.meta.plain_meta_gradient over all M tasks (norms shown)",
                EXACT_RTOL,
            )
        )
    return checks, measured


def measure(
    loss: LossFn,
    tasks: TaskBatch,
    cfg: MetaConfig,
    theta0: torch.Tensor,
    s: dict[str, Any],
    g: torch.Generator,
) -> dict[str, float]:
    """Hessian norms (eigenvalues of the exact autodiff Hessian), gradient norms, sigma^2 and F at sampled
    points.

    Points: theta0 and ``hessian_points`` draws of N(0, I). F: the engine's meta-objective
    over all M tasks; per task, on ``task_checks`` random tasks at every point: F_m, and the
    support loss l_m (for L and G); the per-task meta-gradients of all tasks (G_F, sigma2).
    """
    points = [theta0] + [
        torch.randn(theta0.shape, generator=g, dtype=theta0.dtype) for _ in range(s["hessian_points"])
    ]
    pairs = [(m, p) for m in torch.randperm(s["M"], generator=g)[: s["task_checks"]].tolist() for p in points]
    F = meta_objective_fn(loss, tasks, cfg)
    hess_F = [hessian_ritz(F, p, g).norm for p in points]
    hess_Fm = [hessian_ritz(task_objective_fn(loss, tasks, m, cfg), p, g).norm for m, p in pairs]
    hess_l = [hessian_ritz(_support_loss(loss, tasks, m), p, g).norm for m, p in pairs]
    grad_l = [float(torch.linalg.vector_norm(grad(_support_loss(loss, tasks, m))(p))) for m, p in pairs]
    spread = [meta_gradient_variance(loss, tasks, cfg, p) for p in points]
    F0 = float(F(theta0))
    return {
        "hessian_F_theta0": hess_F[0],
        "hessian_F_max": max(hess_F),
        "hessian_F_m_max": max(hess_Fm, default=0.0),
        "hessian_l_max": max(hess_l, default=0.0),
        "grad_l_max": max(grad_l, default=0.0),
        "grad_F_m_max": max(v.max_norm for v in spread),
        "sigma2_max": max(v.variance for v in spread),
        "descent_max": max(F0 - float(F(p)) for p in points),
    }


def _support_loss(loss: LossFn, tasks: TaskBatch, m: int) -> Callable[[torch.Tensor], torch.Tensor]:
    support = tasks.task(m)[0]
    return lambda theta: loss({"theta": theta}, support)
