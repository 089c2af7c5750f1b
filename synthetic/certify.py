"""cvxpy certificates of closed-form optima.

``certify_quadratic_minimum`` solves min_x 1/2 x^T H x - b^T x + c0 with a conic solver that
ships with cvxpy and compares its optimal value with the closed form c0 - 1/2 b^T H^{-1} b.
Besides the solver's own status (and duality gap where the solver reports one) the
certificate carries a solver-independent bound: for H positive definite,
F(x) - F* = 1/2 ||Hx - b||^2_{H^-1} <= ||Hx - b||^2 / (2 lambda_min(H)) at the solver's x.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cvxpy as cp
import numpy as np
import torch

SOLVER_PREFERENCE = ("CLARABEL", "ECOS", "SCS", "OSQP")


@dataclass(frozen=True)
class QuadraticCertificate:
    """Outcome of one certificate.

    Attributes:
        F_star_cvxpy: optimal value reported by the solver.
        F_star_closed_form: c0 - 1/2 b^T H^{-1} b.
        abs_gap: |F_star_cvxpy - F_star_closed_form|.
        rel_gap: abs_gap / max(1, |F_star_closed_form|).
        solver: the cvxpy solver name used.
        status: the cvxpy status string ("optimal" when solved).
        duality_gap: the solver's primal-dual gap, None where the solver reports none
            (Clarabel solves an unconstrained QP by one KKT solve, no iterations).
        kkt_residual: ||H x_cvxpy - b||, the primal-dual (stationarity) residual.
        suboptimality_bound: kkt_residual^2 / (2 lambda_min(H)) >= F(x_cvxpy) - F*.
        x_error: ||x_cvxpy - H^{-1} b||.
    """

    F_star_cvxpy: float
    F_star_closed_form: float
    abs_gap: float
    rel_gap: float
    solver: str
    status: str
    duality_gap: float | None
    kkt_residual: float
    suboptimality_bound: float
    x_error: float


def preferred_solver() -> str:
    """The first installed solver of ``SOLVER_PREFERENCE``."""
    installed = set(cp.installed_solvers())
    for name in SOLVER_PREFERENCE:
        if name in installed:
            return name
    raise RuntimeError(f"cvxpy has none of the solvers {SOLVER_PREFERENCE}; installed: {sorted(installed)}")


def certify_quadratic_minimum(
    H: torch.Tensor | np.ndarray,
    b: torch.Tensor | np.ndarray,
    c0: float,
    solver: str | None = None,
) -> QuadraticCertificate:
    """Certify F* of F(x) = 1/2 x^T H x - b^T x + c0 (H symmetric positive definite)."""
    H_np, b_np = _as_numpy(H), _as_numpy(b)
    chol = np.linalg.cholesky(H_np)
    x = cp.Variable(b_np.shape[0])
    program = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(chol.T @ x) - b_np @ x + float(c0)))
    solver = solver or preferred_solver()
    program.solve(solver=solver)
    x_closed = np.linalg.solve(H_np, b_np)
    closed = float(c0) - 0.5 * float(b_np @ x_closed)
    value = float(program.value)
    residual = float(np.linalg.norm(H_np @ x.value - b_np))
    return QuadraticCertificate(
        F_star_cvxpy=value,
        F_star_closed_form=closed,
        abs_gap=abs(value - closed),
        rel_gap=abs(value - closed) / max(1.0, abs(closed)),
        solver=solver,
        status=str(program.status),
        duality_gap=_solver_duality_gap(program.solver_stats.extra_stats),
        kkt_residual=residual,
        suboptimality_bound=residual**2 / (2 * float(np.linalg.eigvalsh(H_np)[0])),
        x_error=float(np.linalg.norm(x.value - x_closed)),
    )


def _as_numpy(a: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().to(torch.float64).numpy()
    return np.asarray(a, dtype=np.float64)


def _solver_duality_gap(stats: Any) -> float | None:
    """The gap from a solver's raw statistics: SCS's info['gap'], or primal minus dual objective."""
    if isinstance(stats, dict) and isinstance(stats.get("info"), dict) and "gap" in stats["info"]:
        return float(stats["info"]["gap"])
    if hasattr(stats, "obj_val") and hasattr(stats, "obj_val_dual"):
        return abs(float(stats.obj_val) - float(stats.obj_val_dual))
    return None
