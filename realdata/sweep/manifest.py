"""The sweep's manifest (one row per run, parquet, rewritten atomically) and its folder lock.

Statuses: pending, running, done, failed, diverged, interrupted. The manifest is written only
by the process holding the lock (the sweep command), after every change, with
``infra.store.write_table``: a kill at any moment leaves the previous or the new table, never a
half one.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from infra.errors import UsageError
from infra.store import read_table, write_table
from realdata.sweep.spec import RunTask

MANIFEST = "manifest.parquet"
LOCK = ".sweep.lock"
PENDING, RUNNING, DONE, FAILED, DIVERGED, INTERRUPTED = (
    "pending",
    "running",
    "done",
    "failed",
    "diverged",
    "interrupted",
)
FINISHED = (DONE, DIVERGED)  # statuses a rerun does not start again
COLUMNS = (
    "run_id",
    "preset",
    "method",
    "variant",
    "alpha_low",
    "alpha_up",
    "seed",
    "iterations",
    "config_hash",
    "status",
    "attempts",
    "job_id",
    "wall_s",
    "run_dir",
    "final_accuracy",
    "train_s_per_iteration",
    "error",
    "updated",
)


class SweepLockedError(UsageError):
    """Another sweep holds the folder's lock."""


@contextlib.contextmanager
def sweep_lock(sweep_dir: Path) -> Iterator[None]:
    """Hold ``sweep_dir/.sweep.lock`` (flock, released by the OS if the process dies)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path = sweep_dir / LOCK
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            raise SweepLockedError(
                f"{sweep_dir}: another sweep (pid {owner}) is writing into this folder; wait for it "
                "to finish (or stop it), or choose another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _new_row(task: RunTask) -> dict[str, Any]:
    config = task.train_config
    return {
        "run_id": task.run_id,
        "preset": config.preset.name,
        "method": config.method,
        "variant": task.variant,
        "alpha_low": config.alpha_low,
        "alpha_up": config.alpha_up,
        "seed": config.seed,
        "iterations": config.preset.iterations,
        "config_hash": config.hash(),
        "status": PENDING,
        "attempts": 0,
        "job_id": "",
        "wall_s": math.nan,
        "run_dir": task.run_dir,
        "final_accuracy": math.nan,
        "train_s_per_iteration": math.nan,
        "error": "",
        "updated": _now(),
    }


class Manifest:
    """The runs of a sweep folder and their state; ``save`` writes it atomically."""

    def __init__(self, path: Path, rows: dict[str, dict[str, Any]]) -> None:
        self.path, self.rows = path, rows

    @classmethod
    def open(cls, sweep_dir: Path, tasks: Sequence[RunTask]) -> Manifest:
        """The folder's manifest with the spec's runs (new ones pending), or a new one.

        A run already recorded with other settings (config hash) is refused: the folder
        belongs to another spec."""
        path = sweep_dir / MANIFEST
        rows: dict[str, dict[str, Any]] = {}
        if path.exists():
            # a manifest from before variants has no such column: its runs are plain methods
            rows = {r["run_id"]: {"variant": "", **r} for r in read_table(path).to_dict("records")}
        for task in tasks:
            new = _new_row(task)
            old = rows.get(task.run_id)
            if old is None:
                rows[task.run_id] = new
            elif old["config_hash"] != new["config_hash"]:
                raise UsageError(
                    f"{path}: run {task.run_id} was started with other settings (config hash "
                    f"{old['config_hash']}, the spec now gives {new['config_hash']}); expected the "
                    "same spec to resume, or another --out for a new sweep"
                )
            elif old["status"] == RUNNING:  # the sweep that ran it is gone (killed)
                old["status"] = INTERRUPTED
        manifest = cls(path, rows)
        manifest.save()
        return manifest

    def update(self, run_id: str, **fields: Any) -> None:
        self.rows[run_id].update(fields, updated=_now())
        self.save()

    def save(self) -> None:
        write_table(pd.DataFrame(list(self.rows.values()), columns=list(COLUMNS)), self.path)

    def status(self, run_id: str) -> str:
        return self.rows[run_id]["status"]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.rows.values():
            out[row["status"]] = out.get(row["status"], 0) + 1
        return out


def read_manifest(sweep_dir: Path) -> pd.DataFrame:
    """The manifest table of a sweep folder (StoreError naming it when absent)."""
    return read_table(Path(sweep_dir) / MANIFEST)
