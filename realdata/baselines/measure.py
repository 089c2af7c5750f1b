"""Measured baseline rows of the real-data track: the re-run of one row on its scale
(``realdata.baselines.scales``).

A row is re-run from what the CSV stores (preset, iterations, seeds, episodes, test seed,
test-time inner loop) with the project's own ``realdata.train.train`` and
``realdata.evaluate.evaluate_checkpoint``; the measured value is the mean over the row's
seeds. ``update`` also runs the scale's extra spread seeds, whose spread sets the tolerance.
Every (row, seed) run is one task of ``infra.workers`` (the pool behind the sweep's local
executor): worker processes with one intra-op thread each, ``--jobs`` of them at once. See
docs/baselines.md.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.config import ConfigError
from infra.errors import stage
from infra.provenance import config_hash, device_name, git_sha, provenance
from infra.seeding import DEFAULT_SEED
from infra.threads import cpu_threads
from infra.workers import run_in_workers
from realdata.baselines.format import SEED_RULE, Baseline, BaselinesError, Measured, error_at
from realdata.baselines.scales import BASELINE_SCALES, Scale
from realdata.defaults import MIN_TEST_EPISODES
from realdata.evaluate import evaluate_checkpoint
from realdata.presets import EVAL_INNER_LOOPS, PRESETS, TrainConfig, train_config
from realdata.stats import accuracy_ci, aggregate_seeds
from realdata.train import train

SOURCE = "reproduced here: sharpmaml baselines update --scale {scale}"


@dataclass(frozen=True)
class RowSpec:
    """What a measured row runs: ``config`` for each seed, then the fixed test episodes."""

    scale: Scale
    config: TrainConfig
    seeds: tuple[int, ...]
    n_episodes: int
    test_seed: int

    @property
    def row_id(self) -> str:
        c, p = self.config, self.config.preset
        return (
            f"{self.scale.name}:{p.dataset}-{p.ways}w{p.shots}s-{c.method}-lo{c.alpha_low:g}-up{c.alpha_up:g}"
        )

    def run_config(self, seed: int) -> TrainConfig:
        return dataclasses.replace(self.config, seed=seed)

    def config_hash(self) -> str:
        """Hash of every setting that decides the gate's number (its seeds, the test set)."""
        return config_hash(
            {
                "runs": [self.run_config(s).settings() for s in self.seeds],
                "n_episodes": self.n_episodes,
                "test_seed": self.test_seed,
            }
        )


def defined_rows(scale: Scale) -> list[RowSpec]:
    """The rows of a scale: every method, radii from the preset's alpha (update creates these)."""
    return [
        RowSpec(
            scale,
            train_config(scale.preset, method, iterations=scale.iterations),
            scale.seeds,
            scale.n_episodes,
            DEFAULT_SEED,
        )
        for method in scale.methods
    ]


def row_spec(row: Baseline, path: Path) -> RowSpec:
    """The runs a stored measured row describes; BaselinesError naming line and column if the
    row cannot be re-run with this code (unknown scale or preset, mismatching setting)."""

    def row_error(column: str, message: str) -> BaselinesError:
        return error_at(path, row.line, column, message)

    if row.scale not in BASELINE_SCALES:
        raise row_error(
            "scale", f"unknown scale {row.scale!r}; expected one of {list(BASELINE_SCALES)} or 'paper'"
        )
    if row.preset not in PRESETS:
        raise row_error("preset", f"unknown preset {row.preset!r}; expected one of {list(PRESETS)}")
    preset = PRESETS[row.preset]
    for column in ("dataset", "ways", "shots"):
        if getattr(row, column) != getattr(preset, column):
            raise row_error(
                column,
                f"expected {getattr(preset, column)!r} (preset {preset.name}), got {getattr(row, column)!r}",
            )
    if row.eval_inner_loop not in EVAL_INNER_LOOPS:
        raise row_error(
            "eval_inner_loop", f"expected one of {list(EVAL_INNER_LOOPS)}, got {row.eval_inner_loop!r}"
        )
    if row.n_episodes < MIN_TEST_EPISODES:
        raise row_error(
            "n_episodes", f"expected at least {MIN_TEST_EPISODES} test episodes, got {row.n_episodes}"
        )
    try:
        config = train_config(
            preset,
            row.method,
            alpha_low=row.alpha_low,
            alpha_up=row.alpha_up,
            iterations=row.iterations,
            eval_inner_loop=row.eval_inner_loop,
        )
    except ConfigError as exc:
        raise row_error("method", f"not a valid run ({exc})") from None
    return RowSpec(BASELINE_SCALES[row.scale], config, row.seeds, row.n_episodes, row.test_seed)


def measured_device(scale: Scale) -> str:
    """The device column: the GPU's name, or the CPU with its pinned thread count."""
    name = device_name(scale.device)
    if scale.threads is None:
        return name
    return f"{name}, {scale.threads} thread" + ("s" if scale.threads > 1 else "")


@dataclass(frozen=True)
class SeedRun:
    """One training seed of a row, as a worker runs it (plain, picklable data)."""

    row: int  # the row's index in the caller's list
    seed: int
    config: dict[str, Any]  # TrainConfig.to_dict() of this seed
    n_episodes: int
    test_seed: int
    device: str
    threads: int | None
    data_root: str | None
    scratch: str | None = None  # folder for the temporary run folder (None: the system's)


@dataclass(frozen=True)
class SeedResult:
    """How a seed's training ended and, when it completed, the per-episode test accuracies
    (fractions) of its best checkpoint; ``elapsed_s``: the worker's seconds for the seed."""

    status: str
    iteration: int
    per_episode: torch.Tensor | None
    elapsed_s: float


def run_seed(run: SeedRun) -> SeedResult:
    """Train one seed of a row, evaluate its best validation checkpoint on the fixed test
    episodes (the worker function of the gate and of ``update``)."""
    from realdata.data import worker_dataset

    started = time.perf_counter()
    config = TrainConfig.from_dict(run.config)
    device = torch.device(run.device)
    with cpu_threads(run.threads):
        data = worker_dataset(config.preset.dataset, run.data_root, config.preset.split)
        with tempfile.TemporaryDirectory(prefix="sharpmaml-baseline-", dir=run.scratch) as folder:
            result = train(config, Path(folder), device=device, data=data, progress=False)
            if result.status != "completed":
                return SeedResult(result.status, result.iteration, None, time.perf_counter() - started)
            evaluation = evaluate_checkpoint(
                result.best_checkpoint,
                n_episodes=run.n_episodes,
                test_seed=run.test_seed,
                device=device,
                data=data,
                results=None,
            )
    return SeedResult(result.status, result.iteration, evaluation.per_episode, time.perf_counter() - started)


def run_seeds(spec: RowSpec, *, spread: bool = False) -> tuple[int, ...]:
    """The seeds a measurement trains: the scale's ``spread_seeds`` (update), else the row's."""
    return tuple(spec.scale.spread_seeds if spread else spec.seeds)


def seed_runs(specs: Sequence[RowSpec], data_root: Path | None, *, spread: bool = False) -> list[SeedRun]:
    """Every (row, seed) run of a measurement, row-major."""
    return [
        SeedRun(
            i,
            seed,
            spec.run_config(seed).to_dict(),
            spec.n_episodes,
            spec.test_seed,
            spec.scale.device,
            spec.scale.threads,
            None if data_root is None else str(data_root),
        )
        for i, spec in enumerate(specs)
        for seed in run_seeds(spec, spread=spread)
    ]


def summarize(spec: RowSpec, results: dict[int, SeedResult], *, spread: bool = False) -> Measured:
    """The row's measurement from its seeds' results (keyed by seed, in any order).

    Accuracy: the mean over ``spec.seeds``; ci95: the 95% half-width over episodes of the
    per-episode accuracy averaged over those seeds; seed_std: the std (ddof=1) of single-seed
    accuracies over every seed run, the scale's ``spread_seeds`` when ``spread`` (update), else the
    gate's seeds (check); all in percent; elapsed_s: the seeds' worker seconds, summed. A seed
    whose training did not complete (diverged) gives a Measured with ``failure`` set (the first
    such seed in seed order).
    """
    seeds = run_seeds(spec, spread=spread)
    elapsed = sum(results[s].elapsed_s for s in seeds)
    failed = [s for s in seeds if results[s].per_episode is None]
    if failed:
        seed = failed[0]
        return Measured(
            math.nan,
            math.nan,
            None,
            spec.seeds,
            seeds,
            spec.n_episodes,
            spec.config_hash(),
            measured_device(spec.scale),
            elapsed,
            failure=f"training of seed {seed} {results[seed].status} at iteration "
            f"{results[seed].iteration} (non-finite meta-loss)",
        )
    spread_summary = aggregate_seeds([results[s].per_episode for s in seeds])
    episodes = accuracy_ci(torch.stack([results[s].per_episode for s in spec.seeds]).mean(0))
    return Measured(
        accuracy=100 * episodes.mean,
        ci95=100 * episodes.ci95,
        seed_std=100 * spread_summary.std if len(seeds) > 1 else None,
        seeds=spec.seeds,
        spread_seeds=seeds,
        n_episodes=episodes.n,
        config_hash=spec.config_hash(),
        device=measured_device(spec.scale),
        elapsed_s=elapsed,
    )


def measure_rows(
    specs: Sequence[RowSpec],
    data_root: Path | None,
    *,
    jobs: int,
    spread: bool = False,
    on_row: Callable[[int, Measured], None],
    action: str = "baselines check",
) -> None:
    """Measure every row: all their seeds on ``jobs`` worker processes (``infra.workers``, the
    sweep's local executor's pool), ``on_row(index, measured)`` as each row's last seed ends.

    A seed's numbers do not depend on ``jobs`` or on the order in which seeds end (each is
    trained in its own process on pinned threads, and rows are summarized in seed order). A
    worker's error is raised in the stage ``<action>, row <row id>``.
    """
    results: dict[int, dict[int, SeedResult]] = {i: {} for i in range(len(specs))}

    def finished(run: SeedRun, result: SeedResult | None, error: BaseException | None, job: str) -> None:
        spec = specs[run.row]
        if error is not None:
            with stage(f"{action}, row {spec.row_id}"):
                raise error
        results[run.row][run.seed] = result
        if len(results[run.row]) == len(run_seeds(spec, spread=spread)):
            on_row(run.row, summarize(spec, results[run.row], spread=spread))

    # The workers' run folders live in one scratch folder of this process, removed also when
    # an interrupt kills the workers (disposable: nothing resumes them) before they clean up.
    with tempfile.TemporaryDirectory(prefix="sharpmaml-gate-") as scratch:
        runs = [dataclasses.replace(r, scratch=scratch) for r in seed_runs(specs, data_root, spread=spread)]
        run_in_workers(run_seed, runs, jobs, finished, disposable=True)


def baseline_row(spec: RowSpec, measured: Measured) -> Baseline:
    """The stored row for a measurement of ``spec`` (provenance: this checkout and device)."""
    c, p = spec.config, spec.config.preset
    return Baseline(
        row_id=spec.row_id,
        scale=spec.scale.name,
        dataset=p.dataset,
        ways=p.ways,
        shots=p.shots,
        method=c.method,
        alpha_low=c.alpha_low,
        alpha_up=c.alpha_up,
        accuracy=measured.accuracy,
        ci95=measured.ci95,
        seed_std=measured.seed_std,
        n_episodes=measured.n_episodes,
        n_seeds=len(measured.seeds),
        seeds=measured.seeds,
        spread_seeds=measured.spread_seeds,
        iterations=p.iterations,
        preset=p.name,
        eval_inner_loop=c.eval_inner_loop,
        test_seed=spec.test_seed,
        source=SOURCE.format(scale=spec.scale.name),
        device=measured.device,
        git_sha=git_sha(),
        date=provenance()["date"],
        config_hash=measured.config_hash,
        tolerance_rule=SEED_RULE,
        note="",
    )


def datasets_needed(specs: Sequence[RowSpec]) -> list[str]:
    """The datasets the rows train on, each once, in order of first use."""
    return list(dict.fromkeys(spec.config.preset.dataset for spec in specs))
