"""Accuracy statistics: the 95% CI over test episodes, the summary over training seeds, and the
paired comparison of two methods over the same seeds (the study)."""

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


class PairedDifference(NamedTuple):
    """Mean of paired differences a_i - b_i with its 95% CI (Student t, n - 1 degrees of
    freedom), the std of the differences (ddof=1), and ``mdd``: the smallest true difference
    a two-sided 5% paired t-test detects with 80% power at this n and spread (percent points
    when the inputs are)."""

    mean: float
    ci95: float
    sd: float
    n: int
    mdd: float

    @property
    def low(self) -> float:
        return self.mean - self.ci95

    @property
    def high(self) -> float:
        return self.mean + self.ci95


def t_quantile(p: float, df: int) -> float:
    """Quantile ``p`` of Student's t with ``df`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(p, df))


def seed_mean_ci(values: Sequence[float] | np.ndarray) -> MeanCI:
    """Mean over training seeds and its 95% CI half-width t_{0.975, n-1} * std / sqrt(n).

    With a handful of seeds the normal 1.96 is too narrow (n = 4: t = 3.18); nan half-width
    for one seed."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size < 1 or not np.isfinite(x).all():
        raise DatasetError(f"values: expected at least one finite value, got {x.tolist()}")
    if x.size == 1:
        return MeanCI(float(x[0]), math.nan, 1)
    half = t_quantile(0.975, x.size - 1) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return MeanCI(float(x.mean()), half, int(x.size))


def paired_difference(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *, power: float = 0.8
) -> PairedDifference:
    """The paired comparison of ``a`` with ``b`` (same seeds, in the same order).

    CI: mean(d) +- t_{0.975, n-1} sd(d)/sqrt(n). Smallest detectable difference (two-sided
    alpha 0.05, the given power): (t_{0.975, n-1} + t_{power, n-1}) sd(d)/sqrt(n), the usual
    approximation of the paired t-test's power. Needs n >= 2 pairs.
    """
    x, y = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (a, b))
    if x.shape != y.shape or x.size < 2 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise DatasetError(
            f"paired values: expected two finite sequences of the same length >= 2, got {x.size} and {y.size}"
        )
    if not 0.5 < power < 1:
        raise DatasetError(f"power: expected a number in (0.5, 1), got {power}")
    d = x - y
    sd = float(d.std(ddof=1))
    se = sd / math.sqrt(d.size)
    t95 = t_quantile(0.975, d.size - 1)
    return PairedDifference(
        float(d.mean()), t95 * se, sd, int(d.size), (t95 + t_quantile(power, d.size - 1)) * se
    )


def comparison_verdict(diff: PairedDifference) -> str:
    """BETTER when the whole 95% CI of the difference is above 0, WORSE when below, else
    NOT DETECTED (the data cannot tell a difference smaller than ``diff.mdd`` from none)."""
    from infra.verdicts import BETTER, NOT_DETECTED, WORSE

    if diff.low > 0:
        return BETTER
    if diff.high < 0:
        return WORSE
    return NOT_DETECTED
