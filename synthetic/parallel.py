"""Run the checks of a suite with their cells computed in parallel processes.

A check is a generator (``synthetic.checks.common.CheckRun``): it yields every cell it needs
at once and receives their results. ``run_checks`` advances all checks together, so all
their cells form one round of independent work: cached cells are read, the others are
computed in ``jobs`` forked worker processes, largest first, and each result is stored in
the cell cache by the worker that computed it.

Signals stay with the parent: a worker ignores SIGINT (a terminal sends it to the whole process
group) and keeps SIGTERM's default action, so ``Pool.terminate`` ends it (a worker that
inherited the parent's deferred handler, ``infra.interrupts``, would wait for a next cell
forever). The parent stops at the next finished cell when asked (``stop_point``): the cells
finished by then are stored, the ones in progress are given up.

Bit-identical to one process: a cell is a deterministic function of its inputs (every random
draw from a generator the cell carries, one intra-op thread in every process), so which
process computes it changes nothing. Workers are forked (they inherit the built problems and
the imported modules: no pickling of closures, no second torch import); results come back as
plain data (``LaneResults``: numbers and arrays).
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable
from typing import Any

import torch
from tqdm import tqdm

from infra.errors import stage
from infra.interrupts import stop_point
from synthetic.checks.common import Cell, CheckOutput, CheckRun

CellCacheFn = Callable[[str, dict[str, Any], Callable[[], Any]], Any]

# The round a forked worker computes from: set in the parent just before the fork.
_ROUND: list[Cell] = []
_CACHE: list[CellCacheFn] = []


def run_checks(
    started: list[tuple[str, CheckRun]], cache: CellCacheFn, jobs: int, bar: tqdm | None = None
) -> list[CheckOutput]:
    """Drive every check to its output; ``started`` pairs a stage name (for error messages)
    with a check generator. Outputs come in the order of ``started``."""
    outputs: list[CheckOutput | None] = [None] * len(started)
    pending: dict[int, list[Cell]] = {}
    for i, (name, run) in enumerate(started):
        _advance(i, name, run, None, pending, outputs)
    while pending:
        order = list(pending)
        cells = [cell for i in order for cell in pending[i]]
        if bar is not None:
            bar.total = (bar.total or 0) + len(cells)
            bar.refresh()
        results = iter(compute_cells(cells, cache, jobs, bar))
        batches = {i: [next(results) for _ in pending[i]] for i in order}
        pending = {}
        for i in order:
            _advance(i, started[i][0], started[i][1], batches[i], pending, outputs)
    return [output for output in outputs if output is not None]


def _advance(
    i: int,
    name: str,
    run: CheckRun,
    results: list[Any] | None,
    pending: dict[int, list[Cell]],
    outputs: list[CheckOutput | None],
) -> None:
    with stage(name):
        try:
            pending[i] = next(run) if results is None else run.send(results)
        except StopIteration as stop:
            outputs[i] = stop.value


def compute_cells(cells: list[Cell], cache: CellCacheFn, jobs: int, bar: tqdm | None = None) -> list[Any]:
    """Every cell's result through the cache, in the order of ``cells``; ``jobs`` > 1 forks
    that many workers (never more than cells)."""
    workers = min(jobs, len(cells))
    results: list[Any] = [None] * len(cells)
    if workers <= 1:
        for i, cell in enumerate(cells):
            results[i] = _cached(cache, cell)
            if bar is not None:
                bar.update(1)
        return results
    stop_point()
    _ROUND[:] = cells
    _CACHE[:] = [cache]
    largest_first = sorted(range(len(cells)), key=lambda i: -cells[i].cost)
    try:
        with multiprocessing.get_context("fork").Pool(workers, initializer=_worker_init) as pool:
            for i, result in pool.imap_unordered(_compute, largest_first):
                results[i] = result
                if bar is not None:
                    bar.update(1)
                stop_point()
    finally:
        _ROUND.clear()
        _CACHE.clear()
    return results


def _cached(cache: CellCacheFn, cell: Cell) -> Any:
    with stage(f"cell {cell.name}"):
        return cache(cell.name, cell.key, cell.compute)


def _worker_init() -> None:
    """One intra-op thread; SIGINT ignored and SIGTERM at its default (see the module's docstring)."""
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _compute(i: int) -> tuple[int, Any]:
    return i, _cached(_CACHE[0], _ROUND[i])
