"""Where the runs of a sweep execute: a local process pool (default) or SLURM through submitit.

Both take the runs to do and two callbacks (``on_submit(task, job_id)``,
``on_done(task, outcome, job_id)``) and return when every run has an outcome. The worker function is
``realdata.sweep.runner.execute_run`` in both; it resumes whatever the run folder holds, so an
interrupted pool, a cancelled job or a requeued one continues from the run's ``last.pt``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from infra.errors import UsageError
from infra.workers import LOCAL_JOB, require_jobs, run_in_workers
from realdata.sweep.runner import FAILED, RunOutcome, execute_run
from realdata.sweep.spec import RunTask, SlurmOptions

OnSubmit = Callable[[RunTask, str], None]
OnDone = Callable[[RunTask, RunOutcome, str], None]
POLL_S = 2.0  # how often the submitit executor looks at its jobs


class Executor(Protocol):
    def run(self, tasks: Sequence[RunTask], on_submit: OnSubmit, on_done: OnDone) -> None: ...


class LocalExecutor:
    """``jobs`` worker processes (``infra.workers``: spawned, one intra-op thread each), one run
    each at a time."""

    def __init__(self, jobs: int | None = None) -> None:
        self.jobs = require_jobs(jobs)

    def run(self, tasks: Sequence[RunTask], on_submit: OnSubmit, on_done: OnDone) -> None:
        def finished(
            task: RunTask, outcome: RunOutcome | None, error: BaseException | None, job: str
        ) -> None:
            on_done(task, _lost(task, error) if error is not None else outcome, job)

        # Interrupted: run_in_workers stops the workers; their runs resume from last.pt next time.
        run_in_workers(execute_run, tasks, self.jobs, finished, lambda task: on_submit(task, LOCAL_JOB))


def _lost(task: RunTask, exc: BaseException) -> RunOutcome:
    nan = float("nan")
    return RunOutcome(task.run_id, FAILED, 0, nan, nan, nan, f"worker lost: {type(exc).__name__}: {exc}")


class SweepJob:
    """The callable submitit pickles into each job: one run. Requeue-safe (a Checkpointable):
    on a time limit or preemption submitit calls ``checkpoint`` and requeues the same run, which
    resumes from its ``last.pt``."""

    def __call__(self, task: RunTask) -> RunOutcome:
        return execute_run(task)

    def checkpoint(self, task: RunTask) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(SweepJob(), task)


def _require_submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise UsageError(
            "--executor slurm: needs submitit; install the extra: pip install 'sharp-maml-bench[slurm]'"
        ) from None
    return submitit


class SubmititExecutor:
    """One submitit job per run, submitted as a job array. ``options.cluster`` "slurm" submits
    to SLURM (sbatch); "local" runs the same jobs as local subprocesses (submitit's
    LocalExecutor: real pickling, job folders and signals, no cluster needed)."""

    def __init__(self, folder: Path, options: SlurmOptions) -> None:
        submitit = _require_submitit()
        self.options = options
        cluster = None if options.cluster == "slurm" else options.cluster
        try:
            self.executor = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster)
        except RuntimeError as exc:  # no sbatch on this machine
            raise UsageError(f"--executor slurm: {exc}") from None
        params: dict[str, Any] = {"name": "sharpmaml-sweep"}
        for key, value in (
            ("timeout_min", options.time_min),
            ("gpus_per_node", options.gpus_per_job),
            ("cpus_per_task", options.cpus_per_job),
            ("slurm_partition", options.partition),
            ("slurm_array_parallelism", options.array_parallelism),
        ):
            if value is not None:
                params[key] = value
        self.executor.update_parameters(**params)
        self.jobs: dict[str, Any] = {}  # run id -> submitit job (tests reach in to interrupt one)

    def submit(self, tasks: Sequence[RunTask]) -> list[Any]:
        """Submit the runs as one job array; the jobs in the order of ``tasks``."""
        jobs = self.executor.map_array(SweepJob(), list(tasks))
        self.jobs.update({t.run_id: j for t, j in zip(tasks, jobs)})
        return jobs

    def run(self, tasks: Sequence[RunTask], on_submit: OnSubmit, on_done: OnDone) -> None:
        tasks = [dataclasses.replace(t, threads=self.options.cpus_per_job, device=None) for t in tasks]
        jobs = self.submit(tasks)
        for task, job in zip(tasks, jobs):
            on_submit(task, str(job.job_id))
        pending = {task.run_id: (task, job) for task, job in zip(tasks, jobs)}
        try:
            while pending:
                for run_id, (task, job) in list(pending.items()):
                    if not job.done():
                        continue
                    del pending[run_id]
                    try:
                        outcome = job.result()
                    except Exception as exc:  # noqa: BLE001 - the job died (cancelled, node failure)
                        outcome = _lost(task, exc)
                    on_done(task, outcome, str(job.job_id))
                if pending:
                    time.sleep(POLL_S)
        except BaseException:
            for _, job in pending.values():  # their runs resume from last.pt on the next sweep
                job.cancel(check=False)
            raise
