"""Meta-test evaluation of a checkpoint on the fixed, seeded test episodes.

Every method and training seed is scored on the same episodes (``fixed_test_episodes`` with
one test seed, default ``DEFAULT_SEED``; at least 600 episodes, 1000 by default), each adapted
with the test-time inner loop of the run (``TrainConfig.eval_meta_config``). The result is
one row (accuracy and 95% CI in percent, the split, the test-set fingerprint, config hash and
provenance) appended to a results table, ``results/realdata/evaluations.parquet`` by default.

The test episodes come from the meta-test part of the checkpoint's own split unless another
is named; a split whose meta-test characters the checkpoint saw in training or validation is
refused (``SplitOverlapError``) unless ``allow_overlap``.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from harness.config import ConfigError, NumberRule, require_int
from infra.errors import UsageError
from infra.provenance import provenance
from infra.seeding import DEFAULT_SEED
from infra.store import read_table, require_writable, write_table
from realdata.checkpoint import CheckpointError, load_checkpoint
from realdata.data import DataOptions, load_dataset
from realdata.datasets import DatasetSplits, fixed_test_episodes
from realdata.datasets.omniglot import split_overlap
from realdata.defaults import (
    DEFAULT_TEST_EPISODES,
    EVAL_BATCH,
    MAX_EVAL_BATCH,
    MAX_TEST_EPISODES,
    MIN_TEST_EPISODES,
    RESULTS_TABLE,
)
from realdata.device import resolve_device
from realdata.models import Conv4Loss, Conv4Spec
from realdata.presets import TrainConfig
from realdata.splits import DATASET_SPLITS
from realdata.stats import accuracy_ci
from realdata.train import episode_accuracies, model_spec


class SplitOverlapError(UsageError):
    """The meta-test characters of the split asked for were seen by the checkpoint."""


def check_split(config: TrainConfig, split: str | None, allow_overlap: bool, checkpoint: Path | str) -> str:
    """The split to evaluate on (``split`` or the checkpoint's); SplitOverlapError when its
    meta-test characters overlap the checkpoint's training or validation characters."""
    trained_on = config.preset.split
    dataset = config.preset.dataset
    split = trained_on if split is None else split
    if split not in DATASET_SPLITS[dataset]:
        raise ConfigError(f"split: {dataset} has the splits {list(DATASET_SPLITS[dataset])}; got {split!r}")
    if split == trained_on or dataset != "omniglot":
        return split
    overlap, n_test = split_overlap(trained_on, split)
    if overlap and not allow_overlap:
        raise SplitOverlapError(
            f"{checkpoint}: trained on split {trained_on!r}, whose training and validation "
            f"characters include {len(overlap)} of the {n_test} meta-test characters of split "
            f"{split!r} (e.g. {', '.join(sorted(overlap)[:3])}); its score there would not measure "
            "generalisation to new characters. Expected a split without overlap (its own, "
            f"{trained_on!r}), or pass --allow-overlap to evaluate anyway"
        )
    return split


@dataclass(frozen=True)
class Evaluation:
    """The results row and the per-episode accuracies (fractions) behind it."""

    row: dict[str, Any]
    per_episode: torch.Tensor


def _check_arguments(n_episodes: Any, test_seed: Any, batch_size: Any, results: Path | None) -> None:
    NumberRule(integer=True, minimum=MIN_TEST_EPISODES, maximum=MAX_TEST_EPISODES).require(
        n_episodes, "n_episodes", reason=f" (default {DEFAULT_TEST_EPISODES}) for a meaningful 95% CI"
    )
    require_int(test_seed, "test_seed", minimum=0)
    require_int(batch_size, "batch_size", minimum=1, maximum=MAX_EVAL_BATCH)
    if results is not None:
        if Path(results).suffix not in (".parquet", ".csv"):
            raise ConfigError(f"results: expected a .parquet or .csv path, got {results}")
        require_writable(Path(results), "results", folder=False)


def evaluate_checkpoint(
    checkpoint: Path | str,
    *,
    n_episodes: int = DEFAULT_TEST_EPISODES,
    test_seed: int = DEFAULT_SEED,
    eval_inner_loop: str | None = None,
    device: str | torch.device | None = None,
    data: DatasetSplits | None = None,
    data_options: DataOptions = DataOptions(),
    results: Path | None = RESULTS_TABLE,
    batch_size: int = EVAL_BATCH,
    progress: bool = False,
    show: Callable[[dict[str, Any]], None] | None = None,
    split: str | None = None,
    allow_overlap: bool = False,
) -> Evaluation:
    """Score a checkpoint on the fixed test episodes; append its row to ``results`` (if given).

    ``eval_inner_loop`` ("same" or "plain") overrides the run's test-time inner loop; ``data``
    skips loading the dataset (it must be cut by the split evaluated on); ``progress`` shows a
    bar over the episode batches; ``show`` gets the row before it is written, so a failed write
    never hides the result. ``split`` evaluates on another named split than the checkpoint's
    (refused when their characters overlap, unless ``allow_overlap``). Arguments (and that
    ``results`` can be written) are checked before the data is touched.
    """
    _check_arguments(n_episodes, test_seed, batch_size, results)
    device = device if isinstance(device, torch.device) else resolve_device(device)
    state = load_checkpoint(checkpoint)
    config = TrainConfig.from_dict(state["config"])
    cfg = config.eval_meta_config(eval_inner_loop)
    split = check_split(config, split, allow_overlap, checkpoint)
    splits = data if data is not None else load_dataset(config.preset.dataset, data_options, split)
    spec = Conv4Spec(**state["model"])
    if model_spec(config, splits.test) != spec:
        raise CheckpointError(
            f"{checkpoint}: the model takes {spec.in_channels}x{spec.image_size}x"
            f"{spec.image_size} images; the test split has {splits.test.image_shape}"
        )
    p = config.preset
    episodes = fixed_test_episodes(
        splits.test.to(device),
        p.ways,
        p.shots,
        p.queries,
        n_episodes=n_episodes,
        seed=test_seed,
        stream="test",
    )
    params = {k: v.to(device) for k, v in state["params"].items()}
    batches = tqdm(
        episodes.batches(batch_size),
        total=math.ceil(n_episodes / batch_size),
        desc="test episodes",
        unit="batch",
        disable=not progress,
    )
    acc = episode_accuracies(Conv4Loss(spec), params, batches, cfg, device)
    summary = accuracy_ci(acc)
    row = {
        "preset": p.name,
        "dataset": p.dataset,
        "data_split": split,
        "train_split": p.split,
        "ways": p.ways,
        "shots": p.shots,
        "queries": p.queries,
        "method": config.method,
        "alpha_low": config.alpha_low,
        "alpha_up": config.alpha_up,
        **p.candidate_columns(),
        "eval_inner_loop": config.eval_inner_loop if eval_inner_loop is None else eval_inner_loop,
        "test_inner_steps": cfg.inner_steps,
        "accuracy": 100 * summary.mean,
        "ci95": 100 * summary.ci95,
        "n_episodes": summary.n,
        "test_seed": test_seed,
        "seed": config.seed,
        "iterations": int(state["iteration"]),
        "checkpoint_kind": state.get("kind", ""),
        "checkpoint": str(checkpoint),
        "test_fingerprint": episodes.fingerprint(),
        "config_hash": config.hash(),
        "train_git_sha": state.get("provenance", {}).get("git_sha", "unknown"),
        **provenance(device),
    }
    if show is not None:
        show(row)
    if results is not None:
        append_row(Path(results), row)
    return Evaluation(row, acc)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``<path>.lock`` so concurrent appends do not lose rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def append_row(path: Path, row: dict[str, Any]) -> Path:
    """Append one row to a results table (created if absent), rewriting it atomically."""
    with _locked(path):
        frame = pd.DataFrame([row])
        if path.exists():
            frame = pd.concat([read_table(path), frame], ignore_index=True)
        return write_table(frame, path)


def format_row(row: dict[str, Any]) -> str:
    """One line for the terminal: setting, method, radii, accuracy +- CI, test set."""
    split = row["data_split"]
    on = split if split == row["train_split"] else f"{split} (trained on {row['train_split']})"
    return (
        f"{row['preset']} split {on} {row['method']} (alpha_low={row['alpha_low']:g}, "
        f"alpha_up={row['alpha_up']:g}, seed {row['seed']}, {row['iterations']} iterations, "
        f"test-time inner loop {row['eval_inner_loop']}): {row['accuracy']:.2f} +- "
        f"{row['ci95']:.2f} % over {row['n_episodes']} test episodes (test seed "
        f"{row['test_seed']}, fingerprint {row['test_fingerprint'][:12]})"
    )
