"""Family L2: logistic-regression tasks (convex tasks, nonconvex MAML objective).

Task m has a true weight w_m = w_bar + N(0, I) with ||w_bar|| = 3; inputs x are uniform on the
sphere of radius R; labels y = sign(w_m^T x) in {-1, +1}, each flipped with probability 0.1.
The task loss is the mean logistic loss softplus(-y x^T theta) on m_tr support and m_val query
points. With ||x|| <= R: L = R^2/4, rho = R^3/(6 sqrt 3), G = R (docs/theory.md#family-l2), and the MAML
objective is L_bar-smooth with L_bar = L + beta rho G when beta <= 2/L (convex tasks), else
(1 + beta L)^2 L + beta rho G. See docs/families.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as nnf
from torch.func import vmap

from harness.config import MetaConfig
from harness.meta import LossFn, adapt
from harness.tasks import TaskBatch
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

FAMILY = "L2"
TYPED_CONSTANTS = ("L", "rho", "G", "L_bar", "Delta", "sigma2")
SETTINGS = {
    "d": int_setting(10, minimum=1),
    "M": int_setting(100, minimum=1),
    "m_tr": int_setting(5, minimum=1),
    "m_val": int_setting(15, minimum=1),
    "beta": float_setting(0.5, positive=True),
    "R": float_setting(1.0, positive=True),
    "w_norm": float_setting(3.0, minimum=0.0),
    "task_std": float_setting(1.0, minimum=0.0),
    "label_noise": float_setting(0.1, minimum=0.0, maximum=1.0),
    "theta0": float_setting(0.0),
    "hessian_points": int_setting(4, minimum=0),
    "task_checks": int_setting(8, minimum=0),
    "verify": bool_setting(True),
}


LOGISTIC_PROFILE = ScalarProfile(
    "softplus(-z)",
    lambda z: nnf.softplus(-z),
    d1=lambda z: -torch.sigmoid(-z),
    d2=lambda z: torch.sigmoid(z) * torch.sigmoid(-z),
    sup_d1=1.0,
    sup_d2=0.25,
    sup_d3=1 / (6 * math.sqrt(3)),
)


def logistic_loss(params: Params, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean of log(1 + exp(-y x^T theta)) over a batch {"x": (n, d), "y": (n,)}, y in {-1, +1}."""
    return nnf.softplus(-batch["y"] * (batch["x"] @ params["theta"])).mean()


def zero_one_loss(params: Params, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Classification error in [0, 1]; the prediction is +1 where x^T theta >= 0, else -1."""
    prediction = torch.where(batch["x"] @ params["theta"] >= 0, 1.0, -1.0).to(batch["y"])
    return (prediction != batch["y"]).to(batch["y"]).mean()


def clipped_logistic_loss(params: Params, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """min(1, softplus(-y x^T theta) / log 2): in [0, 1], >= the 0-1 loss, differentiable a.e."""
    margin_loss = nnf.softplus(-batch["y"] * (batch["x"] @ params["theta"])) / math.log(2)
    return torch.clamp(margin_loss, max=1.0).mean()


def bounded_task_loss(
    problem: ProblemInstance,
    params: Params,
    support: Any,
    query: Any,
    eval_loss: LossFn = zero_one_loss,
) -> torch.Tensor:
    """eval_loss(theta_m, D'_m) of one task: adapt with the logistic loss on the support data
    (problem.meta_config), evaluate the bounded loss on the query data. In [0, 1]."""
    return eval_loss(adapt(problem.loss, params, support, problem.meta_config), query)


def bounded_meta_loss(
    problem: ProblemInstance, params: Params, tasks: TaskBatch, eval_loss: LossFn = zero_one_loss
) -> torch.Tensor:
    """mean_m of ``bounded_task_loss``: the meta-learning risk in [0, 1]. With
    ``clipped_logistic_loss`` it is differentiable, for max-in-ball gradient ascent."""

    def per_task(support: Any, query: Any) -> torch.Tensor:
        return bounded_task_loss(problem, params, support, query, eval_loss)

    return vmap(per_task)(tasks.support, tasks.query).mean()


@dataclass(frozen=True, kw_only=True)
class LogisticTaskDistribution(LinearTaskDistribution):
    """The task distribution of L2 (w_bar fixed by the seed): labels sign(x^T w), each flipped
    with probability ``label_noise``."""

    label_noise: float

    def affine_margin(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return batch["y"], torch.zeros_like(batch["y"])

    def targets(
        self, gen: torch.Generator, x: torch.Tensor, margins: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        clean = torch.where(margins >= 0, 1.0, -1.0).to(x.dtype)
        flip = torch.rand(clean.shape, generator=gen, dtype=x.dtype) < self.label_noise
        return {"x": x, "y": torch.where(flip, -clean, clean)}


def logistic_constants(R: float, beta: float) -> dict[str, float]:
    """L = R^2/4, rho = R^3/(6 sqrt 3), G = R and the MAML constants (docs/theory.md, docs/families.md)."""
    return linear_model_constants(LOGISTIC_PROFILE, R, beta)


@register_family(FAMILY, SETTINGS)
def build_l2(seed: int, **settings: Any) -> ProblemInstance:
    """L2 with the defaults of docs/theory.md#family-l2 (d=10, M=100, m_tr=5, m_val=15, beta=0.5, R=1)."""
    s = resolve_settings(FAMILY, SETTINGS, settings)
    w_bar = s["w_norm"] * random_unit_vector(s["d"], generator(seed, FAMILY, "w_bar"))
    distribution = LogisticTaskDistribution(
        w_bar=w_bar,
        radius=float(s["R"]),
        task_std=float(s["task_std"]),
        label_noise=float(s["label_noise"]),
        m_tr=s["m_tr"],
        m_val=s["m_val"],
    )
    tasks = distribution.sample(generator(seed, FAMILY, "tasks"), s["M"])
    cfg = MetaConfig(method="maml", inner_steps=1, inner_lr=float(s["beta"]))
    theta0 = torch.full((s["d"],), float(s["theta0"]), dtype=torch.float64)
    constants = logistic_constants(float(s["R"]), float(s["beta"]))
    constants["F_theta0"] = float(meta_objective_fn(logistic_loss, tasks, cfg)(theta0))
    constants["Delta"] = constants["F_theta0"]  # the loss is >= 0, so inf F >= 0
    exact_gradient = linear_meta_gradient(LOGISTIC_PROFILE, distribution, tasks, float(s["beta"]))
    checks: list[ConstantCheck] = []
    measured: dict[str, float] = {}
    if s["verify"]:
        checks, measured = verify_linear_model(
            LOGISTIC_PROFILE,
            constants,
            logistic_loss,
            tasks,
            cfg,
            theta0,
            s,
            generator(seed, FAMILY, "verify"),
            exact_gradient,
        )
    return ProblemInstance(
        family=FAMILY,
        loss=logistic_loss,
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
