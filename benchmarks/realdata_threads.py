"""Intra-op threads on the CPU: 1 vs 2 threads per task for training and evaluation, side by side.

For each preset (``ci``, ``ci-20w1s``; random 28x28 images so no data is needed), the script
alternates 1-thread and 2-thread rounds (A B A B ...) of the same work: meta-iterations of
``MetaLearner.step`` on a fixed batch, and test-time adaptation of fixed episodes
(``episode_accuracies``). It prints the median seconds per unit for each thread count, their
ratio, and the load average before and after (absolute times on a shared machine are noise;
the ratio measured in the same minutes is the number). The default of ``--threads``
(``infra.threads.DEFAULT_CPU_THREADS``) comes from this measurement (docs/realdata.md).

    python benchmarks/realdata_threads.py [--rounds 3] [--out results.csv]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import pandas as pd
import torch

from infra.store import write_table
from infra.threads import cpu_threads
from realdata.datasets import ClassImages, DatasetSplits, fixed_test_episodes
from realdata.presets import train_config
from realdata.train import _Run, episode_accuracies

THREADS = (1, 2)


def random_splits(seed: int = 0) -> DatasetSplits:
    """400 / 100 / 100 classes of 20 random 28x28 images (the work, not the accuracy, matters)."""
    g = torch.Generator().manual_seed(seed)

    def part(n: int) -> ClassImages:
        images = torch.randint(0, 256, (n, 20, 1, 28, 28), generator=g, dtype=torch.uint8)
        return ClassImages(images, tuple(str(i) for i in range(n)))

    return DatasetSplits(part(400), part(100), part(100), False, None)


def measure(preset: str, rounds: int, iterations: int, episodes: int) -> list[dict]:
    """Median s/meta-iteration and s/test episode for each thread count, alternating rounds."""
    config = train_config(preset, "maml")
    p = config.preset
    run = _Run(config, random_splits(), Path("unused"), torch.device("cpu"))
    batch = run.sampler.sample_batch(p.meta_batch)
    test = fixed_test_episodes(random_splits().test, p.ways, p.shots, p.queries, episodes, allow_small=True)
    eval_cfg = config.eval_meta_config()
    times: dict[tuple[str, int], list[float]] = {}

    def train_work() -> None:
        for _ in range(iterations):
            run.learner.step(batch)

    def eval_work() -> None:
        episode_accuracies(
            run.loss, run.learner.params, test.batches(episodes), eval_cfg, torch.device("cpu")
        )

    for work, unit, n in ((train_work, "meta-iteration", iterations), (eval_work, "test episode", episodes)):
        with cpu_threads(1):
            work()  # warm-up
        for _ in range(rounds):
            for threads in THREADS:
                with cpu_threads(threads):
                    start = time.perf_counter()
                    work()
                    times.setdefault((unit, threads), []).append((time.perf_counter() - start) / n)
    rows = []
    for unit in ("meta-iteration", "test episode"):
        one, two = (statistics.median(times[(unit, t)]) for t in THREADS)
        rows.append(
            {
                "preset": preset,
                "unit": unit,
                "s_1_thread": one,
                "s_2_threads": two,
                "ratio_2_over_1": two / one,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per thread count")
    parser.add_argument("--iterations", type=int, default=2, help="meta-iterations per round")
    parser.add_argument("--episodes", type=int, default=10, help="test episodes per round")
    parser.add_argument("--presets", nargs="+", default=["ci", "ci-20w1s"])
    parser.add_argument("--out", type=Path, help="also write the table (.csv or .parquet)")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    rows = [
        row for preset in args.presets for row in measure(preset, args.rounds, args.iterations, args.episodes)
    ]
    load_after = os.getloadavg()
    table = pd.DataFrame(rows)
    table["cpu_count"] = os.cpu_count()
    table["load_1min_before"], table["load_1min_after"] = load_before[0], load_after[0]
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"load average (1, 5, 15 min) before {load_before}, after {load_after}; {os.cpu_count()} CPUs")
    if args.out is not None:
        write_table(table, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
