"""Small shared pieces of the checks: the cell a check asks the suite to compute, what a check
returns, lane tensors and tidy rows."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from harness.config import MetaConfig
from infra.verdicts import Prediction
from synthetic.problems.base import ProblemInstance
from synthetic.runs import LaneResults


@dataclass(frozen=True)
class Cell:
    """One unit of compute a check asks for: ``compute()`` (a batched run) under a cache name
    and key. ``cost`` (``run_cost``) orders the work across processes, largest first."""

    name: str
    key: dict[str, Any]
    compute: Callable[[], LaneResults]
    cost: float = 1.0


@dataclass
class CheckOutput:
    """What a check returns: prediction rows, tidy run and curve rows, any problem instance it
    built besides the one it was given (their constants go to the tables), and the profiles of
    the objective along an axis that the report draws the runs on (``profiles.parquet``)."""

    predictions: list[Prediction] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    curves: list[pd.DataFrame] = field(default_factory=list)
    instances: list[ProblemInstance] = field(default_factory=list)
    profiles: list[pd.DataFrame] = field(default_factory=list)

    def extend(self, other: CheckOutput) -> None:
        self.predictions += other.predictions
        self.runs += other.runs
        self.curves += other.curves
        self.instances += other.instances
        self.profiles += other.profiles


# What one more lane adds to a step, relative to the step's fixed cost (the torch.func
# transforms' dispatch): measured on the 2-core CPU, Sharp-MAML_both steps of 28 and 56 lanes cost
# 11 and 15.8 ms on Q1, 8.2 and 8.7 ms on L2 (docs/convergence.md, "Time").
LANES_PER_STEP_COST = 100


def run_cost(cfg: MetaConfig, steps: int, lanes: int) -> float:
    """A batched run's CPU cost in arbitrary units, to schedule cells largest first: a step
    costs about the method's gradient evaluations of the task loss, barely more with more
    lanes. (Lanes x steps, the earlier estimate, put a 4-lane Sharp-MAML_up run of 1000 steps
    taking 9 s behind runs of 2 s, last on its worker.)"""
    return steps * cfg.gradient_evaluations * (1 + lanes / LANES_PER_STEP_COST)


# A running check: it yields the cells it needs (all at once, so the suite can compute them in
# parallel), receives their results in the same order, and returns its output.
CheckRun = Generator[list[Cell], list[LaneResults], CheckOutput]


def lanes(values: np.ndarray | list[float], dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A 1-D tensor of per-lane values."""
    return torch.as_tensor(np.asarray(values, dtype=float), dtype=dtype)


def filled(n: int, value: float) -> torch.Tensor:
    """n lanes that share one value."""
    return torch.full((n,), float(value), dtype=torch.float64)


def lane_status(result: LaneResults, lane: int) -> str:
    """'ok', or 'diverged: <cause>' (non-finite loss or gradient at step t, or the norm bound)."""
    return f"diverged: {result.divergence_cause(lane)}" if result.diverged[lane] else "ok"


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
