"""Family Q1: quadratic tasks in a shared rotated basis, with a closed-form MAML objective.

l_m(theta) = 1/2 (theta - c_m)^T A_m (theta - c_m), A_m = Q diag(lambda_m) Q^T, the same data
for the inner (support) and outer (query) level. One inner step of size beta gives
F_m(theta) = 1/2 (theta - c_m)^T P_m (theta - c_m) with P_m = (I - beta A_m) A_m (I - beta A_m),
so F is quadratic: H_F = mean_m P_m, b = mean_m P_m c_m, theta* = H_F^{-1} b. Every matrix is
diagonal in the basis Q, which makes the spectra exact. See docs/families.md.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch

from harness.config import MetaConfig
from harness.meta import plain_meta_gradient
from harness.tasks import TaskBatch
from harness.tree import Params
from infra.seeding import generator
from synthetic.certify import QuadraticCertificate, certify_quadratic_minimum
from synthetic.linalg import (
    hessian_ritz,
    meta_gradient_variance,
    meta_objective_fn,
    random_rotation,
    task_objective_fn,
)
from synthetic.problems.base import (
    EXACT_RTOL,
    ConstantCheck,
    Constants,
    ProblemInstance,
    QuadraticObjective,
    bool_setting,
    bound_check,
    equality_check,
    float_setting,
    int_setting,
    register_family,
    resolve_settings,
    vector_equality_check,
)

FAMILY = "Q1"
CERTIFICATE_RTOL = 1e-6
SIGMA2_ROUNDING = 1e-20  # absolute floor: sigma^2 = 0 (M = 1) is evaluated as ~1e-32
SETTINGS = {
    "d": int_setting(20, minimum=1),
    "M": int_setting(100, minimum=1),
    "beta": float_setting(0.3, minimum=0.0),
    "L": float_setting(1.0, positive=True),
    "kappa_min": float_setting(1e-2, positive=True),
    "theta0": float_setting(0.0),
    "task_checks": int_setting(8, minimum=0),
    "verify": bool_setting(True),
}


def quadratic_loss(params: Params, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """1/2 (theta - c)^T A (theta - c) for one task's batch {"A": (d, d), "c": (d,)}."""
    r = params["theta"] - batch["c"]
    return 0.5 * r @ (batch["A"] @ r)


def meta_curvature(lam: torch.Tensor, beta: float) -> torch.Tensor:
    """lambda (1 - beta lambda)^2: the eigenvalue of P_m for an eigenvalue lambda of A_m."""
    return lam * (1 - beta * lam) ** 2


@dataclass(frozen=True)
class QuadraticClosedForm:
    """The exact MAML objective of Q1: F(theta) = 1/2 theta^T H_F theta - b^T theta + c0.

    ``task_eigenvalues`` (M, d) are the lambda_{m,j} in the basis ``rotation``; ``centers`` (M, d)
    are the c_m. Every method accepts theta with any leading batch dimensions, shape (..., d).
    """

    beta: float
    rotation: torch.Tensor
    task_eigenvalues: torch.Tensor
    centers: torch.Tensor
    H_F: torch.Tensor
    b: torch.Tensor
    c0: float

    def objective(self, theta: torch.Tensor) -> torch.Tensor:
        """F(theta)."""
        H, b = self.H_F.to(theta), self.b.to(theta)
        return 0.5 * ((theta @ H) * theta).sum(-1) - theta @ b + self.c0

    def gradient(self, theta: torch.Tensor) -> torch.Tensor:
        """grad F(theta) = H_F theta - b."""
        return theta @ self.H_F.to(theta) - self.b.to(theta)

    def task_gradients(self, theta: torch.Tensor) -> torch.Tensor:
        """grad F_m(theta) = P_m (theta - c_m) for every task, shape (..., M, d)."""
        Q = self.rotation.to(theta)
        coords = (theta.unsqueeze(-2) - self.centers.to(theta)) @ Q
        return (meta_curvature(self.task_eigenvalues.to(theta), self.beta) * coords) @ Q.T

    def sigma2_at_theta(self, theta: torch.Tensor) -> torch.Tensor:
        """sigma^2(theta) = mean_m ||grad F_m(theta) - grad F(theta)||^2, shape (...)."""
        deviation = self.task_gradients(theta) - self.gradient(theta).unsqueeze(-2)
        return (deviation**2).sum(-1).mean(-1)

    def task_meta_hessians(self) -> torch.Tensor:
        """P_m for every task, shape (M, d, d)."""
        Q = self.rotation
        return (Q * meta_curvature(self.task_eigenvalues, self.beta).unsqueeze(-2)) @ Q.T


@dataclass(frozen=True)
class Q1Details:
    """Q1's own tensors: the closed form, theta*, the spectrum of H_F (descending, eigenvectors
    as columns with a fixed sign) and the cvxpy certificate of F* (None without verification)."""

    closed_form: QuadraticClosedForm
    theta_star: torch.Tensor
    eigenvalues_F: torch.Tensor
    eigenvectors_F: torch.Tensor
    certificate: QuadraticCertificate | None = None


@register_family(FAMILY, SETTINGS)
def build_q1(seed: int, **settings: Any) -> ProblemInstance:
    """Q1 with the defaults of docs/theory.md#family-q1 (d=20, M=100, beta=0.3, L=1, kappa from 1 to 1e-2)."""
    s = resolve_settings(FAMILY, SETTINGS, settings)
    closed = make_closed_form(seed, s)
    tasks = make_tasks(closed)
    cfg = maml_config(s["beta"])
    theta0 = torch.full((s["d"],), float(s["theta0"]), dtype=torch.float64)
    constants, details = derived_quantities(closed, theta0)
    checks: list[ConstantCheck] = []
    if s["verify"]:
        g = generator(seed, FAMILY, "verify")
        checks = verify_closed_form(closed, tasks, cfg, theta0, task_sample(seed, s), g)
        details = dataclasses.replace(
            details, certificate=certify_quadratic_minimum(closed.H_F, closed.b, closed.c0)
        )
        checks.append(certificate_check(details.certificate))
    return ProblemInstance(
        family=FAMILY,
        loss=quadratic_loss,
        tasks=tasks,
        init_params={"theta": theta0},
        meta_config=cfg,
        constants=Constants(**{k: constants[k] for k in ("L", "rho", "L_bar", "Delta", "sigma2")}),
        checks=checks,
        settings=s,
        exact_objective=lambda p: closed.objective(p["theta"]),
        exact_gradient=lambda p: {"theta": closed.gradient(p["theta"])},
        reported={k: v for k, v in constants.items() if k not in ("L", "rho", "L_bar", "Delta", "sigma2")},
        quadratic=QuadraticObjective(
            closed.H_F, details.theta_star, details.eigenvalues_F, details.eigenvectors_F, closed.beta
        ),
        details=details,
    )


def maml_config(beta: float) -> MetaConfig:
    """MAML, one inner step of size beta (inner_lr = 1 stands in for beta = 0, see make_tasks)."""
    return MetaConfig(method="maml", inner_steps=1, inner_lr=beta if beta > 0 else 1.0)


def make_closed_form(seed: int, s: dict[str, Any]) -> QuadraticClosedForm:
    """Draw Q, lambda_{m,j}, c_m from the seed and assemble H_F, b, c0 in the eigenbasis."""
    d, M, beta = s["d"], s["M"], float(s["beta"])
    Q = random_rotation(d, generator(seed, FAMILY, "rotation"))
    kappa = float(s["L"]) * float(s["kappa_min"]) ** (torch.arange(d, dtype=torch.float64) / max(d - 1, 1))
    u = torch.rand(M, d, generator=generator(seed, FAMILY, "eigenvalues"), dtype=torch.float64)
    lam = kappa * (0.5 + 0.5 * u)
    lam[0, 0] = float(s["L"])
    centers = 1 + torch.randn(M, d, generator=generator(seed, FAMILY, "centers"), dtype=torch.float64)
    curv = meta_curvature(lam, beta)
    coords = centers @ Q
    H = (Q * curv.mean(0)) @ Q.T
    return QuadraticClosedForm(
        beta=beta,
        rotation=Q,
        task_eigenvalues=lam,
        centers=centers,
        H_F=0.5 * (H + H.T),
        b=Q @ (curv * coords).mean(0),
        c0=float((0.5 * curv * coords**2).sum(-1).mean()),
    )


def make_tasks(closed: QuadraticClosedForm) -> TaskBatch:
    """Support = query = {"A": A_m, "c": c_m}; for beta = 0 the support carries A = 0.

    The engine needs inner_lr > 0, and a zero support curvature makes the inner step vanish,
    so F is then exactly mean_m l_m.
    """
    Q = closed.rotation
    A = (Q * closed.task_eigenvalues.unsqueeze(-2)) @ Q.T
    query = {"A": 0.5 * (A + A.transpose(-1, -2)), "c": closed.centers}
    support = query if closed.beta > 0 else {"A": torch.zeros_like(A), "c": closed.centers}
    return TaskBatch(support=support, query=query)


def derived_quantities(
    closed: QuadraticClosedForm, theta0: torch.Tensor
) -> tuple[dict[str, float], Q1Details]:
    """Closed-form constants (floats) and the tensors behind them (see docs/families.md)."""
    beta = closed.beta
    eigenvalues, eigenvectors = torch.linalg.eigh(closed.H_F)
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
    eigenvectors = eigenvectors * torch.sign(eigenvectors.sum(0) + 1e-300)
    theta_star = torch.linalg.solve(closed.H_F, closed.b)
    F_star = float(closed.objective(theta_star))
    L = float(closed.task_eigenvalues.max())
    sigma2_star = float(closed.sigma2_at_theta(theta_star))
    constants = {
        "L": L,
        "rho": 0.0,
        "L_bar": float(meta_curvature(closed.task_eigenvalues, beta).max()),
        "generic_bound": (1 + beta * L) ** 2 * L,
        "L_F": float(eigenvalues[0]),
        **({"lambda_2": float(eigenvalues[1])} if len(eigenvalues) > 1 else {}),
        "mu_F": float(eigenvalues[-1]),
        "F_star": F_star,
        "F_theta0": float(closed.objective(theta0)),
        "Delta": float(closed.objective(theta0)) - F_star,
        "sigma2": sigma2_region_bound(
            closed, theta_star, float(torch.linalg.vector_norm(theta0 - theta_star))
        ),
        "sigma2_star": sigma2_star,
        "sigma2_theta0": float(closed.sigma2_at_theta(theta0)),
    }
    details = Q1Details(closed, theta_star, eigenvalues, eigenvectors)
    return constants, details


def sigma2_region_bound(closed: QuadraticClosedForm, theta_star: torch.Tensor, radius: float) -> float:
    """sup of sigma^2 over the ball B(theta*, radius), bounded by
    (sqrt(sigma^2(theta*)) + radius sqrt(lambda_max(K)))^2.

    With D_m = P_m - H_F, sigma^2(theta* + e) = mean_m ||D_m e + grad F_m(theta*)||^2, and
    K = mean_m D_m^T D_m; Minkowski's inequality in L2(m) gives the bound.
    """
    D = closed.task_meta_hessians() - closed.H_F
    K = (D.transpose(-1, -2) @ D).mean(0)
    k_max = float(torch.linalg.eigvalsh(0.5 * (K + K.T))[-1].clamp_min(0))
    return (math.sqrt(float(closed.sigma2_at_theta(theta_star))) + radius * math.sqrt(k_max)) ** 2


def task_sample(seed: int, s: dict[str, Any]) -> list[int]:
    """Task 0 (it holds lambda = L) and task_checks - 1 random others, for the per-task checks."""
    n = min(s["task_checks"], s["M"])
    rest = torch.randperm(s["M"] - 1, generator=generator(seed, FAMILY, "task_sample"))[: max(n - 1, 0)] + 1
    return ([0] if n > 0 else []) + rest.tolist()


def verify_closed_form(
    closed: QuadraticClosedForm,
    tasks: TaskBatch,
    cfg: MetaConfig,
    theta0: torch.Tensor,
    sampled_tasks: list[int],
    g: torch.Generator,
) -> list[ConstantCheck]:
    """Check every closed-form constant against the engine's autodiff meta-objective.

    Spectra: eigenvalues of the exact Hessian (vmapped HVPs) of ``harness.meta.task_meta_loss``; gradients: the engine's
    ``plain_meta_gradient``. A wrong closed form (e.g. a perturbed H_F) fails these rows.
    """
    constants, details = derived_quantities(closed, theta0)
    ritz = hessian_ritz(meta_objective_fn(quadratic_loss, tasks, cfg), theta0, g)
    checks = [
        _close(
            "L_F",
            float(torch.linalg.eigvalsh(closed.H_F)[-1]),
            ritz.top,
            "lambda_max(H_F), eigenvalues of the autodiff Hessian",
        ),
        _close(
            "mu_F",
            float(torch.linalg.eigvalsh(closed.H_F)[0]),
            ritz.bottom,
            "lambda_min(H_F), eigenvalues of the autodiff Hessian",
        ),
        _bound(
            "L_F <= L_bar",
            constants["L_bar"],
            ritz.top,
            "measured L_F vs max_m max_j lambda(1-beta lambda)^2",
        ),
        _bound(
            "L_bar <= generic_bound",
            constants["generic_bound"],
            constants["L_bar"],
            "(1+beta L)^2 L + beta rho G, rho = 0",
        ),
    ]
    checks += [_task_check(closed, tasks, cfg, m, theta0, g) for m in sampled_tasks]
    probe = details.theta_star + torch.randn(theta0.shape, generator=g, dtype=theta0.dtype)
    checks += [
        _gradient_check(closed, tasks, cfg, theta, label)
        for theta, label in ((theta0, "theta0"), (probe, "random"))
    ]
    checks.append(
        _close(
            "F(theta0)",
            constants["F_theta0"],
            float(meta_objective_fn(quadratic_loss, tasks, cfg)(theta0)),
            "engine meta-loss over all tasks",
        )
    )
    checks += _sigma2_checks(closed, tasks, cfg, theta0, details.theta_star, constants["sigma2"], g)
    return checks


def _close(name: str, closed_form: float, measured: float, method: str) -> ConstantCheck:
    return equality_check(name, closed_form, measured, method, EXACT_RTOL)


def _bound(name: str, bound: float, value: float, method: str) -> ConstantCheck:
    return bound_check(name, bound, value, method, rtol=EXACT_RTOL)


def _task_check(
    closed: QuadraticClosedForm,
    tasks: TaskBatch,
    cfg: MetaConfig,
    m: int,
    theta: torch.Tensor,
    g: torch.Generator,
) -> ConstantCheck:
    closed_form = float(meta_curvature(closed.task_eigenvalues[m], closed.beta).max())
    ritz = hessian_ritz(task_objective_fn(quadratic_loss, tasks, m, cfg), theta, g)
    return _close(
        f"L_F_m[{m}]",
        closed_form,
        ritz.norm,
        "max_j lambda(1-beta lambda)^2 vs the autodiff Hessian of the task meta-objective",
    )


def _gradient_check(
    closed: QuadraticClosedForm, tasks: TaskBatch, cfg: MetaConfig, theta: torch.Tensor, label: str
) -> ConstantCheck:
    engine = plain_meta_gradient(quadratic_loss, {"theta": theta}, tasks, cfg.replace(executor="vmap")).grad[
        "theta"
    ]
    return vector_equality_check(
        f"grad_F({label})",
        closed.gradient(theta),
        engine,
        "closed-form H_F theta - b vs harness.meta.plain_meta_gradient (norms shown)",
        EXACT_RTOL,
    )


def _sigma2_checks(
    closed: QuadraticClosedForm,
    tasks: TaskBatch,
    cfg: MetaConfig,
    theta0: torch.Tensor,
    theta_star: torch.Tensor,
    sigma2: float,
    g: torch.Generator,
) -> list[ConstantCheck]:
    """sigma2_at_theta against engine per-task gradients; the region constant against samples."""
    engine = meta_gradient_variance(quadratic_loss, tasks, cfg, theta0).variance
    radius = torch.linalg.vector_norm(theta0 - theta_star)
    directions = torch.randn(64, theta0.numel(), generator=g, dtype=theta0.dtype)
    points = theta_star + radius * directions / torch.linalg.vector_norm(directions, dim=-1, keepdim=True)
    sampled = float(closed.sigma2_at_theta(torch.cat([points, theta0[None]])).max())
    return [
        _close(
            "sigma2(theta0)",
            float(closed.sigma2_at_theta(theta0)),
            engine,
            "closed form vs engine per-task meta-gradients",
        ),
        bound_check(
            "sigma2 >= sampled sigma2(theta)",
            sigma2,
            sampled,
            "bound over B(theta*, ||theta0 - theta*||) vs 64 points on its sphere and theta0",
            rtol=EXACT_RTOL,
            atol=SIGMA2_ROUNDING,
        ),
    ]


def certificate_check(cert: QuadraticCertificate) -> ConstantCheck:
    """The cvxpy certificate of F* as a check row."""
    return ConstantCheck(
        "F_star (cvxpy)",
        cert.F_star_closed_form,
        cert.F_star_cvxpy,
        f"cvxpy {cert.solver} ({cert.status}), KKT residual {cert.kkt_residual:.1e}",
        cert.status == "optimal" and cert.rel_gap <= CERTIFICATE_RTOL,
        f"|F*_cvxpy - F*_closed| / max(1, |F*|) = {cert.rel_gap:.2e} <= {CERTIFICATE_RTOL:g}",
    )
