"""Each method on a synthetic problem: its MetaConfig and its per-lane radii."""

from __future__ import annotations

import numpy as np

from harness.config import MetaConfig
from synthetic.checks.common import lanes
from synthetic.problems.base import ProblemInstance


def method_config(problem: ProblemInstance, method: str) -> MetaConfig:
    """The method on the problem's inner loop (same beta and inner steps as F's MAML)."""
    base = problem.meta_config
    return MetaConfig(method=method, inner_steps=base.inner_steps, inner_lr=base.inner_lr, executor="vmap")


def lane_radii(method: str, alpha: np.ndarray) -> tuple:
    """(alpha_low, alpha_up) lane tensors: the schedule's radius where the method uses one."""
    zero = np.zeros_like(alpha)
    low = alpha if method in ("sharp_low", "sharp_both") else zero
    up = alpha if method in ("sharp_up", "sharp_both") else zero
    return lanes(low), lanes(up)
