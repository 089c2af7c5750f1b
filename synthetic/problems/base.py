"""What every synthetic problem family provides to the theory suites.

A family is one module in ``synthetic/problems/`` that registers a builder with
``@register_family``. A built ``ProblemInstance`` carries the task losses for the harness
engine, the finite task set, the exact MAML meta-objective F and its gradient, and its
smoothness constants with their numerical verification.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from harness.config import MetaConfig
from harness.meta import LossFn, plain_meta_gradient, task_meta_loss
from harness.tasks import TaskBatch
from harness.tree import Params


@dataclass(frozen=True)
class ConstantCheck:
    """One constant of a family: the closed-form value and how it was verified numerically."""

    name: str
    closed_form: float
    measured: float
    method: str
    holds: bool
    relation: str = "measured <= closed_form"


@dataclass
class ProblemInstance:
    """A built problem: M tasks, the exact MAML objective, and verified constants.

    ``tasks`` holds all M tasks stacked (support = lower-level data, query = upper-level data).
    ``meta_config`` is the MAML configuration whose objective F the constants describe (one
    inner step of size beta unless said otherwise).
    """

    family: str
    loss: LossFn
    tasks: TaskBatch
    init_params: Params
    meta_config: MetaConfig
    constants: dict[str, float]
    checks: list[ConstantCheck] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    exact_objective: Callable[[Params], torch.Tensor] | None = None
    exact_gradient: Callable[[Params], Params] | None = None

    @property
    def num_tasks(self) -> int:
        return self.tasks.num_tasks

    def meta_objective(self, params: Params) -> torch.Tensor:
        """F(theta) over the whole finite task set (closed form when the family has one)."""
        if self.exact_objective is not None:
            return self.exact_objective(params)
        cfg = self.meta_config.replace(method="maml", alpha_low=0.0, alpha_up=0.0)
        values = [
            task_meta_loss(self.loss, params, *self.tasks.task(i), cfg)
            for i in range(self.num_tasks)
        ]
        return torch.stack(values).mean()

    def meta_grad(self, params: Params) -> Params:
        """grad F(theta), exact: closed form, else torch.func over all M tasks."""
        if self.exact_gradient is not None:
            return self.exact_gradient(params)
        cfg = self.meta_config.replace(method="maml", alpha_low=0.0, alpha_up=0.0, executor="vmap")
        return plain_meta_gradient(self.loss, params, self.tasks, cfg).grad


FamilyBuilder = Callable[..., ProblemInstance]
FAMILIES: dict[str, FamilyBuilder] = {}


def register_family(name: str) -> Callable[[FamilyBuilder], FamilyBuilder]:
    """Decorator: make ``build_problem(name, ...)`` call this builder."""

    def decorate(builder: FamilyBuilder) -> FamilyBuilder:
        if name in FAMILIES:
            raise ValueError(f"problem family {name!r} is registered twice")
        FAMILIES[name] = builder
        return builder

    return decorate


def build_problem(name: str, seed: int, **settings: Any) -> ProblemInstance:
    """Build family ``name`` from an explicit seed; unknown names raise a clear error."""
    from synthetic import problems  # noqa: F401  (imports every family module)

    if name not in FAMILIES:
        raise ValueError(f"problem family: unknown {name!r}; expected one of {sorted(FAMILIES)}")
    return FAMILIES[name](seed=seed, **settings)
