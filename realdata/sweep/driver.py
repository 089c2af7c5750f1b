"""Run a sweep into a folder: expand the spec, skip finished runs, execute the rest, retry failures.

The folder holds ``spec.toml`` (a copy of the spec), ``manifest.parquet`` (the runs and their
state) and ``runs/<run>/`` (each run's checkpoints, metrics and evaluations). Only the process
holding the folder's lock writes the manifest. A run counts as finished when done or diverged
(a diverged run would diverge again: same seed, same data); failed and interrupted runs are
started again, failed ones at most ``retries`` more times per call.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from tqdm.auto import tqdm

from infra.errors import UsageError
from realdata.sweep.executors import Executor
from realdata.sweep.manifest import FAILED, FINISHED, INTERRUPTED, RUNNING, Manifest, sweep_lock
from realdata.sweep.runner import RunOutcome
from realdata.sweep.spec import RunTask, SweepSpec

SPEC_COPY = "spec.toml"


def _keep_spec(spec: SweepSpec, sweep_dir: Path) -> None:
    copy = sweep_dir / SPEC_COPY
    if spec.path.resolve() != copy.resolve():
        shutil.copyfile(spec.path, copy)


def require_data(spec: SweepSpec, origin: str, *, read: bool) -> None:
    """Stop before any run (exit 4) when the preset's dataset is not under ``spec.data_root``
    (None: the default root); ``origin`` says where that root came from, for the message.
    ``read``: load it as each worker will (every file checked, and the preprocessing cache filled
    once for the workers); otherwise only find its files by name (a submitting machine reads nothing)."""
    from realdata.data import DataOptions, load_dataset, locate_dataset
    from realdata.datasets.errors import DatasetError
    from realdata.datasets.locate import DATA_ENV, default_data_root

    name = spec.preset.dataset
    try:
        if read:
            load_dataset(name, DataOptions(data_root=spec.data_root), spec.preset.split)
        else:
            locate_dataset(name, spec.data_root)
    except DatasetError as exc:
        root = spec.data_root if spec.data_root is not None else default_data_root()
        raise UsageError(
            f"sweep {spec.path}: dataset {name} of preset {spec.preset.name!r} is not available "
            f"under the data root {root} ({origin}); no run was started. {exc}. To read it from "
            f"elsewhere, give the folder that holds {name}/ with --data-root PATH, with "
            f'root = "PATH" under [data] in the spec, or with ${DATA_ENV} (used when neither is given)'
        ) from None


def run_sweep(
    spec: SweepSpec, sweep_dir: Path, executor: Executor, *, retries: int = 1, progress: bool = True
) -> Manifest:
    """Bring every run of ``spec`` in ``sweep_dir`` to an end; the manifest afterwards."""
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise UsageError(f"--retries: expected an integer >= 0, got {retries!r}")
    tasks = spec.tasks(sweep_dir)
    with sweep_lock(sweep_dir):
        manifest = Manifest.open(sweep_dir, tasks)
        _keep_spec(spec, sweep_dir)
        todo = [t for t in tasks if manifest.status(t.run_id) not in FINISHED]
        bar = tqdm(
            total=len(tasks),
            initial=len(tasks) - len(todo),
            desc="sweep",
            unit="run",
            disable=not progress,
            dynamic_ncols=True,
        )
        tries = {t.run_id: 0 for t in todo}

        def submitted(task: RunTask, job_id: str) -> None:
            tries[task.run_id] += 1
            attempts = int(manifest.rows[task.run_id]["attempts"]) + 1
            manifest.update(task.run_id, status=RUNNING, attempts=attempts, job_id=job_id, error="")

        def finished(task: RunTask, outcome: RunOutcome, job_id: str) -> None:
            manifest.update(
                task.run_id,
                status=outcome.status,
                job_id=job_id,
                wall_s=outcome.wall_s,
                final_accuracy=outcome.final_accuracy,
                train_s_per_iteration=outcome.train_s_per_iteration,
                error=outcome.error,
            )
            if outcome.status in FINISHED:
                bar.update(1)
            counts = manifest.counts()
            bar.set_postfix({k: counts[k] for k in (FAILED, "diverged") if k in counts}, refresh=False)

        try:
            while todo:
                executor.run(todo, submitted, finished)
                todo = [t for t in todo if manifest.status(t.run_id) == FAILED and tries[t.run_id] <= retries]
        except BaseException:
            for row in manifest.rows.values():
                if row["status"] == RUNNING:
                    row["status"] = INTERRUPTED
            manifest.save()
            raise
        finally:
            bar.close()
    return manifest


def summary_line(manifest: Manifest) -> str:
    """'12 runs: 11 done, 1 failed' and the total worker time."""
    counts = manifest.counts()
    wall = sum(r["wall_s"] for r in manifest.rows.values() if not math.isnan(r["wall_s"]))
    parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return f"{len(manifest.rows)} runs: {parts}; {wall:.0f} s of worker time in the last attempts"
