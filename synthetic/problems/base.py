"""What every synthetic problem family provides to the theory suites.

A family is one module in ``synthetic/problems/`` that registers a builder with
``@register_family``. A built ``ProblemInstance`` carries the task losses for the harness
engine, the finite task set, the exact MAML meta-objective F and its gradient, and its
smoothness constants with their numerical verification.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from harness.config import ConfigError, MetaConfig, NumberRule
from harness.meta import LossFn, plain_meta_gradient, task_meta_loss
from harness.tasks import TaskBatch
from harness.tree import Params
from infra.errors import stage


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
    inner step of size beta unless said otherwise). ``settings`` holds the resolved,
    serialisable settings of the build (plain numbers and strings); ``extras`` holds derived
    family-specific objects (closed-form tensors, ground-truth grids, samplers), documented
    per family in docs/families.md.
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
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def num_tasks(self) -> int:
        return self.tasks.num_tasks

    def meta_objective(self, params: Params) -> torch.Tensor:
        """F(theta) over the whole finite task set (closed form when the family has one)."""
        if self.exact_objective is not None:
            return self.exact_objective(params)
        cfg = self.meta_config.replace(method="maml", alpha_low=0.0, alpha_up=0.0)
        values = [task_meta_loss(self.loss, params, *self.tasks.task(i), cfg) for i in range(self.num_tasks)]
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
    with stage(f"family {name} (build, seed {seed})"):
        return FAMILIES[name](seed=seed, **settings)


@dataclass(frozen=True)
class Setting:
    """One builder setting: default, validity test, expected value in words, and a converter."""

    default: Any
    valid: Callable[[Any], bool]
    expected: str
    convert: Callable[[Any], Any] = lambda v: v


def int_setting(default: int, minimum: int, maximum: int | None = None) -> Setting:
    """An integer setting in [minimum, maximum]."""
    rule = NumberRule(integer=True, minimum=minimum, maximum=maximum)
    return Setting(default, rule.accepts, rule.expected)


def float_setting(
    default: float,
    minimum: float | None = None,
    maximum: float | None = None,
    positive: bool = False,
) -> Setting:
    """A finite number (stored as float); ``positive`` requires > 0, ``minimum``/``maximum``
    bound it inclusively."""
    rule = NumberRule(minimum=minimum, maximum=maximum, positive=positive)
    return Setting(default, rule.accepts, rule.expected, float)


def bool_setting(default: bool) -> Setting:
    """True or False."""
    return Setting(default, lambda v: isinstance(v, bool), "True or False")


def resolve_settings(family: str, spec: dict[str, Setting], given: dict[str, Any]) -> dict[str, Any]:
    """Defaults filled in and every value validated and converted; errors name the setting
    and what is expected."""
    unknown = sorted(set(given) - set(spec))
    if unknown:
        raise ConfigError(f"{family} setting {unknown[0]!r}: unknown setting; expected one of {sorted(spec)}")
    resolved = {}
    for name, setting in spec.items():
        value = given.get(name, setting.default)
        if not setting.valid(value):
            raise ConfigError(f"{family} setting {name!r}: expected {setting.expected}, got {value!r}")
        resolved[name] = setting.convert(value)
    return resolved


def bound_check(
    name: str, bound: float, value: float, method: str, rtol: float = 0.0, atol: float = 0.0
) -> ConstantCheck:
    """The row 'measured value <= closed-form bound * (1 + rtol) + atol' (the tolerances only
    absorb rounding-level ties)."""
    relation = "measured <= closed_form" + (f" * (1 + {rtol:g})" if rtol else "")
    relation += f" + {atol:g}" if atol else ""
    return ConstantCheck(name, bound, value, method, value <= bound * (1 + rtol) + atol, relation)


def equality_check(name: str, closed_form: float, measured: float, method: str, rtol: float) -> ConstantCheck:
    """The row 'measured equals closed form to relative tolerance rtol'."""
    error = abs(measured - closed_form) / max(abs(closed_form), 1e-300)
    relation = f"|measured - closed_form| / |closed_form| = {error:.2e} <= {rtol:g}"
    return ConstantCheck(name, closed_form, measured, method, error <= rtol, relation)


def vector_equality_check(
    name: str, closed_form: torch.Tensor, measured: torch.Tensor, method: str, rtol: float
) -> ConstantCheck:
    """The row 'measured vector equals the closed-form vector to relative tolerance rtol'
    (the row shows both norms; the relation, the relative error of the vectors)."""
    scale = torch.linalg.vector_norm(closed_form)
    error = float(torch.linalg.vector_norm(measured - closed_form) / scale.clamp_min(1e-300))
    return ConstantCheck(
        name,
        float(scale),
        float(torch.linalg.vector_norm(measured)),
        method,
        error <= rtol,
        f"||measured - closed_form|| / ||closed_form|| = {error:.2e} <= {rtol:g}",
    )
