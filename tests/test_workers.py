"""infra.workers: the worker-process pool behind the sweep's local executor and the gate."""

from __future__ import annotations

import math
import os
import time

import pytest

from infra.errors import UsageError
from infra.workers import require_jobs, run_in_workers


def test_jobs_default_to_the_cores_and_reject_non_positive_counts():
    assert require_jobs(None) == (os.cpu_count() or 1) and require_jobs(3) == 3
    for bad in (0, -1, True, 1.5, "2"):
        with pytest.raises(UsageError, match="--jobs: expected an integer >= 1"):
            require_jobs(bad)


def test_each_task_comes_back_with_its_result_or_its_error():
    done, submitted = {}, []

    def on_done(task, result, error, job_id):
        done[task] = (result, type(error).__name__ if error else None, job_id)

    run_in_workers(math.sqrt, [4.0, -1.0, 9.0], 2, on_done, submitted.append)
    assert submitted == [4.0, -1.0, 9.0]
    assert {t: r[:2] for t, r in done.items()} == {
        4.0: (2.0, None),
        -1.0: (None, "ValueError"),
        9.0: (3.0, None),
    }
    pids = {int(r[2].split(":")[1]) for r in done.values() if r[1] is None}
    assert os.getpid() not in pids  # ran in worker processes


def test_a_callback_that_raises_stops_the_workers_at_once():
    def on_done(task, result, error, job_id):
        raise RuntimeError("stop")

    started = time.monotonic()
    with pytest.raises(RuntimeError, match="stop"):
        run_in_workers(time.sleep, [0, 600], 2, on_done, disposable=True)
    assert time.monotonic() - started < 300  # not the 600 s the second task would take
