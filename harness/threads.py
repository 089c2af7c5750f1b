"""Intra-op thread control for suites of many tiny tensor operations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run the block on one intra-op thread, then restore the previous count.

    The synthetic suites work on vectors of a few dozen entries: a second thread only adds
    synchronisation, and on a busy 2-core machine it made the convergence suite's E2 cells
    6x slower (7.7 s vs 44 s). One thread also keeps CPU results independent of the core count.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
