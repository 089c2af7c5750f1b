"""Parallel worker processes: a picklable function run over many tasks on ``jobs`` processes.

Used by the sweep's local executor and by the regression gate: their runs are independent
trainings of tiny convolutions, so the parallelism is across runs and each worker keeps one
intra-op thread (fastest for these sizes, and CPU numbers depend on the thread count). Workers
are spawned: nothing is inherited from the parent (dataset, torch's thread pool, signal
handlers). Results arrive in completion order together with their task, so a caller that
needs an order (the gate's seeds) keeps it itself and the numbers do not depend on ``jobs``.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, TypeVar

from infra.errors import UsageError

T = TypeVar("T")
R = TypeVar("R")
# How worker processes start. Tests that patch modules of this process (toy presets, a
# degraded model) switch it to "fork" so that the workers see the patches.
START_METHOD = "spawn"
LOCAL_JOB = "local"  # the job id of a task submitted to the pool and not finished yet


def require_jobs(jobs: Any) -> int:
    """``jobs`` as a number of worker processes (None: the number of cores); UsageError otherwise."""
    jobs = (os.cpu_count() or 1) if jobs is None else jobs
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise UsageError(f"--jobs: expected an integer >= 1, got {jobs!r}")
    return jobs


def _pinned_worker() -> None:
    """Worker initialiser: one intra-op thread, and SIGINT ignored. Ctrl-C reaches the whole
    process group; the parent alone answers it, by stopping the workers (see run_in_workers),
    so that a worker's deferred stop is not cut short by the second signal."""
    import torch

    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _call(worker: Callable[[T], R], task: T) -> tuple[R, str]:
    return worker(task), f"{LOCAL_JOB}:{os.getpid()}"


def run_in_workers(
    worker: Callable[[T], R],
    tasks: Sequence[T],
    jobs: int,
    on_done: Callable[[T, R | None, BaseException | None, str], None],
    on_submit: Callable[[T], None] | None = None,
    *,
    disposable: bool = False,
) -> None:
    """Run ``worker(task)`` for every task on ``jobs`` worker processes.

    ``on_submit(task)`` follows each submission; ``on_done(task, result, error, job_id)`` each
    end, in the parent, as it happens: ``error`` is the exception the worker raised or that lost
    it (killed, out of memory; ``result`` None then), ``job_id`` ``local:<worker pid>``. When a
    callback raises, or the parent is interrupted, the workers are stopped and the exception
    propagates: with SIGTERM, which a training worker answers by saving ``last.pt`` after its
    current iteration (a sweep resumes from it), or with SIGKILL when ``disposable`` (work that
    nothing resumes, e.g. the gate's temporary runs: no reason to wait for a checkpoint).
    """
    context = multiprocessing.get_context(START_METHOD)
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_pinned_worker)
    try:
        futures = {}
        for task in tasks:
            futures[pool.submit(_call, worker, task)] = task
            if on_submit is not None:
                on_submit(task)
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                try:
                    result, job_id = future.result()
                except Exception as exc:  # noqa: BLE001 - reported to the caller, who decides
                    on_done(futures[future], None, exc, LOCAL_JOB)
                else:
                    on_done(futures[future], result, None, job_id)
    except BaseException:
        for process in list(getattr(pool, "_processes", {}).values()):
            if disposable:
                process.kill()
            else:
                process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
