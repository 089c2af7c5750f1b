"""Accuracy statistics: the 95% CI over test episodes and the summary over training seeds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from realdata.datasets.errors import DatasetError


class MeanCI(NamedTuple):
    """Mean accuracy, 95% CI half-width (1.96 * std / sqrt(n), ddof=1), number of episodes."""

    mean: float
    ci95: float
    n: int


class SeedSummary(NamedTuple):
    """Across training seeds: mean of the per-seed means, their std (ddof=1; nan for one seed)."""

    mean: float
    std: float
    n_seeds: int
    per_seed: tuple[MeanCI, ...]


def accuracy_ci(per_episode_acc: Sequence[float] | np.ndarray | torch.Tensor) -> MeanCI:
    """Mean and 95% CI half-width of per-episode accuracies (normal approximation)."""
    acc = np.asarray(
        per_episode_acc.detach().cpu() if isinstance(per_episode_acc, torch.Tensor) else per_episode_acc,
        dtype=np.float64,
    ).reshape(-1)
    if acc.size < 2 or not np.isfinite(acc).all():
        raise DatasetError(
            f"per_episode_acc: expected at least 2 finite accuracies, got {acc.size} values"
            + ("" if np.isfinite(acc).all() else " with non-finite entries")
        )
    return MeanCI(float(acc.mean()), float(1.96 * acc.std(ddof=1) / math.sqrt(acc.size)), int(acc.size))


def aggregate_seeds(
    per_seed_acc: Sequence[Sequence[float] | np.ndarray | torch.Tensor],
) -> SeedSummary:
    """Summary over training seeds, each given as its per-episode accuracies on the fixed set."""
    per_seed = tuple(accuracy_ci(acc) for acc in per_seed_acc)
    if not per_seed:
        raise DatasetError("per_seed_acc: expected the accuracies of at least one training seed")
    means = np.array([s.mean for s in per_seed])
    std = float(means.std(ddof=1)) if len(means) > 1 else math.nan
    return SeedSummary(float(means.mean()), std, len(per_seed), per_seed)
