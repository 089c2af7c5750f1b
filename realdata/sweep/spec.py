"""The sweep spec: a TOML file naming a preset, methods, radii, seeds and the evaluation.

Validated before any compute; every error names the file and the key (``SpecError``, exit 4).
A spec expands to one ``RunTask`` per (method or variant, radii, seed): the existing ``train`` +
``evaluate`` of the real-data track with its own run folder. A variant is a method run with
other engine options (``realdata.presets.CANDIDATE_DEFAULTS``) under a label, so candidate
readings and the plain methods share one sweep, the same seeds, and one study. See docs/realdata.md ("Sweeps").

    [sweep]
    preset = "ci"                      # a name of realdata.presets.PRESETS
    methods = ["maml", "sharp_both"]   # default: all five
    radii = [0.05, 0.01]               # alpha of every perturbation a method uses
    method_radii = { sharp_low = [0.05] }  # optional: another radius grid for some methods
    seeds = [0, 1, 2, 3]
    iterations = 200                   # default: the preset's
    equal_compute = true               # MAML also trained to Sharp-MAML_both's gradient budget
    executor = "vmap"                  # tasks and test episodes: "auto" (vmap on CUDA, loop
                                       # elsewhere), "loop" or "vmap" (5x faster evaluation on CPU)
    [preset]                           # optional overrides of preset fields (validated)
    val_every = 50
    [evaluation]
    episodes = 600                     # fixed test episodes per evaluation (>= 600)
    test_seed = 20220606
    inner_loops = ["same", "plain"]    # test-time inner loops; the first is the primary one
    curve_every = 100                  # also evaluate last.pt every N iterations (0: only at the end)
    [variants.sharp_up_k5]             # optional: named candidate variants (docs/realdata.md)
    method = "sharp_up"                # the method it derives from (its parent, in sweep.methods)
    ascent_every = 5                   # engine options: inner_params, ascent_every, lower_fraction
    radii = [0.05]                     # optional: a subset of the parent's radii (default: all)
    [data]
    root = "/path/to/data"             # default: $SHARPMAML_DATA or ../shared/data
    [slurm]                            # read by --executor slurm (flags override)
    partition = "gpu"
    gpus_per_job = 1
    cpus_per_job = 4
    time_min = 240
    array_parallelism = 32
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import METHODS, ConfigError, MetaConfig
from infra.errors import UsageError
from infra.seeding import DEFAULT_SEED
from realdata.datasets.episodes import MIN_TEST_EPISODES
from realdata.presets import (
    CANDIDATE_DEFAULTS,
    EVAL_INNER_LOOPS,
    PRESETS,
    Preset,
    TrainConfig,
    train_config,
)

SECTIONS = ("sweep", "preset", "evaluation", "data", "slurm", "variants")
VARIANT_OPTIONS = tuple(CANDIDATE_DEFAULTS)
VARIANT_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
SLURM_KEYS = {
    "partition": str,
    "gpus_per_job": int,
    "cpus_per_job": int,
    "time_min": int,
    "array_parallelism": int,
    "cluster": str,
}
SLURM_CLUSTERS = ("slurm", "local", "debug")


class SpecError(UsageError):
    """The sweep spec is missing or invalid; the message names the file and the key."""


@dataclass(frozen=True)
class SlurmOptions:
    """Resources of one SLURM job (None: submitit's / the cluster's default)."""

    partition: str | None = None
    gpus_per_job: int | None = None
    cpus_per_job: int | None = None
    time_min: int | None = None
    array_parallelism: int | None = None
    cluster: str = "slurm"

    def merged(self, **flags: Any) -> SlurmOptions:
        """These options with every flag that is not None in place of the spec's value."""
        return dataclasses.replace(self, **{k: v for k, v in flags.items() if v is not None})


@dataclass(frozen=True)
class Variant:
    """A named candidate: its parent method run with other engine options (``options``: keys of
    ``CANDIDATE_DEFAULTS``) at ``radii`` (None: every radius of the parent's grid)."""

    label: str
    method: str
    options: dict[str, Any]
    radii: tuple[float, ...] | None = None


@dataclass(frozen=True)
class SweepRun:
    """One (variant, config) of a sweep; ``variant`` is '' for a plain method."""

    variant: str
    config: TrainConfig

    @property
    def run_id(self) -> str:
        """The config's run name, with ``+label`` after the preset for a variant."""
        name = self.config.run_name
        if not self.variant:
            return name
        preset = self.config.preset.name
        return name.replace(preset, f"{preset}+{self.variant}", 1)


@dataclass(frozen=True)
class RunTask:
    """One run of a sweep: what a worker needs (plain, picklable data)."""

    run_id: str
    config: dict[str, Any]  # TrainConfig.to_dict(), the full training budget included
    run_dir: str
    points: tuple[int, ...]  # iterations at which last.pt is evaluated on the test episodes
    final_points: tuple[int, ...]  # the points evaluated with every test-time inner loop
    inner_loops: tuple[str, ...]
    episodes: int
    test_seed: int
    data_root: str | None
    threads: int | None = 1  # intra-op CPU threads (None: leave torch's default)
    device: str | None = "cpu"  # None: CUDA when present (realdata.device)
    variant: str = ""  # the spec's variant label ('' for a plain method)

    @property
    def train_config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.config)


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep spec (see the module docstring for the file format)."""

    path: Path
    preset: Preset
    methods: tuple[str, ...]
    radii: tuple[float, ...]
    method_radii: dict[str, tuple[float, ...]]
    seeds: tuple[int, ...]
    iterations: int
    equal_compute: bool
    executor: str
    episodes: int
    test_seed: int
    inner_loops: tuple[str, ...]
    curve_every: int
    data_root: Path | None
    slurm: SlurmOptions = field(default_factory=SlurmOptions)
    variants: tuple[Variant, ...] = ()

    def method_grid(self, method: str) -> tuple[float | None, ...]:
        """The radii a method runs at: (None,) for a method without a perturbation."""
        perturbed = MetaConfig(method=method).perturbed_levels > 0
        return self.method_radii.get(method, self.radii) if perturbed else (None,)

    def _configs(self, method: str, seed: int, grid: tuple[float | None, ...], options: dict[str, Any]):
        probe = MetaConfig(method=method)
        for alpha in grid:
            config = train_config(
                self.preset,
                method,
                iterations=self.iterations,
                seed=seed,
                eval_inner_loop=self.inner_loops[0],
                overrides=options,
                **({} if alpha is None else _radii(probe, alpha)),
            )
            yield dataclasses.replace(config, executor=self.executor)

    def runs(self) -> list[SweepRun]:
        """One run per (method, radius, seed) and per (variant, radius, seed), seed-major: a
        sweep stopped early leaves whole seeds (every method and variant) for the paired
        comparison. Methods without a perturbation get one radius."""
        out = []
        for seed in self.seeds:
            for method in self.methods:
                out += [SweepRun("", c) for c in self._configs(method, seed, self.method_grid(method), {})]
            for v in self.variants:
                grid = v.radii or self.method_grid(v.method)
                out += [SweepRun(v.label, c) for c in self._configs(v.method, seed, grid, v.options)]
        return out

    def configs(self) -> list[TrainConfig]:
        """The config of every run, in the order of ``runs``."""
        return [run.config for run in self.runs()]

    def equal_compute_iterations(self) -> int | None:
        """MAML's iterations at Sharp-MAML_both's gradient budget (None when not asked)."""
        if not self.equal_compute:
            return None
        base = train_config(self.preset, "maml").meta_config()
        both = train_config(self.preset, "sharp_both").meta_config()
        return math.ceil(self.iterations * both.gradient_evaluations / base.gradient_evaluations)

    def tasks(self, sweep_dir: Path) -> list[RunTask]:
        """The runs of the sweep, each with its run folder under ``sweep_dir/runs``."""
        extended = self.equal_compute_iterations()
        tasks = []
        for run in self.runs():
            config = run.config
            plain_maml = config.method == "maml" and not run.variant
            budget = extended if (extended and plain_maml) else self.iterations
            finals = (self.iterations,) + ((budget,) if budget != self.iterations else ())
            curve = range(self.curve_every, budget, self.curve_every) if self.curve_every else ()
            config = dataclasses.replace(config, preset=config.preset.replace(iterations=budget))
            tasks.append(
                RunTask(
                    run_id=run.run_id,
                    config=config.to_dict(),
                    run_dir=str(sweep_dir / "runs" / run.run_id),
                    points=tuple(sorted({*curve, *finals})),
                    final_points=finals,
                    inner_loops=self.inner_loops,
                    episodes=self.episodes,
                    test_seed=self.test_seed,
                    data_root=None if self.data_root is None else str(self.data_root),
                    variant=run.variant,
                )
            )
        return tasks


def _radii(probe: MetaConfig, alpha: float) -> dict[str, float]:
    radii = {}
    if probe.uses_lower_perturbation:
        radii["alpha_low"] = alpha
    if probe.uses_upper_perturbation:
        radii["alpha_up"] = alpha
    return radii


class _Reader:
    """Typed access to the spec's tables; every error names the file and the key."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path, self.data = path, data

    def error(self, key: str, message: str) -> SpecError:
        return SpecError(f"{self.path}: {key}: {message}")

    def table(self, name: str) -> dict[str, Any]:
        value = self.data.get(name, {})
        if not isinstance(value, dict):
            raise self.error(f"[{name}]", f"expected a table, got {value!r}")
        return value

    def check_keys(self, section: str, allowed: tuple[str, ...] | dict[str, Any]) -> None:
        unknown = sorted(set(self.table(section)) - set(allowed))
        if unknown:
            raise self.error(f"{section}.{unknown[0]}", f"unknown key; expected one of {sorted(allowed)}")

    def get(self, section: str, key: str, kind: type, default: Any = None, required: bool = False) -> Any:
        table = self.table(section)
        if key not in table:
            if required:
                raise self.error(f"{section}.{key}", "missing; it is required")
            return default
        value = table[key]
        ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok:
            raise self.error(f"{section}.{key}", f"expected {kind.__name__}, got {value!r}")
        return value

    def radii(self, key: str, values: Any) -> tuple[float, ...]:
        """A grid of radii: a non-empty list of finite numbers > 0, largest first."""
        if (
            not isinstance(values, list)
            or not values
            or not all(
                isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a) and a > 0
                for a in values
            )
        ):
            raise self.error(key, f"expected a non-empty list of radii > 0, got {values!r}")
        return tuple(sorted({float(a) for a in values}, reverse=True))

    def int_list(self, section: str, key: str, default: list[Any] | None = None) -> list[int]:
        values = self.get(section, key, list, default, required=default is None)
        if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
            raise self.error(
                f"{section}.{key}", f"expected a non-empty list of integers >= 0, got {values!r}"
            )
        if len(set(values)) != len(values):
            raise self.error(f"{section}.{key}", f"expected distinct values, got {values!r}")
        return values

    def choices(
        self, section: str, key: str, options: tuple[str, ...], default: list[str]
    ) -> tuple[str, ...]:
        values = self.get(section, key, list, default)
        bad = [v for v in values if v not in options]
        if not values or bad or len(set(values)) != len(values):
            raise self.error(
                f"{section}.{key}", f"expected distinct names out of {list(options)}, got {values!r}"
            )
        return tuple(values)


def _variant(r: _Reader, label: str, table: Any, spec: SweepSpec) -> Variant:
    """One ``[variants.LABEL]`` table, checked against the spec's methods and radii."""
    key = f"variants.{label}"
    if not isinstance(table, dict):
        raise r.error(key, f"expected a table (method and engine options), got {table!r}")
    if not VARIANT_LABEL.fullmatch(label) or label in METHODS:
        raise r.error(
            key, "expected a label of letters, digits, '_', '.', '-' (not a method's name) as the table name"
        )
    allowed = ("method", "radii", *VARIANT_OPTIONS)
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise r.error(f"{key}.{unknown[0]}", f"unknown key; expected one of {sorted(allowed)}")
    method = table.get("method")
    if method not in spec.methods:
        raise r.error(
            f"{key}.method",
            f"expected the method it derives from, one of sweep.methods {list(spec.methods)}, got {method!r}",
        )
    options = {k: table[k] for k in VARIANT_OPTIONS if k in table}
    if all(v == CANDIDATE_DEFAULTS[k] for k, v in options.items()):
        raise r.error(
            key, f"sets no engine option away from its default; expected some of {list(VARIANT_OPTIONS)}"
        )
    radii = None
    if "radii" in table:
        radii = r.radii(f"{key}.radii", table["radii"])
        outside = sorted(set(radii) - set(a for a in spec.method_grid(method) if a is not None))
        if outside:
            raise r.error(
                f"{key}.radii", f"{outside} not among {method}'s radii {list(spec.method_grid(method))}"
            )
    variant = Variant(label, method, options, radii)
    try:
        dataclasses.replace(spec, variants=(variant,)).runs()
    except (ConfigError, TypeError) as exc:
        raise r.error(key, f"invalid engine option ({exc})") from None
    return variant


def load_spec(path: Path | str) -> SweepSpec:
    """Read and validate a sweep spec; SpecError naming the file and key on any problem."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise SpecError(f"{path}: sweep spec not found; expected a TOML file (docs/realdata.md)") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SpecError(f"{path}: not a readable TOML file ({exc})") from None
    r = _Reader(path, data)
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise r.error(f"[{unknown[0]}]", f"unknown section; expected some of {list(SECTIONS)}")
    r.check_keys(
        "sweep",
        ("preset", "methods", "radii", "method_radii", "seeds", "iterations", "equal_compute", "executor"),
    )
    r.check_keys("evaluation", ("episodes", "test_seed", "inner_loops", "curve_every"))
    r.check_keys("data", ("root",))
    r.check_keys("slurm", SLURM_KEYS)
    name = r.get("sweep", "preset", str, required=True)
    if name not in PRESETS:
        raise r.error("sweep.preset", f"unknown preset {name!r}; expected one of {list(PRESETS)}")
    overrides = r.table("preset")
    fields = {f.name for f in dataclasses.fields(Preset)} - {"name", "description", "sources"}
    r.check_keys("preset", tuple(sorted(fields)))
    try:
        preset = PRESETS[name].replace(**overrides)
    except (ConfigError, TypeError) as exc:
        raise r.error("preset", f"invalid override ({exc})") from None
    radii = r.radii("sweep.radii", r.get("sweep", "radii", list, [preset.alpha]))
    per_method = r.get("sweep", "method_radii", dict, {})
    for method, grid in per_method.items():
        if method not in METHODS:
            raise r.error(f"sweep.method_radii.{method}", f"unknown method; expected one of {list(METHODS)}")
        per_method[method] = r.radii(f"sweep.method_radii.{method}", grid)
    iterations = r.get("sweep", "iterations", int, preset.iterations)
    episodes = r.get("evaluation", "episodes", int, MIN_TEST_EPISODES)
    curve_every = r.get("evaluation", "curve_every", int, 0)
    for key, value, minimum in (
        ("sweep.iterations", iterations, 1),
        ("evaluation.episodes", episodes, MIN_TEST_EPISODES),
        ("evaluation.curve_every", curve_every, 0),
    ):
        if value < minimum:
            raise r.error(key, f"expected an integer >= {minimum}, got {value}")
    slurm = {k: r.get("slurm", k, kind) for k, kind in SLURM_KEYS.items()}
    if slurm["cluster"] is not None and slurm["cluster"] not in SLURM_CLUSTERS:
        raise r.error("slurm.cluster", f"expected one of {list(SLURM_CLUSTERS)}, got {slurm['cluster']!r}")
    root = r.get("data", "root", str)
    spec = SweepSpec(
        path=path,
        preset=preset.replace(iterations=iterations),
        methods=r.choices("sweep", "methods", tuple(METHODS), list(METHODS)),
        radii=radii,
        method_radii=per_method,
        seeds=tuple(r.int_list("sweep", "seeds", [0])),
        iterations=iterations,
        equal_compute=r.get("sweep", "equal_compute", bool, False),
        executor=r.get("sweep", "executor", str, "auto"),
        episodes=episodes,
        test_seed=r.get("evaluation", "test_seed", int, DEFAULT_SEED),
        inner_loops=r.choices("evaluation", "inner_loops", EVAL_INNER_LOOPS, ["same", "plain"]),
        curve_every=curve_every,
        data_root=None if root is None else (path.parent / root).resolve(),
        slurm=SlurmOptions(**{k: v for k, v in slurm.items() if v is not None}),
    )
    if spec.equal_compute and "maml" not in spec.methods:
        raise r.error("sweep.equal_compute", "needs 'maml' in sweep.methods (MAML is the one trained longer)")
    try:
        spec.configs()
    except ConfigError as exc:
        raise r.error("sweep", str(exc)) from None
    variants = tuple(_variant(r, label, table, spec) for label, table in r.table("variants").items())
    return dataclasses.replace(spec, variants=variants)
