"""What every synthetic problem family provides to the theory suites.

A family is one module in ``synthetic/problems/`` that registers a builder with
``@register_family``. A built ``ProblemInstance`` carries the task losses for the harness
engine, the finite task set, the exact MAML meta-objective F and its gradient, and its
smoothness constants with their numerical verification.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.func import vmap

from harness.config import ConfigError, MetaConfig, NumberRule
from harness.meta import LossFn, plain_meta_gradient, task_meta_loss
from harness.tasks import TaskBatch
from harness.tree import Params
from infra.errors import UsageError, stage


@dataclass(frozen=True)
class ConstantCheck:
    """One constant of a family: the closed-form value and how it was verified numerically."""

    name: str
    closed_form: float
    measured: float
    method: str
    holds: bool
    relation: str = "measured <= closed_form"


@dataclass(frozen=True)
class Constants:
    """The constants the theory's bounds take, in closed form; None where a family has none.

    L: smoothness of every task loss; rho: Lipschitz constant of their Hessians; G: bound on
    their gradients; L_bar: smoothness of every F_m (hence of F); Delta: an upper bound on
    F(theta0) - inf F; sigma2: an upper bound on mean_m ||grad F_m(theta) - grad F(theta)||^2
    over the region the runs visit (docs/families.md says which region, per family).
    """

    L: float | None = None
    rho: float | None = None
    G: float | None = None
    L_bar: float | None = None
    Delta: float | None = None
    sigma2: float | None = None

    def provided(self) -> dict[str, float]:
        """The constants the family provides, by name."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class QuadraticObjective:
    """Exact quantities of a quadratic F(theta) = 1/2 theta^T H theta - b^T theta + c0 (quadratic
    tasks): what the checks specific to a quadratic F read (the R2 2-cycle along the top
    eigenvector, FO-MAML's affine fixed point, the R3 bias around theta*).

    ``eigenvalues`` descending, ``eigenvectors`` the matching columns; ``beta`` the inner step
    that F describes (0 allowed, where the engine's inner_lr is a placeholder).
    """

    hessian: torch.Tensor
    theta_star: torch.Tensor
    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor
    beta: float

    @property
    def top_eigenvalue(self) -> float:
        """lambda_1 = L_F, the smoothness of F."""
        return float(self.eigenvalues[0])

    @property
    def top_eigenvector(self) -> torch.Tensor:
        """v_1, the eigenvector of lambda_1."""
        return self.eigenvectors[:, 0]


@dataclass
class ProblemInstance:
    """A built problem: M tasks, the exact MAML objective, and verified constants.

    ``tasks`` holds all M tasks stacked (support = lower-level data, query = upper-level data).
    ``meta_config`` is the MAML configuration whose objective F the constants describe (one
    inner step of size beta unless said otherwise). ``settings`` holds the resolved,
    serialisable settings of the build (plain numbers and strings).

    What a family provides is typed: ``constants`` (``Constants``; None where it has no closed
    form), ``quadratic`` (exact quantities of a quadratic F), ``two_basins`` (a two-basin ground
    truth, ``synthetic.problems.e2_two_basins.TwoBasins``), ``task_distribution`` (fresh tasks of
    the same distribution). ``reported`` holds every other closed-form number of the family for
    the constants table (read by no check); ``details`` a family-specific typed object for its
    own tests and users (docs/families.md). ``exact_objective`` / ``exact_gradient``: F and
    grad F in closed form where the family has them, taking parameters with any leading batch
    dimensions (verified against the engine by the family's own check rows). A check declares
    which of these it needs (``NEEDS``, names from ``CAPABILITIES``); ``provided_capabilities``
    says which a problem has.
    """

    family: str
    loss: LossFn
    tasks: TaskBatch
    init_params: Params
    meta_config: MetaConfig
    constants: Constants
    checks: list[ConstantCheck] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    exact_objective: Callable[[Params], torch.Tensor] | None = None
    exact_gradient: Callable[[Params], Params] | None = None
    reported: dict[str, float] = field(default_factory=dict)
    quadratic: QuadraticObjective | None = None
    two_basins: Any = None
    task_distribution: Any = None
    details: Any = None

    @property
    def num_tasks(self) -> int:
        return self.tasks.num_tasks

    @property
    def label(self) -> str:
        """The name of this instance in prediction ids: the family, with ``-d<d>`` where its
        dimension setting differs from the family's default."""
        d = self.settings.get("d")
        default = FAMILY_SETTINGS.get(self.family, {}).get("d")
        return self.family if d is None or default is None or d == default.default else f"{self.family}-d{d}"

    def meta_objective(self, params: Params) -> torch.Tensor:
        """F(theta) over the whole finite task set (closed form when the family has one)."""
        if self.exact_objective is not None:
            return self.exact_objective(params)
        cfg = self.meta_config.replace(method="maml", alpha_low=0.0, alpha_up=0.0)
        values = [task_meta_loss(self.loss, params, *self.tasks.task(i), cfg) for i in range(self.num_tasks)]
        return torch.stack(values).mean()

    def lane_meta_grad(self, params: Params) -> Params:
        """grad F at lane-batched parameters (a leading lane dimension): the closed form takes
        leading dimensions directly (one batched product instead of one call per lane), the
        autodiff path is vmapped."""
        if self.exact_gradient is not None:
            return self.exact_gradient(params)
        return vmap(self.meta_grad)(params)

    def meta_grad(self, params: Params) -> Params:
        """grad F(theta), exact: closed form, else torch.func over all M tasks."""
        if self.exact_gradient is not None:
            return self.exact_gradient(params)
        cfg = self.meta_config.replace(method="maml", alpha_low=0.0, alpha_up=0.0, executor="vmap")
        return plain_meta_gradient(self.loss, params, self.tasks, cfg).grad


# What a family can provide, as a check names it in its NEEDS, and what that is in words.
CAPABILITIES: dict[str, str] = {
    **{name: f"the constant {name} in closed form" for name in Constants.__dataclass_fields__},
    "quadratic": "a quadratic F's exact Hessian, minimiser and top eigenvector (QuadraticObjective)",
    "two_basins": "a two-basin ground truth (sharp and flat minimisers, robust objective)",
    "task_distribution": "a sampler of fresh tasks from the same distribution",
}


def provided_capabilities(problem: ProblemInstance) -> set[str]:
    """The names of ``CAPABILITIES`` the problem provides."""
    fields = {
        name
        for name in ("quadratic", "two_basins", "task_distribution")
        if getattr(problem, name) is not None
    }
    return set(problem.constants.provided()) | fields


def missing_capabilities(problem: ProblemInstance, needs: tuple[str, ...]) -> list[str]:
    """The needs (in their order) that the problem does not provide."""
    unknown = [n for n in needs if n not in CAPABILITIES]
    if unknown:
        raise ValueError(f"needs: unknown capability {unknown[0]!r}; expected one of {sorted(CAPABILITIES)}")
    have = provided_capabilities(problem)
    return [n for n in needs if n not in have]


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
        raise FamilySettingError(
            f"{family} setting {unknown[0]!r}: unknown setting; expected one of {sorted(spec)}"
        )
    resolved = {}
    for name, setting in spec.items():
        value = given.get(name, setting.default)
        if not setting.valid(value):
            raise FamilySettingError(f"{family} setting {name!r}: expected {setting.expected}, got {value!r}")
        resolved[name] = setting.convert(value)
    return resolved


FamilyBuilder = Callable[..., ProblemInstance]
FAMILIES: dict[str, FamilyBuilder] = {}
FAMILY_SETTINGS: dict[str, dict[str, Setting]] = {}


class FamilySettingError(ConfigError, UsageError):
    """A family setting is invalid or makes the family non-finite (exit 4); the message names
    the family, the setting or quantity, and what was expected."""


class NonFiniteFamilyError(RuntimeError):
    """A family at its default settings has a non-finite loss, constant or gradient: a bug in
    the family module (exit 3); the message names the family and the quantity."""


def register_family(name: str, settings: dict[str, Setting]) -> Callable[[FamilyBuilder], FamilyBuilder]:
    """Decorator: make ``build_problem(name, ...)`` call this builder; ``settings`` is its
    settings spec (defaults and validation, see ``resolve_settings``)."""

    def decorate(builder: FamilyBuilder) -> FamilyBuilder:
        if name in FAMILIES:
            raise ValueError(f"problem family {name!r} is registered twice")
        FAMILIES[name] = builder
        FAMILY_SETTINGS[name] = settings
        return builder

    return decorate


def family_names() -> list[str]:
    """Every registered family, by name."""
    from synthetic import problems  # noqa: F401  (imports every family module)

    return sorted(FAMILIES)


def build_problem(name: str, seed: int, **settings: Any) -> ProblemInstance:
    """Build family ``name`` from an explicit seed and check that it is finite.

    Unknown names and bad settings raise ``FamilySettingError`` (a UsageError). A non-finite
    loss, constant or exact gradient raises ``FamilySettingError`` when settings were given
    (they made it so) and ``NonFiniteFamilyError`` at the defaults (a bug), naming the
    quantity; also when it made the build itself crash (the verification's linear algebra).
    """
    if name not in family_names():
        raise FamilySettingError(f"problem family: unknown {name!r}; expected one of {family_names()}")
    with stage(f"family {name} (build, seed {seed})"):
        try:
            problem = FAMILIES[name](seed=seed, **settings)
        except UsageError:
            raise
        except Exception:
            require_finite(FAMILIES[name](seed=seed, **{**settings, "verify": False}), settings)
            raise
        require_finite(problem, settings)
    return problem


def require_finite(problem: ProblemInstance, given: dict[str, Any]) -> None:
    """Raise, naming the family and the first non-finite quantity, unless the task loss at
    theta0 (task 0's support and query), F(theta0), grad F(theta0) and the constants are
    finite (in that order: the loss is the usual root cause)."""
    support, query = problem.tasks.task(0)
    quantities: list[tuple[str, Any]] = [
        ("task loss at theta0 (task 0, support)", problem.loss(problem.init_params, support)),
        ("task loss at theta0 (task 0, query)", problem.loss(problem.init_params, query)),
        ("F(theta0)", problem.meta_objective(problem.init_params)),
        *((f"grad F(theta0)[{k}]", v) for k, v in problem.meta_grad(problem.init_params).items()),
        *((f"constant {k}", v) for k, v in problem.constants.provided().items()),
        *((f"constant {k}", v) for k, v in problem.reported.items()),
    ]
    for what, value in quantities:
        if not bool(torch.isfinite(torch.as_tensor(value)).all()):
            chosen = {k: v for k, v in given.items() if k != "verify"}
            if chosen:
                raise FamilySettingError(
                    f"problem family {problem.family} with settings {chosen}: {what} is not finite "
                    f"({value}); expected finite values (choose other settings)"
                )
            raise NonFiniteFamilyError(f"problem family {problem.family}: {what} is not finite ({value})")


def bound_check(
    name: str, bound: float, value: float, method: str, rtol: float = 0.0, atol: float = 0.0
) -> ConstantCheck:
    """The row 'measured value <= closed-form bound * (1 + rtol) + atol' (the tolerances only
    absorb rounding-level ties)."""
    relation = "measured <= closed_form" + (f" * (1 + {rtol:g})" if rtol else "")
    relation += f" + {atol:g}" if atol else ""
    return ConstantCheck(name, bound, value, method, value <= bound * (1 + rtol) + atol, relation)


# A closed form and the engine's autodiff of the same quantity agree to rounding (float64).
EXACT_RTOL = 1e-10


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
