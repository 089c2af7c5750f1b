"""One run of a sweep, as a worker executes it: train in segments, evaluate ``last.pt`` at each point.

The run is the existing ``realdata.train.train`` (resume from ``last.pt``, checkpoints,
provenance) and ``realdata.evaluate.evaluate_checkpoint`` (the fixed test episodes). Training
stops at every evaluation point (``stop_at``) and the checkpoint of that iteration is scored;
a rerun skips the points whose rows are already in the run's ``evaluations.parquet`` and
continues training from ``last.pt``, so an interrupted or requeued run loses at most the
iterations since its last checkpoint. Nothing here raises: an error becomes a ``failed``
outcome with its message (the traceback goes to the run folder's ``error.log``).
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from realdata.sweep.spec import RunTask

EVALUATIONS = "evaluations.parquet"
ERROR_LOG = "error.log"
DONE, FAILED, DIVERGED = "done", "failed", "diverged"


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended: status (done, failed, diverged), iterations trained, the primary test
    accuracy (percent) at the sweep's iteration budget, training seconds per iteration."""

    run_id: str
    status: str
    iteration: int
    final_accuracy: float
    train_s_per_iteration: float
    wall_s: float
    error: str = ""


def _evaluated(path: Path) -> set[tuple[int, str]]:
    """(iteration, inner loop) pairs already scored in the run's evaluations table."""
    from infra.store import read_table

    if not path.exists():
        return set()
    frame = read_table(path)
    return set(zip(frame["iterations"].astype(int), frame["eval_inner_loop"]))


def _evaluate_point(task: RunTask, data, iteration: int, table: Path) -> float:  # noqa: ANN001
    """Score last.pt (at ``iteration``) with each inner loop the point needs; primary accuracy."""
    from infra.store import read_table
    from realdata.evaluate import append_row, evaluate_checkpoint

    config = task.train_config
    loops = task.inner_loops if iteration in task.final_points else task.inner_loops[:1]
    done = _evaluated(table)
    perturbed_eval = config.meta_config().uses_lower_perturbation
    for loop in loops:
        if (iteration, loop) in done:
            continue
        if not perturbed_eval and loop != loops[0]:
            # Without a lower perturbation every test-time inner loop is plain MAML adaptation:
            # the first loop's row is this loop's number, by construction.
            first = read_table(table)
            row = first[(first["iterations"] == iteration) & (first["eval_inner_loop"] == loops[0])]
            append_row(table, {**row.iloc[0].to_dict(), "eval_inner_loop": loop})
            continue
        evaluate_checkpoint(
            Path(task.run_dir) / "last.pt",
            n_episodes=task.episodes,
            test_seed=task.test_seed,
            eval_inner_loop=loop,
            device=task.device,
            data=data,
            results=table,
        )
    frame = read_table(table)
    primary = frame[(frame["iterations"] == iteration) & (frame["eval_inner_loop"] == task.inner_loops[0])]
    return float(primary["accuracy"].iloc[-1])


def execute_run(task: RunTask) -> RunOutcome:
    """Train and evaluate one run to its last point; resumes whatever the run folder holds."""
    run_dir, started = Path(task.run_dir), time.perf_counter()
    try:
        from infra.threads import cpu_threads
        from realdata.data import worker_dataset
        from realdata.train import LAST, train

        config = task.train_config
        table = run_dir / EVALUATIONS
        accuracy, per_iteration = float("nan"), float("nan")
        with cpu_threads(task.threads):
            data = worker_dataset(config.preset.dataset, task.data_root, config.preset.split)
            for point in task.points:
                result = train(
                    config,
                    run_dir,
                    device=task.device,
                    resume=(run_dir / LAST).exists(),
                    stop_at=point,
                    data=data,
                    progress=False,
                )
                if result.status == DIVERGED:
                    return RunOutcome(
                        task.run_id, DIVERGED, result.iteration, accuracy, per_iteration, _since(started)
                    )
                per_iteration = result.elapsed_s / max(result.iteration, 1)
                point_accuracy = _evaluate_point(task, data, point, table)
                if point == task.final_points[0]:
                    accuracy = point_accuracy
        return RunOutcome(task.run_id, DONE, task.points[-1], accuracy, per_iteration, _since(started))
    except Exception as exc:  # noqa: BLE001 - a worker reports, the sweep decides about retries
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / ERROR_LOG).write_text(f"{time.ctime()}\n{traceback.format_exc()}", encoding="utf-8")
        return RunOutcome(
            task.run_id,
            FAILED,
            0,
            float("nan"),
            float("nan"),
            _since(started),
            f"{type(exc).__name__}: {exc}",
        )


def _since(started: float) -> float:
    return time.perf_counter() - started
