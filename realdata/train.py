"""Meta-training of Conv4 on Omniglot / Mini-ImageNet with any method of the engine.

One run = one ``TrainConfig``. The seed decides the initial parameters and the stream of
training episodes (``infra.seeding.derive_seed``), identical for every method. Every
``val_every`` iterations the model is adapted on fixed validation episodes with the test-time
inner loop; the best validation accuracy gives ``best.pt``, and ``last.pt`` holds the whole
state (parameters, Adam, sampler position, RNG states), so ``resume=True`` continues bitwise as
an uninterrupted run would (on the same device). Metrics go to ``metrics.parquet`` in the run
folder, with provenance columns on every row.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.func import vmap
from tqdm.auto import tqdm

from harness.config import ConfigError, MetaConfig, NumberRule, require_int
from harness.learner import MetaLearner, adam
from harness.meta import adapt, resolve_executor
from harness.precision import float32_precision
from harness.tasks import TaskBatch
from harness.tree import Params, tree_detach
from infra.interrupts import stop_requests
from infra.provenance import provenance
from infra.seeding import DEFAULT_SEED, derive_seed, generator
from infra.store import read_table, require_writable, write_table
from realdata.checkpoint import load_checkpoint, restore_rng_state, rng_state, save_checkpoint
from realdata.data import DataOptions, load_dataset
from realdata.datasets import ClassImages, DatasetError, DatasetSplits, EpisodeSampler, fixed_test_episodes
from realdata.defaults import CHECKPOINT_MINUTES, MAX_ITERATIONS, RUNS_ROOT
from realdata.device import resolve_device
from realdata.models import Conv4Loss, Conv4Spec, conv4_init
from realdata.presets import TrainConfig
from realdata.stats import accuracy_ci

LAST, BEST, METRICS = "last.pt", "best.pt", "metrics.parquet"
VAL_BATCH = 25  # validation episodes adapted at a time


def model_spec(config: TrainConfig, images: ClassImages) -> Conv4Spec:
    """Conv4 for the data's image shape, the preset's filters and the number of ways."""
    channels, height, width = images.image_shape
    if height != width:
        raise DatasetError(f"images: expected square images, got {height}x{width}")
    return Conv4Spec(
        in_channels=channels, image_size=height, filters=config.preset.filters, num_classes=config.preset.ways
    )


def episode_accuracies(
    loss: Conv4Loss,
    params: Params,
    batches: Iterable[TaskBatch],
    cfg: MetaConfig,
    device: torch.device,
) -> torch.Tensor:
    """Query accuracy of each episode after adapting on its support set with ``cfg`` (CPU float64).

    Episodes run through vmap on CUDA and one at a time elsewhere (``cfg.executor`` "auto").
    """

    def accuracy(p: Params, support: Any, query: Any) -> torch.Tensor:
        x, y = query
        logits = loss.logits(adapt(loss, p, support, cfg), x)
        return (logits.argmax(-1) == y).to(logits.dtype).mean()

    batched = vmap(accuracy, in_dims=(None, 0, 0))
    use_vmap = resolve_executor(cfg, device) == "vmap"
    params = tree_detach(params)
    out = []
    with float32_precision(device, cfg.allow_tf32):
        for batch in batches:
            batch = batch.to(device)
            if use_vmap:
                out.append(batched(params, batch.support, batch.query))
            else:
                out.append(torch.stack([accuracy(params, *batch.task(i)) for i in range(batch.num_tasks)]))
    return torch.cat(out).double().cpu()


@dataclass(frozen=True)
class TrainResult:
    """How a call to ``train`` ended: status completed, stopped (``stop_at``) or diverged;
    ``checkpoint_iteration``: the iteration ``last.pt`` holds (None when none was written)."""

    run_dir: Path
    status: str
    iteration: int
    best_val_accuracy: float
    best_iteration: int
    elapsed_s: float
    checkpoint_iteration: int | None

    @property
    def best_checkpoint(self) -> Path:
        return self.run_dir / BEST

    @property
    def last_checkpoint(self) -> Path:
        return self.run_dir / LAST

    @property
    def metrics(self) -> Path:
        return self.run_dir / METRICS


def default_run_dir(config: TrainConfig) -> Path:
    """``results/realdata/runs/<preset>[+<key>=<value>...]-<method>-lo<a>-up<a>-s<seed>``
    (relative to the cwd; ``TrainConfig.folder_name``)."""
    return RUNS_ROOT / config.folder_name


def _config_differences(stored: TrainConfig, config: TrainConfig) -> list[str]:
    """Fields (other than the iteration budget and the preset's labels) in which two configs
    differ; all fields, defaults included (``settings`` leaves some defaults out)."""
    flat = []
    for c in (stored, config):
        d = c.to_dict()
        preset = d.pop("preset")
        for label in ("iterations", "description", "sources"):
            preset.pop(label)
        flat.append({**d, **{f"preset.{k}": v for k, v in preset.items()}})
    return [
        f"{k}: checkpoint {flat[0][k]!r}, now {flat[1][k]!r}" for k in flat[0] if flat[0][k] != flat[1][k]
    ]


def _resume_state(run_dir: Path, config: TrainConfig, resume: bool) -> dict[str, Any] | None:
    """The last checkpoint to continue from (``resume``), after checking it fits ``config``."""
    last = run_dir / LAST
    if not resume:
        if last.exists():
            raise ConfigError(
                f"run_dir: {run_dir} already holds a run ({LAST}); pass `resume` to continue it, "
                "or choose another `run_dir`"
            )
        return None
    if not last.exists():
        raise ConfigError(f"resume: no {LAST} in {run_dir}; expected the `run_dir` of an interrupted run")
    state = load_checkpoint(last)
    diffs = _config_differences(TrainConfig.from_dict(state["config"]), config)
    if diffs:
        raise ConfigError(
            f"resume: {last} was trained with another config "
            f"({'; '.join(diffs)}); expected the same settings (only `iterations` "
            "may change), or a new `run_dir`"
        )
    return state


class _Run:
    """The mutable state of one training run and its bookkeeping (rows, checkpoints)."""

    def __init__(
        self, config: TrainConfig, splits: DatasetSplits, run_dir: Path, device: torch.device
    ) -> None:
        preset = config.preset
        self.config, self.run_dir, self.device = config, run_dir, device
        train_images = splits.train
        if preset.train_classes is not None:
            n = min(preset.train_classes, train_images.num_classes)
            train_images = ClassImages(train_images.images[:n], train_images.class_ids[:n])
        self.spec = model_spec(config, train_images)
        self.loss = Conv4Loss(self.spec)
        init = conv4_init(self.spec, generator(config.seed, "realdata", preset.name, "init"))
        self.learner = MetaLearner(
            self.loss,
            {k: v.to(device) for k, v in init.items()},
            config.meta_config(),
            adam(preset.meta_lr),
            seed=derive_seed(config.seed, "realdata", preset.name, "lower-tensors"),
        )
        self.sampler = EpisodeSampler(
            train_images.to(device),
            preset.ways,
            preset.shots,
            preset.queries,
            seed=derive_seed(config.seed, "realdata", preset.name, "train-episodes"),
        )
        self.val = fixed_test_episodes(
            splits.val.to(device),
            preset.ways,
            preset.shots,
            preset.queries,
            n_episodes=preset.val_episodes,
            seed=DEFAULT_SEED,
            stream="val",
            allow_small=True,
        )
        self.iteration, self.best_val, self.best_iteration, self.elapsed = 0, -math.inf, 0, 0.0
        self.rows: list[dict[str, Any]] = []
        self.saved_iteration: int | None = None  # the iteration last.pt holds
        self.last_saved = time.perf_counter()

    def restore(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            for name, p in self.learner.params.items():
                p.copy_(state["params"][name])
        self.learner.optimizer.load_state_dict(state["optimizer"])
        # checkpoints from before the learner kept a state: steps = iterations, no ascent kept
        self.learner.load_state_dict(state.get("learner", {"steps": state["iteration"], "ascent": None}))
        self.sampler.next_index = int(state["sampler"]["next_index"])
        restore_rng_state(state["rng"])
        self.iteration = self.saved_iteration = int(state["iteration"])
        self.best_val = float(state["best_val_accuracy"])
        self.best_iteration = int(state["best_iteration"])
        self.elapsed = float(state["elapsed_s"])
        if (self.run_dir / METRICS).exists():
            old = read_table(self.run_dir / METRICS)
            if len(old):  # rows logged after the checkpoint are logged again
                self.rows = old[old["iteration"] <= self.iteration].to_dict("records")

    def state(self, kind: str) -> dict[str, Any]:
        return {
            "kind": kind,
            "config": self.config.to_dict(),
            "model": dataclasses.asdict(self.spec),
            "iteration": self.iteration,
            "params": {k: v.cpu() for k, v in self.learner.detached_params().items()},
            "optimizer": self.learner.optimizer.state_dict(),
            "learner": self.learner.state_dict(),
            "sampler": {
                "seed": self.sampler.seed,
                "stream": self.sampler.stream,
                "next_index": self.sampler.next_index,
            },
            "rng": rng_state(),
            "best_val_accuracy": self.best_val,
            "best_iteration": self.best_iteration,
            "elapsed_s": self.elapsed,
            "provenance": provenance(self.device, seed=self.config.seed, config_hash=self.config.hash()),
        }

    def record(
        self, split: str, loss: float, accuracy: float, ci95: float = math.nan, status: str = "ok"
    ) -> None:
        c, p = self.config, self.config.preset
        self.rows.append(
            {
                "run": c.run_name,
                "preset": p.name,
                "dataset": p.dataset,
                "data_split": p.split,
                "ways": p.ways,
                "shots": p.shots,
                "method": c.method,
                "alpha_low": c.alpha_low,
                "alpha_up": c.alpha_up,
                **p.candidate_columns(),
                "seed": c.seed,
                "split": split,
                "iteration": self.iteration,
                "planned_iterations": p.iterations,
                "meta_loss": loss,
                "accuracy": accuracy,
                "ci95": ci95,
                "status": status,
                "elapsed_s": self.elapsed,
                **provenance(self.device, config_hash=c.hash()),
            }
        )

    def validate(self) -> float:
        """Mean validation accuracy; saves ``best.pt`` when it improves."""
        acc = episode_accuracies(
            self.loss,
            self.learner.params,
            self.val.batches(VAL_BATCH),
            self.config.eval_meta_config(),
            self.device,
        )
        summary = accuracy_ci(acc)
        self.record("val", math.nan, summary.mean, summary.ci95)
        if summary.mean > self.best_val:
            self.best_val, self.best_iteration = summary.mean, self.iteration
            save_checkpoint(self.run_dir / BEST, self.state("best"))
        return summary.mean

    def save(self, checkpoint: bool = True) -> None:
        """Write ``last.pt`` (unless ``checkpoint`` is False) and the metrics table."""
        if checkpoint:
            save_checkpoint(self.run_dir / LAST, self.state("last"))
            self.saved_iteration, self.last_saved = self.iteration, time.perf_counter()
        write_table(pd.DataFrame(self.rows), self.run_dir / METRICS)


def train(
    config: TrainConfig,
    run_dir: Path | None = None,
    *,
    device: str | torch.device | None = None,
    resume: bool = False,
    stop_at: int | None = None,
    data: DatasetSplits | None = None,
    data_options: DataOptions = DataOptions(),
    progress: bool = True,
    checkpoint_minutes: float = CHECKPOINT_MINUTES,
) -> TrainResult:
    """Meta-train ``config``; returns how the run ended.

    ``run_dir`` defaults to ``default_run_dir(config)``. ``resume`` continues from its
    ``last.pt`` (same config; the iteration budget may grow). ``stop_at`` ends this call after
    that iteration with a checkpoint, as an interruption would. ``data`` skips loading the
    dataset (``data_options`` say how to load it otherwise). ``last.pt`` is written every
    ``val_every`` iterations and whenever ``checkpoint_minutes`` of wall time have passed since
    the last one. SIGINT or SIGTERM during the iterations saves ``last.pt`` after the current
    iteration and raises ``infra.errors.Interrupted`` (resume continues bitwise from there).
    """
    device = device if isinstance(device, torch.device) else resolve_device(device)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config)
    if stop_at is not None:
        require_int(stop_at, "stop_at", minimum=1, maximum=MAX_ITERATIONS)
    NumberRule(positive=True, maximum=7 * 24 * 60, noun="number of minutes").require(
        checkpoint_minutes, "checkpoint_minutes"
    )
    require_writable(run_dir, "run_dir", folder=True)
    state = _resume_state(run_dir, config, resume)
    splits = (
        data if data is not None else load_dataset(config.preset.dataset, data_options, config.preset.split)
    )
    run = _Run(config, splits, run_dir, device)
    if state is not None:
        run.restore(state)
    preset = config.preset
    end = min(preset.iterations, stop_at) if stop_at is not None else preset.iterations
    bar = tqdm(
        total=preset.iterations,
        initial=run.iteration,
        desc=config.run_name,
        disable=not progress,
        dynamic_ncols=True,
    )
    postfix: dict[str, str] = {}
    status = "completed" if end == preset.iterations else "stopped"
    with stop_requests("saving a checkpoint after this iteration") as stop:
        while run.iteration < end:
            loss = _iteration(run, bar, postfix)
            if not math.isfinite(loss):
                status = "diverged"
                break
            if (
                run.iteration % preset.val_every == 0
                or run.iteration in (end, preset.iterations)
                or stop.requested
                or time.perf_counter() - run.last_saved >= 60 * checkpoint_minutes
            ):
                run.save()
            stop.stop_point()
    bar.close()
    return TrainResult(
        run_dir, status, run.iteration, run.best_val, run.best_iteration, run.elapsed, run.saved_iteration
    )


def _iteration(run: _Run, bar: tqdm, postfix: dict[str, str]) -> float:
    """One meta-iteration with its logging and validation; returns its meta-loss. A
    non-finite loss is recorded as a divergence (metrics saved, no checkpoint: the state is
    not finite any more)."""
    preset, device = run.config.preset, run.device
    train_cfg = run.config.meta_config()
    started = time.perf_counter()
    batch = run.sampler.sample_batch(preset.meta_batch)
    log_now = (run.iteration + 1) % preset.log_every == 0
    if log_now:  # accuracy on this batch before its update: the theta of its meta-loss
        train_acc = float(episode_accuracies(run.loss, run.learner.params, [batch], train_cfg, device).mean())
    loss = float(run.learner.step(batch).loss)
    run.iteration += 1
    run.elapsed += time.perf_counter() - started
    postfix["loss"] = f"{loss:.3f}"
    if not math.isfinite(loss):
        run.record("train", loss, math.nan, status="diverged")
        run.save(checkpoint=False)
        return loss
    if log_now:
        run.record("train", loss, train_acc)
        postfix["acc"] = f"{train_acc:.3f}"
    if run.iteration % preset.val_every == 0 or run.iteration == preset.iterations:
        started = time.perf_counter()
        postfix["val"] = f"{run.validate():.3f}"
        run.elapsed += time.perf_counter() - started
    bar.set_postfix(postfix, refresh=False)
    bar.update(1)
    return loss
