"""Where the CPU time of a convergence run goes: imports, family builds (with the verification of
their constants) and every cell, per (family, check).

    python benchmarks/convergence_profile.py [--scale default|quick] [--steps 30]

A cell's cost is estimated from a short run of the same cell (its lanes, batch and method, the
first ``--steps`` steps) scaled to its full length: the per-step cost of a run is constant
(one batched meta-gradient and one exact grad F per step). Single-threaded, as the suite runs.
CPU seconds (``time.process_time``), so the numbers are comparable across loads; print
``uptime`` next to them anyway.
"""

from __future__ import annotations

import argparse
import functools
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default="default", choices=("quick", "default"))
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()

    start = time.process_time()
    from infra.seeding import DEFAULT_SEED
    from infra.threads import single_threaded
    from synthetic.problems.base import build_problem, family_names, missing_capabilities
    from synthetic.suites import CHECKS, CONVERGENCE_GRIDS

    print(f"imports: {time.process_time() - start:.1f} s CPU")
    costs: dict[tuple[str, str], float] = {}
    with single_threaded():
        for name in family_names():
            start = time.process_time()
            problem = build_problem(name, seed=DEFAULT_SEED)
            print(f"build {name} (with verification): {time.process_time() - start:.1f} s CPU")
            for check in CHECKS:
                if missing_capabilities(problem, check.needs):
                    continue
                for cell in next(check.start(problem, CONVERGENCE_GRIDS[args.scale], DEFAULT_SEED)):
                    seconds = cell_seconds(cell.compute, args.steps)
                    costs[(problem.label, check.name)] = costs.get((problem.label, check.name), 0.0) + seconds
                    print(f"  cell {cell.name:36s} ~{seconds:6.1f} s CPU")
    print("per (family, check), largest first:")
    for (family, check), seconds in sorted(costs.items(), key=lambda kv: -kv[1]):
        print(f"  {family:4s} {check:6s} {seconds:7.1f} s CPU")
    print(f"cells in all: {sum(costs.values()):.0f} s CPU")


def cell_seconds(compute: functools.partial, steps: int) -> float:
    """CPU seconds of a ``run_lanes`` cell, from a run of its longest lanes' first ``steps`` steps
    (after one warm-up), every lane shortened in proportion so that lanes leave the batch in
    the same pattern."""
    args = list(compute.args)
    full = np.asarray(args[5])  # run_lanes(problem, cfg, eta, alpha_low, alpha_up, steps, ...)
    args[5] = np.maximum(1, np.ceil(full * min(int(full.max()), steps) / full.max())).astype(int)
    short = functools.partial(compute.func, *args, **compute.keywords)
    short()
    start = time.process_time()
    short()
    return (time.process_time() - start) * int(full.max()) / min(int(full.max()), steps)


if __name__ == "__main__":
    main()
