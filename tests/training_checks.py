"""Assertions shared by the tests that stop and resume training: two runs ended in the same state."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from realdata.checkpoint import load_checkpoint
from realdata.train import LAST, METRICS

METRIC_COLUMNS = ["split", "iteration", "meta_loss", "accuracy", "ci95"]


def assert_same_training_state(whole: Path, resumed: Path, *, process_rng: bool = True) -> None:
    """The run folders ``whole`` and ``resumed`` hold bitwise the same ``last.pt`` (parameters,
    optimiser moments, sampler state, iteration, best validation accuracy) and the same metric
    rows (wall times aside). ``process_rng`` also compares the process-wide generator states the
    checkpoint records: meaningful only for runs started in one process, since a run draws from
    its own seeded generators and leaves those states as the process had them."""
    a, b = load_checkpoint(whole / LAST), load_checkpoint(resumed / LAST)
    assert a["iteration"] == b["iteration"] and a["sampler"] == b["sampler"]
    for name, value in a["params"].items():
        assert value.dtype == torch.float32
        assert torch.equal(value, b["params"][name]), name
    for index, state in a["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(value, b["optimizer"]["state"][index][key]), (index, key)
    if process_rng:
        assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    assert a["best_val_accuracy"] == b["best_val_accuracy"]
    pd.testing.assert_frame_equal(
        pd.read_parquet(whole / METRICS)[METRIC_COLUMNS], pd.read_parquet(resumed / METRICS)[METRIC_COLUMNS]
    )
