"""Family E2: a sharp and a flat basin (nonconvex), with a grid ground truth.

On the basin coordinate z, task m has
l_m(z) = -a exp(-(z - p_m)^2 / (2 w_s^2)) - b exp(-(z - q_m)^2 / (2 w_f^2)),
a = 1, w_s = 0.1 (sharp, deeper), b = 0.9, w_f = 1 (flat), p_m = 0.02 N(0,1), q_m = 2 + 0.2 N(0,1).
For d > 1, theta in R^d has z = u^T theta along a random unit axis u (the first column of a
random rotation) and every other direction is a stiff quadratic: l_m(theta) = l_m(z) +
stiffness/2 ||theta - z u||^2. One MAML step keeps the directions apart, so
F(theta) = F_1(z) + stiffness (1 - beta stiffness)^2 / 2 ||theta - z u||^2 with F_1 the 1-D
meta-objective, known in closed form from the Gaussians' derivatives. See docs/families.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from harness.config import MetaConfig
from harness.meta import plain_meta_gradient
from harness.tasks import TaskBatch
from harness.tree import Params
from infra.seeding import generator
from synthetic.linalg import hessian_ritz, meta_objective_fn, random_rotation
from synthetic.problems.base import (
    EXACT_RTOL,
    ConstantCheck,
    Constants,
    ProblemInstance,
    bool_setting,
    bound_check,
    equality_check,
    float_setting,
    int_setting,
    register_family,
    resolve_settings,
    vector_equality_check,
)

FAMILY = "E2"
TYPED_CONSTANTS = ("L", "rho", "G", "L_bar", "Delta")
SHARP_HEIGHT, SHARP_WIDTH, SHARP_SPREAD = 1.0, 0.1, 0.02
FLAT_HEIGHT, FLAT_WIDTH, FLAT_CENTER, FLAT_SPREAD = 0.9, 1.0, 2.0, 0.2
GRID_RANGE = (-1.0, 4.0)
# max_u |u^3 - 3u| exp(-u^2/2), attained at u^2 = 3 - sqrt(6): the third-derivative factor.
THIRD_DERIVATIVE_FACTOR = math.sqrt(6 * (3 - math.sqrt(6))) * math.exp(-(3 - math.sqrt(6)) / 2)
SETTINGS = {
    "M": int_setting(20, minimum=1),
    "beta": float_setting(0.005, positive=True),
    "d": int_setting(1, minimum=1, maximum=10),
    "stiffness": float_setting(10.0, positive=True),
    "theta0": float_setting(0.2),
    "stiff_init": float_setting(0.5),
    "grid_points": int_setting(200_001, minimum=1001),
    "verify": bool_setting(True),
}


def bump(z: torch.Tensor, center: torch.Tensor, height: float, width: float) -> torch.Tensor:
    """-h exp(-u^2/2), u = (z - c)/w: one basin of a task loss."""
    u = (z - center) / width
    return -(height * torch.exp(-0.5 * u * u))


def bump_derivatives(
    z: torch.Tensor, center: torch.Tensor, height: float, width: float
) -> list[torch.Tensor]:
    """``bump`` and its first three derivatives in z."""
    u = (z - center) / width
    e = height * torch.exp(-0.5 * u * u)
    return [-e, u * e / width, (1 - u * u) * e / width**2, (u**3 - 3 * u) * e / width**3]


def two_basin_loss(params: Params, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """l_m(theta) for one task's batch {"p", "q", "stiffness": scalars, "u": (d,)}."""
    theta, u = params["theta"], batch["u"]
    z = theta @ u
    perp = theta - z * u
    sharp = bump(z, batch["p"], SHARP_HEIGHT, SHARP_WIDTH)
    flat = bump(z, batch["q"], FLAT_HEIGHT, FLAT_WIDTH)
    return sharp + flat + 0.5 * batch["stiffness"] * (perp @ perp)


@dataclass(frozen=True)
class TwoBasinModel:
    """Closed-form E2 meta-objective. ``p``, ``q``: (M,) bump centres; ``axis``: u, shape (d,)."""

    p: torch.Tensor
    q: torch.Tensor
    beta: float
    axis: torch.Tensor
    stiffness: float

    @property
    def stiff_curvature(self) -> float:
        """stiffness (1 - beta stiffness)^2, the meta-curvature of every stiff direction."""
        return self.stiffness * (1 - self.beta * self.stiffness) ** 2

    def loss_derivatives(self, z: torch.Tensor) -> list[torch.Tensor]:
        """l_m and its first three derivatives at z (shape (...)) for every task, shape (..., M)."""
        return self.loss_derivatives_at(z.unsqueeze(-1))

    def loss_derivatives_at(self, z: torch.Tensor) -> list[torch.Tensor]:
        """l_m^(k)(z_m), k = 0..3, at task-wise points z of shape (..., M)."""
        sharp = bump_derivatives(z, self.p.to(z), SHARP_HEIGHT, SHARP_WIDTH)
        flat = bump_derivatives(z, self.q.to(z), FLAT_HEIGHT, FLAT_WIDTH)
        return [s + f for s, f in zip(sharp, flat, strict=True)]

    def task_meta(self, z: torch.Tensor) -> list[torch.Tensor]:
        """F_m, F_m', F_m'' on the basin coordinate, each shape (..., M).

        With z' = z - beta l'(z): F_m = l(z'), F_m' = (1 - beta l'') l'(z'),
        F_m'' = (1 - beta l'')^2 l''(z') - beta l''' l'(z').
        """
        return self.task_meta_from(z, self.loss_derivatives(z))

    def task_meta_from(self, z: torch.Tensor, derivatives: list[torch.Tensor]) -> list[torch.Tensor]:
        """``task_meta`` given ``loss_derivatives(z)``."""
        _, d1, d2, d3 = derivatives
        e0, e1, e2, _ = self.loss_derivatives_at(z.unsqueeze(-1) - self.beta * d1)
        jac = 1 - self.beta * d2
        return [e0, jac * e1, jac**2 * e2 - self.beta * d3 * e1]

    def meta_1d(self, z: torch.Tensor) -> list[torch.Tensor]:
        """F_1, F_1', F_1'' (task means) on the basin coordinate."""
        return [t.mean(-1) for t in self.task_meta(z)]

    def split(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, theta - z u) for theta of shape (..., d)."""
        u = self.axis.to(theta)
        z = theta @ u
        return z, theta - z.unsqueeze(-1) * u

    def objective(self, theta: torch.Tensor) -> torch.Tensor:
        """F(theta) for theta of shape (..., d)."""
        z, perp = self.split(theta)
        return self.meta_1d(z)[0] + 0.5 * self.stiff_curvature * (perp * perp).sum(-1)

    def gradient(self, theta: torch.Tensor) -> torch.Tensor:
        """grad F(theta) for theta of shape (..., d)."""
        z, perp = self.split(theta)
        return self.meta_1d(z)[1].unsqueeze(-1) * self.axis.to(theta) + self.stiff_curvature * perp


def sliding_max(values: torch.Tensor, half: int) -> torch.Tensor:
    """max of values[i - half : i + half + 1] for i in [half, n - half), van Herk/Gil-Werman."""
    width = 2 * half + 1
    n = values.numel()
    padded = torch.cat([values, values.new_full(((-n) % width,), -math.inf)]).view(-1, width)
    prefix = padded.cummax(dim=1).values.flatten()
    suffix = padded.flip(1).cummax(dim=1).values.flip(1).flatten()
    start = torch.arange(n - width + 1)
    return torch.maximum(suffix[start], prefix[start + width - 1])


@dataclass(frozen=True)
class TwoBasinGroundTruth:
    """F_1 and F_1'' on a fine grid of the basin coordinate, the basins, and robust minimisers."""

    grid: torch.Tensor
    values: torch.Tensor
    curvature: torch.Tensor
    barrier: float
    objective_1d: Callable[[torch.Tensor], torch.Tensor]

    @property
    def spacing(self) -> float:
        return float(self.grid[1] - self.grid[0])

    def robust_objective(self, theta: float, alpha: float) -> float:
        """max_{|eps| <= alpha} F_1(theta + eps): the grid points in the interval and its ends."""
        low = int(torch.searchsorted(self.grid, torch.tensor(theta - alpha, dtype=self.grid.dtype)))
        high = int(
            torch.searchsorted(self.grid, torch.tensor(theta + alpha, dtype=self.grid.dtype), right=True)
        )
        inside = self.values[low:high]
        ends = self.objective_1d(torch.tensor([theta - alpha, theta + alpha], dtype=self.grid.dtype))
        return float(torch.cat([inside, ends]).max())

    def robust_minimizer(self, alpha: float) -> tuple[float, float]:
        """(argmin, min) of the alpha-robust objective: the argmin over the grid centres whose
        window fits (sliding maximum over the grid points within alpha), and the exact
        ``robust_objective`` there."""
        half = int(alpha / self.spacing + 1e-9)
        if 2 * half + 1 > self.grid.numel():
            raise ValueError(f"alpha: expected a radius below half the grid range {GRID_RANGE}, got {alpha}")
        theta = float(self.grid[half + int(sliding_max(self.values, half).argmin())])
        return theta, self.robust_objective(theta, alpha)

    def switch_radius(self, alpha_max: float = 1.0, tol: float = 1e-4) -> float:
        """Smallest alpha (to tol, by bisection) whose robust minimiser lies in the flat basin."""

        def in_flat(alpha: float) -> bool:
            return self.robust_minimizer(alpha)[0] > self.barrier

        if in_flat(0.0) or not in_flat(alpha_max):
            raise ValueError(f"alpha_max: expected the robust minimiser to switch basins in [0, {alpha_max}]")
        low, high = 0.0, alpha_max
        while high - low > tol:
            mid = 0.5 * (low + high)
            low, high = (low, mid) if in_flat(mid) else (mid, high)
        return 0.5 * (low + high)


@register_family(FAMILY, SETTINGS)
def build_e2(seed: int, **settings: Any) -> ProblemInstance:
    """E2 with the defaults of docs/theory.md#family-e2 (M=20, beta=0.005, d=1)."""
    s = resolve_settings(FAMILY, SETTINGS, settings)
    d, M = s["d"], s["M"]
    p = SHARP_SPREAD * torch.randn(M, generator=generator(seed, FAMILY, "p"), dtype=torch.float64)
    q = FLAT_CENTER + FLAT_SPREAD * torch.randn(
        M, generator=generator(seed, FAMILY, "q"), dtype=torch.float64
    )
    rotation = (
        random_rotation(d, generator(seed, FAMILY, "rotation"))
        if d > 1
        else torch.ones(1, 1, dtype=torch.float64)
    )
    model = TwoBasinModel(p, q, s["beta"], rotation[:, 0], s["stiffness"])
    batch = {
        "p": p,
        "q": q,
        "u": model.axis.expand(M, d),
        "stiffness": torch.full((M,), s["stiffness"], dtype=torch.float64),
    }
    tasks = TaskBatch(support=batch, query=batch)
    cfg = MetaConfig(method="maml", inner_steps=1, inner_lr=s["beta"])
    theta0 = rotation @ torch.tensor([s["theta0"]] + [s["stiff_init"]] * (d - 1), dtype=torch.float64)
    evaluation = evaluate_on_grid(model, s["grid_points"])
    truth = ground_truth(model, evaluation)
    constants = two_basin_constants(model, truth, theta0)
    constants.update(grid_smoothness(model, evaluation))
    checks: list[ConstantCheck] = []
    measured: dict[str, float] = {}
    if s["verify"]:
        checks, measured = verify_two_basins(
            model, evaluation, constants, tasks, cfg, theta0, generator(seed, FAMILY, "verify")
        )
    return ProblemInstance(
        family=FAMILY,
        loss=two_basin_loss,
        tasks=tasks,
        init_params={"theta": theta0},
        meta_config=cfg,
        constants=Constants(**{k: constants[k] for k in TYPED_CONSTANTS}),
        checks=checks,
        settings=s,
        exact_objective=lambda params: model.objective(params["theta"]),
        exact_gradient=lambda params: {"theta": model.gradient(params["theta"])},
        reported={k: v for k, v in constants.items() if k not in TYPED_CONSTANTS},
        two_basins=TwoBasins(
            model,
            truth,
            rotation,
            float(s["stiff_init"]),
            **{k: constants[k] for k in ("theta_sharp", "theta_flat", "F2_sharp", "F2_flat", "L_F")},
        ),
        details=measured,
    )


@dataclass(frozen=True)
class TwoBasins:
    """What E2 provides to the checks about its two basins (coordinates z on the basin axis).

    ``model`` the closed-form F; ``ground_truth`` the grid ground truth and robust objective;
    ``rotation`` the Haar rotation whose first column is the basin axis u; ``stiff_init`` the
    starting coordinate of every stiff direction; the minimisers, F'' there, and L_F = max ||Hess F||
    on the grid.
    """

    model: TwoBasinModel
    ground_truth: TwoBasinGroundTruth
    rotation: torch.Tensor
    stiff_init: float
    theta_sharp: float
    theta_flat: float
    F2_sharp: float
    F2_flat: float
    L_F: float

    @property
    def dimension(self) -> int:
        return self.rotation.shape[0]

    def embed(self, z: float | torch.Tensor) -> torch.Tensor:
        """theta = z u: the point of basin coordinate z with every stiff coordinate 0."""
        return torch.as_tensor(z, dtype=torch.float64)[..., None] * self.model.axis

    def starts(self, z0: torch.Tensor) -> torch.Tensor:
        """Starting points (n, d): basin coordinate z0 along u, the stiff directions at stiff_init."""
        coordinates = torch.full((len(z0), self.dimension), self.stiff_init, dtype=torch.float64)
        coordinates[:, 0] = torch.as_tensor(z0, dtype=torch.float64)
        return coordinates @ self.rotation.T


@dataclass(frozen=True)
class GridEvaluation:
    """F_1, F_1'' on the grid and the grid maxima of |l_m'|, |l_m''|, |l_m'''|, |F_m''|."""

    grid: torch.Tensor
    values: torch.Tensor
    curvature: torch.Tensor
    maxima: dict[str, float]


def evaluate_on_grid(model: TwoBasinModel, points: int, chunk: int = 1024) -> GridEvaluation:
    """One chunked pass of the closed forms over ``points`` grid points of GRID_RANGE.

    Chunks of 1024 points x M tasks stay below torch's intra-op parallel grain, so the pass
    runs serially: many small multi-threaded ops stall badly on a shared, loaded CPU."""
    grid = torch.linspace(*GRID_RANGE, points, dtype=torch.float64)
    values, curvature, maxima = [], [], torch.zeros(4, dtype=torch.float64)
    for z in grid.split(chunk):
        derivatives = model.loss_derivatives(z)
        F_m, _, F2_m = model.task_meta_from(z, derivatives)
        values.append(F_m.mean(-1))
        curvature.append(F2_m.mean(-1))
        chunk_max = torch.stack([t.abs().max() for t in (*derivatives[1:], F2_m)])
        maxima = torch.maximum(maxima, chunk_max)
    names = ("grad_l_max", "hessian_l_max", "third_l_max", "hessian_F_m_max")
    return GridEvaluation(
        grid,
        torch.cat(values),
        torch.cat(curvature),
        dict(zip(names, maxima.tolist(), strict=True)),
    )


def ground_truth(model: TwoBasinModel, evaluation: GridEvaluation) -> TwoBasinGroundTruth:
    """The grid ground truth; the barrier is the grid argmax of F_1 between mean p and mean q."""
    grid, values = evaluation.grid, evaluation.values
    between = (grid >= model.p.mean()) & (grid <= model.q.mean())
    barrier = float(grid[between][values[between].argmax()])
    return TwoBasinGroundTruth(grid, values, evaluation.curvature, barrier, lambda z: model.meta_1d(z)[0])


def basin_minimizer(model: TwoBasinModel, truth: TwoBasinGroundTruth, side: torch.Tensor) -> float:
    """Grid argmin of F_1 on one side of the barrier, refined by Newton steps on the closed form."""
    z = truth.grid[side][truth.values[side].argmin()].reshape(1)
    for _ in range(8):
        _, slope, curvature = model.meta_1d(z)
        z = z - slope / curvature
    return float(z)


def two_basin_constants(
    model: TwoBasinModel, truth: TwoBasinGroundTruth, theta0: torch.Tensor
) -> dict[str, float]:
    """L, rho, G from the Gaussians, L_bar (generic bound), basins and F* from the ground truth."""
    L_1d = SHARP_HEIGHT / SHARP_WIDTH**2 + FLAT_HEIGHT / FLAT_WIDTH**2
    L = max(L_1d, model.stiffness) if model.axis.numel() > 1 else L_1d
    rho = THIRD_DERIVATIVE_FACTOR * (SHARP_HEIGHT / SHARP_WIDTH**3 + FLAT_HEIGHT / FLAT_WIDTH**3)
    G = (SHARP_HEIGHT / SHARP_WIDTH + FLAT_HEIGHT / FLAT_WIDTH) / math.sqrt(math.e)
    sharp = basin_minimizer(model, truth, truth.grid < truth.barrier)
    flat = basin_minimizer(model, truth, truth.grid > truth.barrier)
    (F_sharp, F_flat), _, (F2_sharp, F2_flat) = (
        t.tolist() for t in model.meta_1d(torch.tensor([sharp, flat], dtype=torch.float64))
    )
    F_star = min(F_sharp, F_flat)
    return {
        "L": L,
        "rho": rho,
        "G": G,
        "L_bar": (1 + model.beta * L) ** 2 * L + model.beta * rho * G,
        "theta_sharp": sharp,
        "theta_flat": flat,
        "theta_barrier": truth.barrier,
        "theta_star": sharp if F_sharp <= F_flat else flat,
        "F_sharp": F_sharp,
        "F_flat": F_flat,
        "F2_sharp": F2_sharp,
        "F2_flat": F2_flat,
        "F_star": F_star,
        "F_theta0": float(model.objective(theta0)),
        "Delta": float(model.objective(theta0)) - F_star,
    }


def grid_smoothness(model: TwoBasinModel, evaluation: GridEvaluation) -> dict[str, float]:
    """L_F = max ||Hess F|| and L_bar_grid = max_m max ||Hess F_m|| over the grid (with the
    stiff directions for d > 1): the smoothness actually attained on GRID_RANGE."""
    stiff = model.stiff_curvature if model.axis.numel() > 1 else 0.0
    return {
        "L_F": max(float(evaluation.curvature.abs().max()), stiff),
        "L_bar_grid": max(evaluation.maxima["hessian_F_m_max"], stiff),
    }


def verify_two_basins(
    model: TwoBasinModel,
    evaluation: GridEvaluation,
    constants: dict[str, float],
    tasks: TaskBatch,
    cfg: MetaConfig,
    theta0: torch.Tensor,
    g: torch.Generator,
) -> tuple[list[ConstantCheck], dict[str, float]]:
    """Grid maxima of |l'|, |l''|, |l'''|, |F''|, |F_m''| against G, L, rho, L_bar; the closed
    form F, grad F and Hessian spectrum against the engine's autodiff at probe points.

    For d > 1 the stiff directions add the stiffness to the l'' maximum and
    stiffness (1 - beta stiffness)^2 to the F'' and F_m'' maxima.
    """
    stiff_l, stiff_F = (model.stiffness, model.stiff_curvature) if model.axis.numel() > 1 else (0.0, 0.0)
    maxima = evaluation.maxima
    measured = {
        "grad_l_max": maxima["grad_l_max"],
        "hessian_l_max": max(maxima["hessian_l_max"], stiff_l),
        "third_l_max": maxima["third_l_max"],
        "hessian_F_max": max(float(evaluation.curvature.abs().max()), stiff_F),
        "hessian_F_m_max": max(maxima["hessian_F_m_max"], stiff_F),
    }
    checks = grid_checks(constants, measured) + engine_checks(model, constants, tasks, cfg, theta0, g)
    return checks, measured


def grid_checks(constants: dict[str, float], measured: dict[str, float]) -> list[ConstantCheck]:
    """The grid maxima against the closed-form G, L, rho and L_bar."""
    return [
        bound_check(
            "max |l_m'| on grid <= G",
            constants["G"],
            measured["grad_l_max"],
            "closed-form derivatives on the grid",
        ),
        bound_check(
            "max |l_m''| on grid <= L",
            constants["L"],
            measured["hessian_l_max"],
            "closed-form derivatives on the grid",
        ),
        bound_check(
            "max |l_m'''| on grid <= rho",
            constants["rho"],
            measured["third_l_max"],
            "closed-form derivatives on the grid",
        ),
        bound_check(
            "max ||Hess F|| on grid <= L_bar",
            constants["L_bar"],
            measured["hessian_F_max"],
            "closed-form F'' on the grid",
        ),
        bound_check(
            "max ||Hess F_m|| on grid <= L_bar",
            constants["L_bar"],
            measured["hessian_F_m_max"],
            "closed-form F_m'' on the grid",
        ),
    ]


def engine_checks(
    model: TwoBasinModel,
    constants: dict[str, float],
    tasks: TaskBatch,
    cfg: MetaConfig,
    theta0: torch.Tensor,
    g: torch.Generator,
) -> list[ConstantCheck]:
    """Closed form vs engine autodiff: F, grad F at probes; the Hessian spectrum at the minima."""
    F = meta_objective_fn(two_basin_loss, tasks, cfg)
    stiff = torch.randn(theta0.shape, generator=g, dtype=theta0.dtype)
    probes = [theta0] + [z * model.axis + 0.1 * stiff for z in (-0.1, 0.05, 1.0, 2.5)]
    checks = []
    for i, theta in enumerate(probes):
        engine = plain_meta_gradient(
            two_basin_loss, {"theta": theta}, tasks, cfg.replace(executor="vmap")
        ).grad["theta"]
        checks.append(
            equality_check(
                f"F(probe {i})",
                float(model.objective(theta)),
                float(F(theta)),
                "closed form vs engine meta-loss",
                EXACT_RTOL,
            )
        )
        checks.append(
            vector_equality_check(
                f"grad_F(probe {i})",
                model.gradient(theta),
                engine,
                "closed form vs harness.meta.plain_meta_gradient (norms shown)",
                EXACT_RTOL,
            )
        )
    for basin in ("sharp", "flat"):
        ritz = hessian_ritz(F, constants[f"theta_{basin}"] * model.axis, g)
        expected = [constants[f"F2_{basin}"]] + ([model.stiff_curvature] if model.axis.numel() > 1 else [])
        method = f"eigenvalues of the autodiff Hessian (vmapped HVPs) at the {basin} minimiser"
        checks.append(
            equality_check(f"lambda_max(Hess F) {basin}", max(expected), ritz.top, method, EXACT_RTOL)
        )
        checks.append(
            equality_check(f"lambda_min(Hess F) {basin}", min(expected), ritz.bottom, method, EXACT_RTOL)
        )
    return checks
