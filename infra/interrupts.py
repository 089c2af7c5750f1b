"""Stopping long work cleanly on SIGINT (Ctrl-C) and SIGTERM (a scheduler's time limit).

A signal that lands in the middle of a step would leave half-updated state behind, so inside
``stop_requests(...)`` the first SIGINT or SIGTERM only records the request (and says so on
stderr); the work calls ``stop_point()`` where its state is consistent and on disk (after a
checkpoint, after a stored cell), which raises ``infra.errors.Interrupted``: the CLI then exits
2 with the command's resume line (``args.resume_hint``). A second signal raises at once.
Outside the main thread signals cannot be handled, and the block runs unchanged.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from infra.errors import Interrupted

HANDLED = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Whether a stop was asked for, and by which signal."""

    def __init__(self, finishing: str) -> None:
        self.finishing = finishing
        self.signal_name: str | None = None

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested:
            raise Interrupted(name)
        self.signal_name = name
        print(
            f"{name} received: {self.finishing}; send it again to stop at once", file=sys.stderr, flush=True
        )

    def stop_point(self) -> None:
        """Raise Interrupted if a stop was requested (call where stopping loses nothing)."""
        if self.signal_name is not None:
            raise Interrupted(self.signal_name)


_active: list[StopRequest] = []


@contextmanager
def stop_requests(finishing: str) -> Iterator[StopRequest]:
    """Defer SIGINT and SIGTERM to the block's stop points; ``finishing`` says what the work
    does before it stops (``"finishing the current cell"``). A request that comes after the
    last stop point lets the work complete."""
    request = StopRequest(finishing)
    try:  # a signal the process ignores stays ignored (a worker leaves SIGINT to its parent)
        previous = {
            s: signal.signal(s, request.handle) for s in HANDLED if signal.getsignal(s) != signal.SIG_IGN
        }
    except ValueError:  # not the main thread
        yield request
        return
    _active.append(request)
    try:
        yield request
    finally:
        _active.remove(request)
        for s, handler in previous.items():
            signal.signal(s, handler)


def stop_point() -> None:
    """Raise Interrupted if a signal asked the innermost ``stop_requests`` block to stop;
    nothing outside one (library code can call it unconditionally)."""
    if _active:
        _active[-1].stop_point()
