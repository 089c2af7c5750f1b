"""How long the CLI takes to answer ``--help`` and a flag error, next to ``import torch``.

Each case is a fresh interpreter (what a user waits for), run interleaved with the others so a
busy machine slows them alike; the script prints the median wall time of each and its ratio to
``import torch`` (the cost every command paid before the command modules imported lazily), plus
the load average. Target: ``--help`` and flag errors under one second.

    python benchmarks/cli_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = {
    "python -c pass": ["-c", "pass"],
    "sharpmaml --help": ["-m", "infra", "--help"],
    "sharpmaml train --help": ["-m", "infra", "train", "--help"],
    "sharpmaml evaluate (flag error)": ["-m", "infra", "evaluate", "--episodes", "x", "ckpt.pt"],
    "python -c 'import torch'": ["-c", "import torch"],
}
REFERENCE = "python -c 'import torch'"


def wall_time(arguments: list[str]) -> float:
    """Seconds one fresh interpreter takes to run ``arguments`` (its output discarded)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    subprocess.run([sys.executable, *arguments], cwd=REPO, env=env, capture_output=True, check=False)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of each case (default 5)")
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.repeats):
        for name, arguments in CASES.items():
            times[name].append(wall_time(arguments))
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}; {args.repeats} runs each")
    for name, median in medians.items():
        print(f"{name:34s} median {median:6.2f} s  ({median / medians[REFERENCE]:.3f} x import torch)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
