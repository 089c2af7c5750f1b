"""Cost per meta-iteration of the cheaper Sharp-MAML candidates, relative to MAML, side by side.

Every variant is a ``MetaLearner`` built from ``train_config(preset, method, **candidates)``
(the ``ci`` preset by default: Omniglot 5-way 1-shot shapes, Conv4 with 32 filters, 8 tasks,
1 inner step) on one random task batch; cost does not depend on the pixels. The variants are
timed in interleaved rounds (each round times ``block`` consecutive steps of every variant,
in a new order each round), so a change of machine load hits all of them alike; the
median seconds per step over rounds is divided by MAML's. ``block`` is a multiple of every
``ascent_every`` measured, so a reuse variant is charged its recomputations. The load
average before and after is printed: absolute times are meaningless on a shared machine.

    python benchmarks/efficient_cost.py                     # ci preset, CPU, ~3 min
    python benchmarks/efficient_cost.py --rounds 3 --out results/realdata/efficient_cost.csv
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from harness.learner import MetaLearner, adam
from harness.tasks import TaskBatch
from infra.store import write_table
from realdata.presets import CANDIDATE_DEFAULTS, PRESETS, train_config
from realdata.reference import Case, make_workload

# (label, method, candidate settings): the plain methods, then each candidate reading.
VARIANTS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("maml", "maml", {}),
    ("sharp_low", "sharp_low", {}),
    ("sharp_up", "sharp_up", {}),
    ("sharp_both", "sharp_both", {}),
    ("maml head", "maml", {"inner_params": "head"}),
    ("sharp_both head", "sharp_both", {"inner_params": "head"}),
    ("sharp_up k=5", "sharp_up", {"ascent_every": 5}),
    ("sharp_both k=5", "sharp_both", {"ascent_every": 5}),
    ("sharp_both head k=5", "sharp_both", {"inner_params": "head", "ascent_every": 5}),
    ("sharp_low f=0.5", "sharp_low", {"lower_fraction": 0.5}),
    ("sharp_both f=0.5", "sharp_both", {"lower_fraction": 0.5}),
)


def learners(preset_name: str) -> tuple[dict[str, MetaLearner], TaskBatch]:
    """One learner per variant, all from the same initial parameters, and a task batch of the
    preset's shapes (Omniglot's 28x28 grey images)."""
    p = PRESETS[preset_name]
    case = Case(p.name, 1, 28, p.filters, tasks=p.meta_batch, ways=p.ways, shots=p.shots, queries=p.queries)
    loss, params, tasks = make_workload(case, torch.device("cpu"), torch.float32)
    out = {}
    for label, method, candidates in VARIANTS:
        cfg = train_config(p, method, overrides=candidates).meta_config()
        out[label] = MetaLearner(loss, params, cfg, adam(p.meta_lr), seed=0)
    return out, tasks


def measure(preset_name: str, rounds: int, block: int, seed: int) -> pd.DataFrame:
    """Median seconds per step of every variant over interleaved rounds, and ratio to MAML."""
    models, tasks = learners(preset_name)
    for model in models.values():  # warm-up: first calls pay one-off costs
        model.step(tasks)
    order = list(models)
    shuffle = random.Random(seed)
    times: dict[str, list[float]] = {label: [] for label in models}
    for _ in range(rounds):
        shuffle.shuffle(order)
        for label in order:
            started = time.perf_counter()
            for _ in range(block):
                models[label].step(tasks)
            times[label].append((time.perf_counter() - started) / block)
    maml = statistics.median(times["maml"])
    rows = []
    for label, method, candidates in VARIANTS:
        median = statistics.median(times[label])
        rows.append(
            {
                "variant": label,
                "method": method,
                **{k: candidates.get(k, default) for k, default in CANDIDATE_DEFAULTS.items()},
                "s_per_step": median,
                "ratio_to_maml": median / maml,
                "ratio_spread": (min(times[label]) / maml, max(times[label]) / maml),
            }
        )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="ci", choices=list(PRESETS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--block", type=int, default=5, help="steps per timing (a multiple of k=5)")
    parser.add_argument("--seed", type=int, default=0, help="order of the variants in each round")
    parser.add_argument("--out", type=Path, help="also write the table (csv or parquet)")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    load_before = os.getloadavg()
    table = measure(args.preset, args.rounds, args.block, args.seed)
    load_after = os.getloadavg()
    with pd.option_context("display.width", 140, "display.max_columns", 20):
        print(table.drop(columns=["ratio_spread"]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("ratio spread (min, max over rounds):")
    for row in table.itertuples():
        print(f"  {row.variant:22s} {row.ratio_spread[0]:.2f} .. {row.ratio_spread[1]:.2f}")
    print(
        f"preset {args.preset}, CPU, {torch.get_num_threads()} thread(s), {args.rounds} rounds x "
        f"{args.block} steps; load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )
    if args.out is not None:
        write_table(table.assign(ratio_spread=table["ratio_spread"].astype(str)), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
