"""The paper's real-data settings as presets, and the validated configuration of one training run.

Every value of a preset names its source (``Preset.sources``):

- ``README``: the authors' README commands (docs/theory.md#the-papers-protocol: Mini-ImageNet);
- ``CODE``: the defaults of the authors' training scripts (pytorch-maml argparse);
- ``MAML``: Finn et al. 2017, the MAML paper (Sec. 5.2);
- ``HERE``: a choice of this project (bookkeeping, or where the sources disagree).

A run is a preset, a method and its radii, a seed and the test-time inner loop
(``TrainConfig``). ``train_config`` validates the user's choices before any compute, with
errors that name the field and the value expected.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from harness.config import (
    INNER_PARAMS,
    METHODS,
    ConfigError,
    MetaConfig,
    NumberRule,
    require_int,
    require_number,
)
from infra.provenance import config_hash
from realdata.defaults import DEFAULT_EVAL_INNER_LOOP, MAX_ITERATIONS
from realdata.splits import DATASET_SPLITS, DEFAULT_SPLITS

README = "authors' README commands (docs/theory.md#the-papers-protocol)"
CODE = "authors' code default (pytorch-maml argparse)"
MAML = "Finn et al. 2017 (MAML paper, Sec. 5.2)"
HERE = "choice of this project"

DATASETS = ("omniglot", "miniimagenet")
# Test-time inner loop: "same" adapts exactly as in training (the lower perturbation included
# for sharp_low/sharp_both, as the authors' lower/test.py); "plain" drops it (as both/test.py).
EVAL_INNER_LOOPS = ("same", "plain")


def _require_choice(value: Any, name: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}: expected one of {list(choices)}, got {value!r}")


# The candidate readings of a cheaper Sharp-MAML, off by default (docs/realdata.md).
CANDIDATE_DEFAULTS: dict[str, Any] = {"inner_params": "all", "ascent_every": 1, "lower_fraction": 1.0}


@dataclass(frozen=True)
class Preset:
    """Data, model and optimisation settings of one benchmark (one row of a paper table).

    ``alpha`` is the radius every active perturbation gets unless a run sets its own (the
    authors' one ``--alpha`` flag sets both). ``split`` names which classes meta-train,
    meta-validate and meta-test (``realdata.splits``; None: the dataset's default, also for
    configs stored before splits were recorded). ``train_classes`` keeps only the first n
    meta-training classes (None: all). Validation runs every ``val_every`` iterations on
    ``val_episodes`` fixed validation episodes; the "last" checkpoint is written then too.
    ``inner_params``, ``ascent_every`` and ``lower_fraction`` are the engine's candidate
    readings of a cheaper Sharp-MAML (``harness.config.MetaConfig``,
    docs/realdata.md#cheaper-sharp-maml-candidates), off in every preset: ``--set`` turns
    them on, and at their defaults they stay out of a run's hash.
    """

    name: str
    description: str
    dataset: str
    ways: int
    shots: int
    queries: int
    meta_batch: int
    inner_steps: int
    test_inner_steps: int
    inner_lr: float
    meta_lr: float
    iterations: int
    alpha: float
    filters: int
    val_every: int
    val_episodes: int
    log_every: int
    train_classes: int | None = None
    sources: dict[str, str] = field(default_factory=dict)
    split: str | None = None
    inner_params: str = "all"
    ascent_every: int = 1
    lower_fraction: float = 1.0

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ConfigError(f"dataset: expected one of {list(DATASETS)}, got {self.dataset!r}")
        if self.split is None:  # frozen: the one place a default is filled in
            object.__setattr__(self, "split", DEFAULT_SPLITS[self.dataset])
        _require_choice(self.split, "split", DATASET_SPLITS[self.dataset])
        for name in (
            "ways",
            "shots",
            "queries",
            "meta_batch",
            "inner_steps",
            "test_inner_steps",
            "iterations",
            "filters",
            "val_every",
            "log_every",
        ):
            require_int(getattr(self, name), name, minimum=1)
        require_int(self.iterations, "iterations", minimum=1, maximum=MAX_ITERATIONS)
        require_int(self.val_episodes, "val_episodes", minimum=2)
        if self.train_classes is not None:
            require_int(self.train_classes, "train_classes", minimum=self.ways)
        for name in ("inner_lr", "meta_lr"):
            require_number(getattr(self, name), name, positive=True)
        require_number(self.alpha, "alpha", minimum=0, noun="radius")
        _require_choice(self.inner_params, "inner_params", tuple(INNER_PARAMS))
        require_int(self.ascent_every, "ascent_every", minimum=1)
        NumberRule(positive=True, maximum=1, noun="fraction").require(self.lower_fraction, "lower_fraction")

    def candidate_columns(self) -> dict[str, Any]:
        """The three candidate settings, defaults included (columns of metrics and results rows)."""
        return {name: getattr(self, name) for name in CANDIDATE_DEFAULTS}

    def replace(self, **changes: Any) -> Preset:
        """A validated copy with some fields changed (e.g. fewer iterations)."""
        return dataclasses.replace(self, **changes)


def _sources(**overrides: str) -> dict[str, str]:
    """Per-field sources: bookkeeping fields are this project's choice unless overridden."""
    base = {
        name: HERE
        for name in ("val_every", "val_episodes", "log_every", "train_classes", *CANDIDATE_DEFAULTS)
    }
    return {**base, **overrides}


_OMNIGLOT_5WAY = dict(
    dataset="omniglot",
    ways=5,
    queries=15,
    meta_batch=32,
    inner_steps=1,
    test_inner_steps=3,
    inner_lr=0.4,
    meta_lr=1e-3,
    iterations=60_000,
    alpha=0.05,
    filters=64,
    val_every=1000,
    val_episodes=500,
    log_every=100,
    sources=_sources(
        ways=MAML,
        shots=MAML,
        queries=CODE + " (--num-shots-test 15; MAML used K queries)",
        meta_batch=MAML,
        inner_steps=MAML,
        test_inner_steps=MAML,
        inner_lr=MAML,
        meta_lr=CODE,
        iterations=MAML,
        alpha=CODE + " (--alpha 0.05; the paper's Omniglot radius is not available)",
        filters=MAML + " and " + CODE,
    ),
)
_OMNIGLOT_20WAY = dict(
    _OMNIGLOT_5WAY,
    ways=20,
    meta_batch=16,
    inner_steps=5,
    test_inner_steps=5,
    inner_lr=0.1,
)
_MINI = dict(
    dataset="miniimagenet",
    ways=5,
    queries=15,
    meta_batch=4,
    inner_steps=5,
    test_inner_steps=10,
    inner_lr=0.01,
    meta_lr=1e-3,
    iterations=60_000,
    alpha=0.0005,
    filters=32,
    val_every=1000,
    val_episodes=500,
    log_every=100,
    sources=_sources(
        ways=README,
        shots=README,
        queries=README,
        meta_batch=README + " (MAML: 2 for 5-shot)",
        inner_steps=README,
        test_inner_steps=MAML,
        inner_lr=MAML + " (the code default is 0.1)",
        meta_lr=README,
        iterations=README + " (600 epochs x 100 batches)",
        alpha=README,
        filters=MAML + " (the authors' code uses 64)",
    ),
)

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("omniglot-5w1s", "Omniglot 5-way 1-shot (MAML protocol)", shots=1, **_OMNIGLOT_5WAY),
        Preset("omniglot-5w5s", "Omniglot 5-way 5-shot (MAML protocol)", shots=5, **_OMNIGLOT_5WAY),
        Preset("omniglot-20w1s", "Omniglot 20-way 1-shot (MAML protocol)", shots=1, **_OMNIGLOT_20WAY),
        Preset("omniglot-20w5s", "Omniglot 20-way 5-shot (MAML protocol)", shots=5, **_OMNIGLOT_20WAY),
        Preset("mini-5w1s", "Mini-ImageNet 5-way 1-shot (paper Table 1)", shots=1, **_MINI),
        Preset("mini-5w5s", "Mini-ImageNet 5-way 5-shot (paper Table 1)", shots=5, **_MINI),
        Preset(
            "ci",
            "CPU smoke benchmark: Omniglot 5-way 1-shot, small Conv4, 400 training classes",
            dataset="omniglot",
            ways=5,
            shots=1,
            queries=5,
            meta_batch=8,
            inner_steps=1,
            test_inner_steps=3,
            inner_lr=0.4,
            meta_lr=3e-3,
            iterations=300,
            alpha=0.05,
            filters=32,
            val_every=100,
            val_episodes=100,
            log_every=25,
            train_classes=400,
            sources=_sources(
                **{
                    k: HERE
                    for k in (
                        "ways",
                        "shots",
                        "queries",
                        "meta_batch",
                        "iterations",
                        "filters",
                        "meta_lr",
                        "alpha",
                    )
                },
                inner_steps=MAML,
                test_inner_steps=MAML,
                inner_lr=MAML,
            ),
        ),
        Preset(
            "ci-20w1s",
            "CPU-sized Omniglot 20-way 1-shot: small Conv4, 2 queries, 4 tasks, 1 inner step",
            dataset="omniglot",
            ways=20,
            shots=1,
            queries=2,
            meta_batch=4,
            inner_steps=1,
            test_inner_steps=3,
            inner_lr=0.4,
            meta_lr=3e-3,
            iterations=300,
            alpha=0.05,
            filters=32,
            val_every=100,
            val_episodes=100,
            log_every=25,
            sources=_sources(
                **{
                    k: HERE
                    for k in (
                        "shots",
                        "queries",
                        "meta_batch",
                        "inner_steps",
                        "test_inner_steps",
                        "inner_lr",
                        "iterations",
                        "filters",
                        "meta_lr",
                        "alpha",
                    )
                },
                ways=MAML,
            ),
        ),
    )
}
# Fields ``--set`` may change: every setting, not the preset's identity or its labels.
FIXED_FIELDS = ("name", "description", "sources", "dataset")
OVERRIDABLE = tuple(f.name for f in dataclasses.fields(Preset) if f.name not in FIXED_FIELDS)


def _parse_value(key: str, text: str, annotation: str) -> Any:
    """``text`` as the type of preset field ``key`` (its annotation: int, float, str, or None)."""
    if "None" in annotation and text.lower() == "none":
        return None
    for kind, parse, expected in ((int, int, "an integer"), (float, float, "a number"), (str, str, "")):
        if kind.__name__ in annotation:
            try:
                return parse(text)
            except ValueError:
                raise ConfigError(f"--set {key}={text}: expected {expected}, got {text!r}") from None
    raise ConfigError(f"--set {key}={text}: field of unknown type {annotation}")  # a new Preset field


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["ways=20", "split=lake"]`` -> typed values; ConfigError for an unknown key or a bad
    value (ranges are checked when the preset is built: ``override_preset``)."""
    annotations = {f.name: str(f.type) for f in dataclasses.fields(Preset)}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"--set {item}: expected KEY=VALUE, e.g. --set ways=20")
        if key not in OVERRIDABLE:
            raise ConfigError(f"--set {item}: unknown key {key!r}; expected one of {list(OVERRIDABLE)}")
        if key in out:
            raise ConfigError(f"--set {item}: {key} is set twice; expected each key once")
        out[key] = _parse_value(key, text.strip(), annotations[key])
    return out


def override_preset(preset: Preset, overrides: dict[str, Any]) -> Preset:
    """``preset`` with ``overrides`` applied and validated; errors name ``--set``."""
    unknown = sorted(set(overrides) - set(OVERRIDABLE))
    if unknown:
        raise ConfigError(f"--set: unknown key(s) {unknown}; expected some of {list(OVERRIDABLE)}")
    try:
        return preset.replace(**overrides)
    except ConfigError as exc:
        raise ConfigError(f"--set ({', '.join(f'{k}={v}' for k, v in overrides.items())}): {exc}") from None


def preset_changes(preset: Preset) -> dict[str, Any]:
    """The ``--set`` changes that turn the registered preset of ``preset``'s name into it, sorted
    by key; the iteration budget is left out (it has its own flag, and a run keeps its identity
    when resumed to a larger budget). Empty for a registered preset or one with its own name."""
    base = PRESETS.get(preset.name)
    if base is None:
        return {}
    keys = sorted(k for k in OVERRIDABLE if k != "iterations" and getattr(preset, k) != getattr(base, k))
    return {k: getattr(preset, k) for k in keys}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run's numbers (stored in every checkpoint).

    The seed decides the initial parameters and the training episodes, the same for every
    method (common random numbers); the validation and test episodes do not depend on it.
    """

    preset: Preset
    method: str
    alpha_low: float
    alpha_up: float
    seed: int = 0
    eval_inner_loop: str = DEFAULT_EVAL_INNER_LOOP
    executor: str = "auto"

    def __post_init__(self) -> None:
        _require_choice(self.method, "method", tuple(METHODS))
        require_int(self.seed, "seed", minimum=0)
        _require_choice(self.eval_inner_loop, "eval_inner_loop", EVAL_INNER_LOOPS)
        self.meta_config()  # the engine's own validation of method, radii and executor

    def meta_config(self) -> MetaConfig:
        """The engine's config for the training meta-step."""
        p = self.preset
        return MetaConfig(
            method=self.method,
            inner_steps=p.inner_steps,
            inner_lr=p.inner_lr,
            alpha_low=self.alpha_low,
            alpha_up=self.alpha_up,
            executor=self.executor,
            inner_params=p.inner_params,
            ascent_every=p.ascent_every,
            lower_fraction=p.lower_fraction,
        )

    def eval_meta_config(self, eval_inner_loop: str | None = None) -> MetaConfig:
        """The engine's config for test-time adaptation (validation and evaluation).

        ``test_inner_steps`` steps of size ``inner_lr``, adapting the parameters training
        adapts (``inner_params``); with ``eval_inner_loop="same"`` the lower perturbation of
        sharp_low/sharp_both is kept (on every adapted tensor, whatever ``lower_fraction``:
        a random subset would make evaluation random), with "plain" it is not.
        """
        mode = self.eval_inner_loop if eval_inner_loop is None else eval_inner_loop
        _require_choice(mode, "eval_inner_loop", EVAL_INNER_LOOPS)
        perturbed = mode == "same" and self.meta_config().uses_lower_perturbation
        return MetaConfig(
            method="sharp_low" if perturbed else "maml",
            inner_steps=self.preset.test_inner_steps,
            inner_lr=self.preset.inner_lr,
            alpha_low=self.alpha_low if perturbed else 0.0,
            executor=self.executor,
            inner_params=self.preset.inner_params,
        )

    @property
    def run_name(self) -> str:
        """Name of the run: preset, method, radii, seed (a sweep's run id)."""
        return f"{self.preset.name}-{self.method}-lo{self.alpha_low:g}-up{self.alpha_up:g}-s{self.seed}"

    @property
    def folder_name(self) -> str:
        """Default folder name of the run: ``run_name`` with the preset's ``--set`` changes
        after its name (``ci+split=lake+ways=20-maml-...``), so changed runs never share one."""
        changes = "".join(f"+{k}={v}" for k, v in preset_changes(self.preset).items())
        return self.run_name.replace(self.preset.name, self.preset.name + changes, 1)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (strings, numbers, None), safe under ``weights_only=True``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of ``to_dict`` (validated again)."""
        fields = dict(data)
        fields["preset"] = Preset(**fields["preset"])
        return cls(**fields)

    def settings(self) -> dict[str, Any]:
        """``to_dict`` without the preset's labels (description, sources): what decides numbers.

        The dataset's default split is left out, so configs from before splits were recorded
        keep their hash (the stored baselines' ``config_hash`` among them)."""
        data = self.to_dict()
        data["preset"] = {k: v for k, v in data["preset"].items() if k not in ("description", "sources")}
        if data["preset"]["split"] == DEFAULT_SPLITS[self.preset.dataset]:
            del data["preset"]["split"]
        for name, default in CANDIDATE_DEFAULTS.items():  # likewise for configs from before them
            if data["preset"][name] == default:
                del data["preset"][name]
        return data

    def hash(self) -> str:
        """Short stable hash of the settings (the ``config_hash`` column)."""
        return config_hash(self.settings())


def train_config(
    preset: str | Preset,
    method: str,
    *,
    alpha_low: float | None = None,
    alpha_up: float | None = None,
    iterations: int | None = None,
    seed: int = 0,
    eval_inner_loop: str = DEFAULT_EVAL_INNER_LOOP,
    overrides: dict[str, Any] | None = None,
) -> TrainConfig:
    """A validated run config; errors name the field (``alpha_low``...) and the value expected.

    ``overrides`` change preset fields (``--set``, parsed by ``parse_overrides``) before the
    radii are resolved, so ``alpha`` may be one of them. A radius left as None is the preset's
    ``alpha`` for a perturbation the method uses and 0 otherwise; an explicit non-zero radius
    for a perturbation the method lacks is an error.
    """
    if isinstance(preset, str):
        _require_choice(preset, "preset", tuple(PRESETS))
        preset = PRESETS[preset]
    if overrides:
        preset = override_preset(preset, overrides)
    _require_choice(method, "method", tuple(METHODS))
    probe = MetaConfig(method=method)
    radii = {}
    for name, value, used in (
        ("alpha_low", alpha_low, probe.uses_lower_perturbation),
        ("alpha_up", alpha_up, probe.uses_upper_perturbation),
    ):
        if value is None:
            radii[name] = preset.alpha if used else 0.0
            continue
        require_number(value, name, minimum=0, noun="radius")
        if not used and value != 0:
            kind = "lower" if name == "alpha_low" else "upper"
            raise ConfigError(
                f"{name}: method {method!r} has no {kind} perturbation; expected `{name}` left "
                f"unset or 0, got {value} (methods with it: "
                f"{'sharp_low, sharp_both' if kind == 'lower' else 'sharp_up, sharp_both'})"
            )
        radii[name] = float(value)
    if iterations is not None:
        preset = preset.replace(iterations=iterations)
    return TrainConfig(preset, method, seed=seed, eval_inner_loop=eval_inner_loop, **radii)
