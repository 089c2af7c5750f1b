"""Family H1: robust linear regression with the pseudo-Huber loss (convex tasks, nonconvex MAML
objective, neither quadratic nor logistic).

Task m has a true weight w_m = w_bar + task_std N(0, I) with ||w_bar|| = w_norm; inputs x are
uniform on the sphere of radius R; targets y = w_m^T x + noise_std N(0, 1), and with probability
outlier_prob an outlier outlier_scale N(0, 1) is added. The task loss is the mean pseudo-Huber
loss phi(x^T theta - y), phi(r) = delta^2 (sqrt(1 + (r/delta)^2) - 1): quadratic near 0,
linear (slope delta) for |r| >> delta. With s = r/delta:

    phi'(r) = r / sqrt(1 + s^2)            sup |phi'|   = delta       (|r| -> infinity)
    phi''(r) = (1 + s^2)^(-3/2)            sup phi''    = 1           (r = 0)
    phi'''(r) = -3 s (1 + s^2)^(-5/2)/delta sup |phi'''| = (3/(2 delta)) (4/5)^(5/2)  (s = 1/2)

so L = R^2, rho = (3/2)(4/5)^(5/2) R^3/delta, G = delta R, and (beta <= 2/L) L_bar = L + beta rho G,
in which delta cancels; sigma2 = G^2 and Delta = F(theta0) (the loss is >= 0). Constants and
verification come from ``synthetic.problems.linear_models``. See docs/families.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from harness.config import MetaConfig
from harness.tree import Params
from infra.seeding import generator
from synthetic.linalg import meta_objective_fn, random_unit_vector
from synthetic.problems.base import (
    ConstantCheck,
    Constants,
    ProblemInstance,
    bool_setting,
    float_setting,
    int_setting,
    register_family,
    resolve_settings,
)
from synthetic.problems.linear_models import (
    LinearTaskDistribution,
    ScalarProfile,
    linear_meta_gradient,
    linear_model_constants,
    verify_linear_model,
)

FAMILY = "H1"
TYPED_CONSTANTS = ("L", "rho", "G", "L_bar", "Delta", "sigma2")
# max_s s (1 + s^2)^(-5/2) = (1/2)(4/5)^(5/2) at s = 1/2: the third-derivative factor.
THIRD_DERIVATIVE_FACTOR = 1.5 * 0.8**2.5
SETTINGS = {
    "d": int_setting(10, minimum=1),
    "M": int_setting(100, minimum=1),
    "m_tr": int_setting(5, minimum=1),
    "m_val": int_setting(15, minimum=1),
    "beta": float_setting(0.5, positive=True),
    "R": float_setting(1.0, positive=True),
    "delta": float_setting(1.0, positive=True),
    "w_norm": float_setting(3.0, minimum=0.0),
    "task_std": float_setting(1.0, minimum=0.0),
    "noise_std": float_setting(0.1, minimum=0.0),
    "outlier_prob": float_setting(0.1, minimum=0.0, maximum=1.0),
    "outlier_scale": float_setting(5.0, minimum=0.0),
    "theta0": float_setting(0.0),
    "hessian_points": int_setting(4, minimum=0),
    "task_checks": int_setting(8, minimum=0),
    "verify": bool_setting(True),
}


def pseudo_huber(r: torch.Tensor, delta: float | torch.Tensor) -> torch.Tensor:
    """delta^2 (sqrt(1 + (r/delta)^2) - 1), elementwise."""
    return delta**2 * (torch.sqrt(1 + (r / delta) ** 2) - 1)


def pseudo_huber_profile(delta: float) -> ScalarProfile:
    """The scalar profile of H1's loss with its closed-form derivative sups."""
    return ScalarProfile(
        f"pseudo-Huber(delta={delta:g})",
        lambda r: pseudo_huber(r, delta),
        d1=lambda r: r / torch.sqrt(1 + (r / delta) ** 2),
        d2=lambda r: (1 + (r / delta) ** 2) ** -1.5,
        sup_d1=delta,
        sup_d2=1.0,
        sup_d3=THIRD_DERIVATIVE_FACTOR / delta,
    )


def pseudo_huber_loss(params: Params, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean pseudo-Huber loss of x^T theta - y over a batch {"x": (n, d), "y": (n,), "delta": ()}."""
    return pseudo_huber(batch["x"] @ params["theta"] - batch["y"], batch["delta"]).mean()


@dataclass(frozen=True, kw_only=True)
class RegressionTaskDistribution(LinearTaskDistribution):
    """The task distribution of H1 (w_bar fixed by the seed): targets x^T w plus Gaussian noise,
    and with probability ``outlier_prob`` a jump of scale ``outlier_scale``."""

    delta: float
    noise_std: float
    outlier_prob: float
    outlier_scale: float

    def affine_margin(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.ones_like(batch["y"]), batch["y"]

    def targets(
        self, gen: torch.Generator, x: torch.Tensor, margins: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        noise = self.noise_std * torch.randn(margins.shape, generator=gen, dtype=x.dtype)
        outlier = torch.rand(margins.shape, generator=gen, dtype=x.dtype) < self.outlier_prob
        jump = self.outlier_scale * torch.randn(margins.shape, generator=gen, dtype=x.dtype)
        delta = torch.full((x.shape[0],), self.delta, dtype=x.dtype)
        return {"x": x, "y": margins + noise + torch.where(outlier, jump, 0.0), "delta": delta}


@register_family(FAMILY, SETTINGS)
def build_h1(seed: int, **settings: Any) -> ProblemInstance:
    """H1 with defaults d=10, M=100, m_tr=5, m_val=15, beta=0.5, R=1, delta=1."""
    s = resolve_settings(FAMILY, SETTINGS, settings)
    w_bar = s["w_norm"] * random_unit_vector(s["d"], generator(seed, FAMILY, "w_bar"))
    distribution = RegressionTaskDistribution(
        w_bar=w_bar,
        radius=float(s["R"]),
        task_std=float(s["task_std"]),
        m_tr=s["m_tr"],
        m_val=s["m_val"],
        delta=float(s["delta"]),
        noise_std=float(s["noise_std"]),
        outlier_prob=float(s["outlier_prob"]),
        outlier_scale=float(s["outlier_scale"]),
    )
    tasks = distribution.sample(generator(seed, FAMILY, "tasks"), s["M"])
    cfg = MetaConfig(method="maml", inner_steps=1, inner_lr=float(s["beta"]))
    theta0 = torch.full((s["d"],), float(s["theta0"]), dtype=torch.float64)
    profile = pseudo_huber_profile(float(s["delta"]))
    constants = linear_model_constants(profile, float(s["R"]), float(s["beta"]))
    constants["F_theta0"] = float(meta_objective_fn(pseudo_huber_loss, tasks, cfg)(theta0))
    constants["Delta"] = constants["F_theta0"]  # the loss is >= 0, so inf F >= 0
    exact_gradient = linear_meta_gradient(profile, distribution, tasks, float(s["beta"]))
    checks: list[ConstantCheck] = []
    measured: dict[str, float] = {}
    if s["verify"]:
        checks, measured = verify_linear_model(
            profile,
            constants,
            pseudo_huber_loss,
            tasks,
            cfg,
            theta0,
            s,
            generator(seed, FAMILY, "verify"),
            exact_gradient,
        )
    return ProblemInstance(
        family=FAMILY,
        loss=pseudo_huber_loss,
        tasks=tasks,
        init_params={"theta": theta0},
        exact_gradient=exact_gradient,
        meta_config=cfg,
        constants=Constants(**{k: constants[k] for k in TYPED_CONSTANTS}),
        checks=checks,
        settings=s,
        reported={k: v for k, v in constants.items() if k not in TYPED_CONSTANTS},
        task_distribution=distribution,
        details=measured,
    )
