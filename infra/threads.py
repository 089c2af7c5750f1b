"""Intra-op thread control: results on the CPU depend on the thread count, and tiny tensors
run faster on one thread."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """Pin torch's intra-op CPU threads for the block, then restore them (None: leave them)."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run the block on one intra-op thread.

    The synthetic suites work on vectors of a few dozen entries: a second thread only adds
    synchronisation, and on a busy 2-core machine it made the convergence suite's E2 cells
    6x slower (7.7 s vs 44 s). One thread also keeps CPU results independent of the core count.
    """
    with cpu_threads(1):
        yield
