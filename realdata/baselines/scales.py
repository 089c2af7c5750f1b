"""The scales of the measured baselines, importable without torch (the CLI lists them in
``--help``).

A scale is a fixed, short schedule on which every method gets one stored row: a preset, its
iterations, the training seeds, the test episodes and the device. ``ci`` runs on the CPU
(one pinned thread: deterministic, and immune to the stalls of two OpenMP threads on a busy
2-core machine; real Omniglot) and is what ``tox -e regression`` re-runs; ``gpu`` runs the
MAML Omniglot protocol for longer on a CUDA GPU and is skipped elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.config import METHODS
from realdata.defaults import MIN_TEST_EPISODES


@dataclass(frozen=True)
class Scale:
    """A schedule every method is measured on. The gate re-runs ``seeds``; ``update`` also
    runs the other ``spread_seeds`` to estimate the seed spread of the tolerance rule.
    ``threads`` pins torch's CPU threads (the numbers depend on them); None leaves them."""

    name: str
    description: str
    preset: str
    iterations: int
    seeds: tuple[int, ...]
    spread_seeds: tuple[int, ...]
    n_episodes: int
    device: str
    threads: int | None
    methods: tuple[str, ...] = tuple(METHODS)

    def unavailable(self) -> str:
        """Why this machine cannot measure the scale ('' when it can)."""
        import torch

        if self.device == "cuda" and not torch.cuda.is_available():
            return f"scale {self.name} needs a CUDA GPU; none here (torch.cuda.is_available() is False)"
        return ""


BASELINE_SCALES: dict[str, Scale] = {
    s.name: s
    for s in (
        Scale(
            "ci",
            "CPU, 1 thread: ci preset (real Omniglot 5-way 1-shot, 400 training "
            "classes, 32 filters), 80 iterations, 600 test episodes",
            preset="ci",
            iterations=80,
            seeds=(0, 1),
            spread_seeds=(0, 1, 2, 3),
            n_episodes=MIN_TEST_EPISODES,
            device="cpu",
            threads=1,
        ),
        Scale(
            "gpu",
            "CUDA GPU: omniglot-5w1s preset (MAML protocol, 32 tasks, 64 filters), "
            "2000 iterations, 1000 test episodes",
            preset="omniglot-5w1s",
            iterations=2000,
            seeds=(0, 1),
            spread_seeds=(0, 1, 2, 3),
            n_episodes=1000,
            device="cuda",
            threads=None,
        ),
    )
}
