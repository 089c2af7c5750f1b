"""One configuration object for every meta-learning method of the engine.

The method name fixes which perturbations are active; the radii say how large they are.
Validation happens here, before any compute, and every error names the field and what
was expected.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

METHODS: dict[str, str] = {
    "maml": "MAML, second order (Finn et al. 2017)",
    "fomaml": "first-order MAML: the inner-loop Jacobian is replaced by the identity",
    "sharp_low": "Sharp-MAML_low: SAM ascent in every inner step (radius alpha_low)",
    "sharp_up": "Sharp-MAML_up: SAM ascent on the meta-objective (radius alpha_up)",
    "sharp_both": "Sharp-MAML_both: both perturbations",
}
EXECUTORS = ("auto", "loop", "vmap")
# Which parameters the inner loop adapts (and the lower perturbation perturbs). "head" is the
# ANIL reading of a cheaper Sharp-MAML: only the parameters named ``head.*`` (the classifier).
INNER_PARAMS: dict[str, str] = {
    "all": "every parameter (MAML, Finn et al. 2017)",
    "head": "only the parameters named head.* (ANIL, Raghu et al. 2020)",
}
HEAD_PREFIX = "head."


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the expected value.

    The message starts with ``field:``; it names fields as the library does (``alpha_up``,
    never a command-line flag). Another field named in the advice is written in backquotes
    (`resume`). The command line adds each field's flag (``infra.cli``)."""


@dataclass(frozen=True)
class NumberRule:
    """What a numeric setting accepts: an integer, or a finite number, within bounds.

    The one number validation of the project: ``accepts`` for a yes/no, ``expected`` for the
    words of an error, ``require`` to raise ConfigError. A bool is never a number here.
    """

    integer: bool = False
    minimum: float | None = None
    maximum: float | None = None
    positive: bool = False
    noun: str = "number"

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` is a number of the right kind within the bounds."""
        kinds = (int,) if self.integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
            return False
        return (
            (not self.positive or value > 0)
            and (self.minimum is None or value >= self.minimum)
            and (self.maximum is None or value <= self.maximum)
        )

    @property
    def expected(self) -> str:
        """``an integer >= 1``, ``a finite radius >= 0``...: what an error says was expected."""
        limits = [
            text
            for text, active in (
                ("> 0", self.positive),
                (f">= {self.minimum}", self.minimum is not None),
                (f"<= {self.maximum}", self.maximum is not None),
            )
            if active
        ]
        kind = "an integer" if self.integer else f"a finite {self.noun}"
        return " ".join([kind, " and ".join(limits)]) if limits else kind

    def require(self, value: Any, name: str, reason: str = "") -> Any:
        """``value`` itself when accepted; else ConfigError naming ``name``, the expectation and
        the ``reason`` for it (appended to the expectation, e.g. " for a meaningful 95% CI")."""
        if not self.accepts(value):
            raise ConfigError(f"{name}: expected {self.expected}{reason}, got {value!r}")
        return value


def require_int(value: Any, name: str, minimum: int, maximum: int | None = None) -> int:
    """``value`` if it is an integer in [minimum, maximum], else ConfigError naming ``name``."""
    return NumberRule(integer=True, minimum=minimum, maximum=maximum).require(value, name)


def require_number(
    value: Any, name: str, *, minimum: float | None = None, positive: bool = False, noun: str = "number"
) -> float:
    """``value`` as a float if it is finite, > 0 when ``positive``, >= ``minimum`` when given."""
    return float(NumberRule(minimum=minimum, positive=positive, noun=noun).require(value, name))


@dataclass(frozen=True)
class MetaConfig:
    """Settings of one meta-learning method.

    Attributes:
        method: one of ``METHODS``.
        inner_steps: gradient steps of the lower level (>= 1).
        inner_lr: beta_low, the inner step size (> 0).
        alpha_low: radius of the lower (inner-loop) perturbation, used by sharp_low/sharp_both.
        alpha_up: radius of the upper (meta-level) perturbation, used by sharp_up/sharp_both.
        first_order: drop second-order terms (the inner gradients are treated as constants).
            ``fomaml`` implies it.
        diff_through_perturbation: whether the meta-gradient differentiates through the lower
            perturbation eps_m. True is what the authors' code does (docs/theory.md,
            "The algorithm"); False is textbook SAM, eps_m treated as a constant.
        executor: ``loop`` (one task at a time: exact, lowest memory, the CPU default),
            ``vmap`` (torch.func.vmap over the task batch, the GPU default) or ``auto``.
        chunk_size: tasks per vmap chunk to bound memory; None vectorises the whole batch.
        allow_tf32: allow TF32 matmuls/convolutions on CUDA. Off by default because TF32
            makes float32 meta-gradients badly inexact (tens of percent).
        eps: added to norms before normalising a perturbation direction (1e-12 as the
            authors' code).

    Three candidate readings of the paper's "computation-efficient variant" (its definition
    is not available; docs/realdata.md#cheaper-sharp-maml-candidates), each off by default:

        inner_params: ``all`` or ``head`` (ANIL): the parameters the inner loop adapts; the
            lower perturbation then lives in that subspace.
        ascent_every: k; the upper perturbation's direction is recomputed every k
            meta-iterations and reused in between (LookSAM-style; the state lives in
            ``harness.learner.MetaLearner``). 1 is Sharp-MAML_up/_both.
        lower_fraction: the fraction of adapted parameter tensors the lower perturbation
            touches (ESAM-style); the learner draws the subset each meta-iteration.
        lower_tensors: the names of the tensors the lower perturbation touches in one call
            (None: every adapted tensor); the learner sets it from ``lower_fraction``.
    """

    method: str = "maml"
    inner_steps: int = 1
    inner_lr: float = 0.1
    alpha_low: float = 0.0
    alpha_up: float = 0.0
    first_order: bool = False
    diff_through_perturbation: bool = True
    executor: str = "auto"
    chunk_size: int | None = None
    allow_tf32: bool = False
    eps: float = 1e-12
    inner_params: str = "all"
    ascent_every: int = 1
    lower_fraction: float = 1.0
    lower_tensors: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        self._validate()
        if self.method == "fomaml" and not self.first_order:
            object.__setattr__(self, "first_order", True)

    def _validate(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method: unknown method {self.method!r}; expected one of {sorted(METHODS)}")
        require_int(self.inner_steps, "inner_steps", minimum=1)
        require_number(self.inner_lr, "inner_lr", positive=True)
        require_number(self.alpha_low, "alpha_low", minimum=0, noun="radius")
        require_number(self.alpha_up, "alpha_up", minimum=0, noun="radius")
        require_number(self.eps, "eps", positive=True)
        uses_low, uses_up = self.uses_lower_perturbation, self.uses_upper_perturbation
        if not uses_low and self.alpha_low != 0:
            raise ConfigError(
                f"alpha_low: method {self.method!r} has no lower perturbation; "
                f"expected alpha_low = 0, got {self.alpha_low} (use sharp_low or sharp_both)"
            )
        if not uses_up and self.alpha_up != 0:
            raise ConfigError(
                f"alpha_up: method {self.method!r} has no upper perturbation; "
                f"expected alpha_up = 0, got {self.alpha_up} (use sharp_up or sharp_both)"
            )
        if self.executor not in EXECUTORS:
            raise ConfigError(
                f"executor: unknown executor {self.executor!r}; expected one of {list(EXECUTORS)}"
            )
        if self.chunk_size is not None:
            require_int(self.chunk_size, "chunk_size", minimum=1)
        for name in ("first_order", "diff_through_perturbation", "allow_tf32"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}: expected True or False, got {getattr(self, name)!r}")
        self._validate_candidates()

    def _validate_candidates(self) -> None:
        """The cheaper-variant options: values, and the method each one needs."""
        if self.inner_params not in INNER_PARAMS:
            raise ConfigError(
                f"inner_params: expected one of {list(INNER_PARAMS)}, got {self.inner_params!r}"
            )
        require_int(self.ascent_every, "ascent_every", minimum=1)
        NumberRule(positive=True, maximum=1, noun="fraction").require(self.lower_fraction, "lower_fraction")
        if self.lower_tensors is not None and (
            not isinstance(self.lower_tensors, tuple)
            or not self.lower_tensors
            or not all(isinstance(name, str) for name in self.lower_tensors)
        ):
            raise ConfigError(
                f"lower_tensors: expected None or a non-empty tuple of parameter names, got {self.lower_tensors!r}"
            )
        needs = (
            ("ascent_every", self.ascent_every != 1, self.uses_upper_perturbation, "= 1", "upper"),
            ("lower_fraction", self.lower_fraction != 1, self.uses_lower_perturbation, "= 1", "lower"),
            ("lower_tensors", self.lower_tensors is not None, self.uses_lower_perturbation, "None", "lower"),
        )
        for name, set_, available, default, kind in needs:
            if set_ and not available:
                methods = "sharp_up or sharp_both" if kind == "upper" else "sharp_low or sharp_both"
                raise ConfigError(
                    f"{name}: method {self.method!r} has no {kind} perturbation; expected {name} "
                    f"{default}, got {getattr(self, name)!r} (use {methods})"
                )

    @property
    def uses_lower_perturbation(self) -> bool:
        """True for the methods that perturb inside the inner loop."""
        return self.method in ("sharp_low", "sharp_both")

    @property
    def uses_upper_perturbation(self) -> bool:
        """True for the methods that run the two-pass SAM meta-step."""
        return self.method in ("sharp_up", "sharp_both")

    @property
    def perturbed_levels(self) -> int:
        """How many levels the method perturbs: 0 (MAML, FO-MAML), 1 (_low, _up), 2 (_both)."""
        return int(self.uses_lower_perturbation) + int(self.uses_upper_perturbation)

    @property
    def gradient_evaluations(self) -> float:
        """Gradient evaluations of the task loss per task and meta-iteration: the method's cost
        unit, shared by the real-data study (equal compute) and the synthetic suite (ordering
        its cells). One unit is one forward + backward pass of a task's loss: each inner step
        costs 1 (2 with the lower perturbation: the ascent gradient, then the gradient at the
        perturbed point), the outer backward through the adapted parameters costs 1, and the
        upper perturbation doubles the whole meta-gradient (SAM's two passes), or adds 1/k of it
        when its direction is recomputed every k iterations (``ascent_every``). MAML with K
        inner steps: K + 1; Sharp-MAML_both: 2 (2K + 1). A head-only inner loop counts the same
        (the unit is a pass of the task loss, whatever it differentiates).
        """
        inner = self.inner_steps * (2 if self.uses_lower_perturbation else 1)
        upper = 1 + 1 / self.ascent_every if self.uses_upper_perturbation else 1
        return (inner + 1) * upper

    def replace(self, **changes: Any) -> MetaConfig:
        """A validated copy with some fields changed (e.g. a decayed radius)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for provenance columns and config hashes."""
        return dataclasses.asdict(self)
