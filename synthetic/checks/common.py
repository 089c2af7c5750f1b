"""Small shared pieces of the checks: lane tensors, tidy rows, the problem cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from infra.verdicts import Prediction


@dataclass
class CheckOutput:
    """What a check returns: prediction rows plus tidy run and curve rows."""

    predictions: list[Prediction] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    curves: list[pd.DataFrame] = field(default_factory=list)

    def extend(self, other: CheckOutput) -> None:
        self.predictions += other.predictions
        self.runs += other.runs
        self.curves += other.curves


def lanes(values: np.ndarray | list[float], dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A 1-D tensor of per-lane values."""
    return torch.as_tensor(np.asarray(values, dtype=float), dtype=dtype)


def filled(n: int, value: float) -> torch.Tensor:
    """n lanes that share one value."""
    return torch.full((n,), float(value), dtype=torch.float64)


def curve_frame(run_id: str, steps: np.ndarray, curve: np.ndarray) -> pd.DataFrame:
    """Tidy per-iteration curve: one row per (run_id, lane, step)."""
    lanes_, points = curve.shape
    return pd.DataFrame(
        {
            "run_id": run_id,
            "lane": np.repeat(np.arange(lanes_), points),
            "step": np.tile(steps, lanes_),
            "grad_norm2": curve.reshape(-1),
        }
    )
