"""Training checkpoints: plain dicts of tensors, numbers and strings, safe to load.

A checkpoint is written with ``torch.save`` into memory and then atomically to disk
(``infra.store.atomic_write_bytes``), and read back with ``torch.load(weights_only=True)``:
no dataclass, numpy array or other pickled object is ever stored. Keys (format version 1):

- ``format``, ``version``, ``kind`` ("last" or "best");
- ``config``: ``TrainConfig.to_dict()``; ``model``: the Conv4Spec fields;
- ``iteration``: completed meta-iterations; ``params``: name -> tensor;
- ``optimizer``: the Adam ``state_dict()``; ``learner``: ``MetaLearner.state_dict()`` (steps
  taken and the reused upper ascent direction of ``ascent_every``; absent in older files); ``sampler``: seed, stream, next_index;
- ``rng``: torch CPU (and CUDA) generator states, numpy's and Python's global states;
- ``best_val_accuracy``, ``best_iteration``; ``provenance``: git sha, versions, device, date.
"""

from __future__ import annotations

import io
import pickle
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from infra.errors import UsageError
from infra.store import atomic_write_bytes

FORMAT = "sharpmaml-realdata-checkpoint"
VERSION = 1
REQUIRED_KEYS = ("config", "model", "iteration", "params", "optimizer", "sampler", "rng")


class CheckpointError(UsageError):
    """A checkpoint is missing, unreadable or not one of ours; the message names the file."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (plus format and version) atomically; never leaves a half file."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **state}, buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; CheckpointError if it is not a valid one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: checkpoint not found; expected a file written by "
            "`sharpmaml train` (last.pt or best.pt in the run folder)"
        )
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # a broken file fails in many ways (EOFError, zip, KeyError...)
        raise CheckpointError(
            f"{path}: cannot read checkpoint: {_unreadable_reason(path, exc)}; expected last.pt or "
            "best.pt as written by `sharpmaml train`"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a sharpmaml real-data checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {state.get('version')}; expected {VERSION}")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {missing}")
    return state


def _unreadable_reason(path: Path, exc: Exception) -> str:
    """Why torch could not read ``path``, in our words (torch's own advice to retry with
    ``weights_only=False`` is the unsafe path, so it is never repeated)."""
    if path.stat().st_size == 0:
        return "the file is empty"
    if isinstance(exc, pickle.UnpicklingError):
        return (
            "it is a pickle that is not a plain-data checkpoint (refused unread: loading it could run code)"
        )
    return f"the file is truncated or corrupt ({type(exc).__name__})"


def rng_state() -> dict[str, Any]:
    """The process-wide generators' states as tensors, numbers and strings."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": random.getstate(),
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back what ``rng_state`` recorded (CUDA states only where CUDA is present)."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    random.setstate(state["python"])
