"""Intra-op thread control: results on the CPU depend on the thread count, and tiny tensors
run faster on one thread. Importable without torch: the CLI adds ``--threads`` before torch
loads."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

# What the real-data commands' ``--threads`` means when omitted on the CPU. Measured with
# benchmarks/realdata_threads.py (docs/realdata.md, "Threads"): one thread per process was
# never slower than two on the 2-core machine, and several times faster under load.
DEFAULT_CPU_THREADS = 1
MAX_THREADS = 256  # a typo guard: more threads than any CPU here has cores


def add_threads_argument(parser: argparse.ArgumentParser, default: str) -> None:
    """``--threads N`` (dest ``threads``, None when omitted); ``default`` says what None means."""
    parser.add_argument(
        "--threads", type=int, metavar="N", help=f"torch intra-op CPU threads (default: {default})"
    )


def threads_for(threads: int | None, device_type: str) -> int | None:
    """The intra-op thread count to pin: ``threads`` when given (an integer >= 1, ConfigError
    naming ``threads`` otherwise), else ``DEFAULT_CPU_THREADS`` on the CPU and None (torch's
    own) on an accelerator, whose kernels do not run on these threads."""
    from harness.config import require_int

    if threads is not None:
        require_int(threads, "threads", minimum=1, maximum=MAX_THREADS)
        return threads
    return DEFAULT_CPU_THREADS if device_type == "cpu" else None


@contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """Pin torch's intra-op CPU threads for the block, then restore them (None: leave them)."""
    import torch

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
