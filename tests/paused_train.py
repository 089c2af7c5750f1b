"""``sharpmaml train`` with a test-sized preset that pauses in the middle of one iteration.

Run as ``python -m tests.paused_train PAUSED GO sharpmaml-arguments...``: the real command line
(``infra.cli.main``, its signal handling and exit codes), with the preset ``tiny`` registered
and one hook: right after the parameter update of iteration ``PAUSE_AFTER + 1`` (before the
iteration is counted, logged or saved), the process creates the file PAUSED and waits until
GO exists. A test sends its signal during that wait, then creates GO, so the signal lands at
the same point of every run: no race with a fast loop.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from realdata.presets import PRESETS

TINY_TRAIN = PRESETS["ci"].replace(
    name="tiny",
    filters=4,
    meta_batch=2,
    queries=2,
    test_inner_steps=1,
    iterations=6,
    val_every=3,
    val_episodes=4,
    log_every=2,
    train_classes=40,
)
PAUSE_AFTER = 3  # iterations completed before the paused one
WAIT_LIMIT_S = 120.0


def register_tiny() -> None:
    """Make ``--preset tiny`` a choice of ``sharpmaml train`` in this process."""
    PRESETS[TINY_TRAIN.name] = TINY_TRAIN


def pause_mid_iteration(paused: Path, go: Path) -> None:
    """Patch the training loop: iteration PAUSE_AFTER + 1 waits for ``go`` after its update."""
    import realdata.train

    original = realdata.train._iteration

    def iteration(run: Any, bar: Any, postfix: dict[str, str]) -> float:
        if run.iteration != PAUSE_AFTER:
            return original(run, bar, postfix)
        step = run.learner.step

        def paused_step(batch: Any) -> Any:
            result = step(batch)
            paused.touch()
            started = time.monotonic()
            while not go.exists() and time.monotonic() - started < WAIT_LIMIT_S:
                time.sleep(0.01)
            return result

        run.learner.step = paused_step
        try:
            return original(run, bar, postfix)
        finally:
            del run.learner.step

    realdata.train._iteration = iteration


def main(argv: list[str]) -> int:
    from infra.cli import main as sharpmaml

    paused, go, *arguments = argv
    register_tiny()
    pause_mid_iteration(Path(paused), Path(go))
    return sharpmaml(arguments)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
