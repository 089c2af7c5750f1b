"""Each method on a synthetic problem: its MetaConfig and its per-lane radii and order."""

from __future__ import annotations

import numpy as np
import torch

from harness.config import MetaConfig
from synthetic.checks.common import lanes
from synthetic.problems.base import ProblemInstance


def method_config(problem: ProblemInstance, method: str) -> MetaConfig:
    """The method on the problem's inner loop (same beta and inner steps as F's MAML)."""
    base = problem.meta_config
    return MetaConfig(method=method, inner_steps=base.inner_steps, inner_lr=base.inner_lr, executor="vmap")


def lane_radii(methods: list[str], alpha: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha_low, alpha_up) lane tensors: lane i's radius alpha[i] at each level where its
    method ``methods[i]`` perturbs (``MetaConfig``'s properties decide), else 0."""
    configs = [MetaConfig(method=m) for m in methods]
    low = [a if cfg.uses_lower_perturbation else 0.0 for cfg, a in zip(configs, alpha, strict=True)]
    up = [a if cfg.uses_upper_perturbation else 0.0 for cfg, a in zip(configs, alpha, strict=True)]
    return lanes(low), lanes(up)


def lane_second_order(methods: list[str]) -> torch.Tensor:
    """The ``Radii.second_order`` lane tensor: 0 where lane i's method is first order (FO-MAML's
    meta-gradient inside a second-order run), else 1."""
    return lanes([0.0 if MetaConfig(method=m).first_order else 1.0 for m in methods])
