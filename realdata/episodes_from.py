"""Score a checkpoint on episodes a user brings (``sharpmaml evaluate CHECKPOINT --episodes-from DIR``).

Each episode folder (layout: ``realdata.datasets.episode_folders``) is read and preprocessed as
the training images, all of them before any compute; then the model adapts on each episode's
support images with the run's test-time inner loop and predicts its query images (BatchNorm
uses the query batch's statistics, as for the fixed test episodes). Two tables are written
(``infra.store``): one row per episode (accuracy in percent, sizes, run and provenance
columns) and one row per query image (file, true and predicted label). Any number of episodes
>= 1 is scored; the 95% CI over episodes is reported only from ``MIN_CI_EPISODES`` on, where
the normal approximation behind it is reasonable.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from harness.config import ConfigError
from harness.meta import adapt
from harness.precision import float32_precision
from harness.tree import tree_detach
from infra.provenance import provenance
from infra.store import require_writable, write_table
from realdata.checkpoint import load_checkpoint
from realdata.datasets.episode_folders import read_episode_folders
from realdata.device import resolve_device
from realdata.models import Conv4Loss, Conv4Spec
from realdata.presets import TrainConfig
from realdata.stats import accuracy_ci

MIN_CI_EPISODES = 30
PREDICTIONS_SUFFIX = "-predictions"


@dataclass(frozen=True)
class EpisodeScores:
    """Per-episode rows, per-query predictions, and the mean accuracy (percent) with its 95%
    CI half-width (NaN below ``MIN_CI_EPISODES`` episodes)."""

    episodes: pd.DataFrame
    predictions: pd.DataFrame
    accuracy: float
    ci95: float

    @property
    def n_episodes(self) -> int:
        return len(self.episodes)


def predictions_path(table: Path) -> Path:
    """Where the per-query table goes next to the per-episode ``table``."""
    table = Path(table)
    return table.with_name(table.stem + PREDICTIONS_SUFFIX + table.suffix)


def score_episodes(
    checkpoint: Path | str,
    episodes_dir: Path | str,
    *,
    eval_inner_loop: str | None = None,
    device: str | torch.device | None = None,
    results: Path | None = None,
    show: Callable[[EpisodeScores], None] | None = None,
) -> EpisodeScores:
    """Adapt the checkpoint on each episode of ``episodes_dir`` and predict its queries.

    ``results`` (.parquet or .csv) receives the per-episode table and ``predictions_path(results)``
    the per-query one; None writes nothing. Both are checked writable before any compute, and
    ``show`` gets the scores before they are written. Bad folders raise DatasetError naming the
    file.
    """
    if results is not None:
        if Path(results).suffix not in (".parquet", ".csv"):
            raise ConfigError(f"results: expected a .parquet or .csv path, got {results}")
        for path in (Path(results), predictions_path(Path(results))):
            require_writable(path, "results", folder=False)
    device = device if isinstance(device, torch.device) else resolve_device(device)
    state = load_checkpoint(checkpoint)
    config = TrainConfig.from_dict(state["config"])
    cfg = config.eval_meta_config(eval_inner_loop)
    spec = Conv4Spec(**state["model"])
    episodes = read_episode_folders(
        Path(episodes_dir), config.preset.dataset, spec.image_size, spec.num_classes
    )
    loss = Conv4Loss(spec)
    params = tree_detach({k: v.to(device) for k, v in state["params"].items()})
    run = {
        "checkpoint": str(checkpoint),
        "preset": config.preset.name,
        "train_split": config.preset.split,
        "method": config.method,
        "alpha_low": config.alpha_low,
        "alpha_up": config.alpha_up,
        "seed": config.seed,
        "eval_inner_loop": config.eval_inner_loop if eval_inner_loop is None else eval_inner_loop,
        "test_inner_steps": cfg.inner_steps,
        "config_hash": config.hash(),
        **provenance(device),
    }
    episode_rows, prediction_rows = [], []
    with float32_precision(device, cfg.allow_tf32):
        for episode in episodes:
            support = tuple(t.to(device) for t in episode.support)
            x, y = (t.to(device) for t in episode.query)
            predicted = loss.logits(adapt(loss, params, support, cfg), x).argmax(-1).cpu()
            correct = predicted == episode.query[1]
            episode_rows.append(
                {
                    "episode": episode.name,
                    "ways": len(episode.labels),
                    "n_support": len(episode.support[1]),
                    "n_query": len(y),
                    "accuracy": 100 * correct.double().mean().item(),
                    **run,
                }
            )
            for file, true, guess, ok in zip(
                episode.query_files,
                episode.query[1].tolist(),
                predicted.tolist(),
                correct.tolist(),
                strict=True,
            ):
                prediction_rows.append(
                    {
                        "episode": episode.name,
                        "query_file": file,
                        "label": episode.labels[true],
                        "predicted": episode.labels[guess],
                        "correct": ok,
                    }
                )
    table, predictions = pd.DataFrame(episode_rows), pd.DataFrame(prediction_rows)
    accuracy = float(table["accuracy"].mean())
    ci95 = math.nan
    if len(table) >= MIN_CI_EPISODES:
        ci95 = accuracy_ci(table["accuracy"].to_numpy()).ci95
    scores = EpisodeScores(table, predictions, accuracy, ci95)
    if show is not None:
        show(scores)
    if results is not None:
        write_table(table, Path(results))
        write_table(predictions, predictions_path(Path(results)))
    return scores


def format_scores(scores: EpisodeScores) -> str:
    """One line for the terminal: the run, mean accuracy, and the CI where it means something."""
    row = scores.episodes.iloc[0]
    spread = (
        f" +- {scores.ci95:.2f} % (95% CI over episodes)"
        if math.isfinite(scores.ci95)
        else f" % (no CI: fewer than {MIN_CI_EPISODES} episodes)"
    )
    return (
        f"{row['preset']} (trained on split {row['train_split']}) {row['method']} "
        f"(alpha_low={row['alpha_low']:g}, alpha_up={row['alpha_up']:g}, seed {row['seed']}, "
        f"test-time inner loop {row['eval_inner_loop']}): {scores.accuracy:.2f}{spread} over "
        f"{scores.n_episodes} episode(s), {int(scores.episodes['n_query'].sum())} query images"
    )
