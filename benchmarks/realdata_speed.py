"""Time per meta-iteration: the engine (torch.func, vmap over tasks) vs the authors' way.

The reference is ``realdata.reference.reference_meta_gradient``, the authors' per-task
autograd loop (docs/realdata.md). Before timing, the script checks in float64 that both compute the same
meta-gradient (relative difference <= 1e-9).

Cases (second order, 5 inner steps): Omniglot 5-way 1-shot, 32 tasks, 64 filters, and
Mini-ImageNet-sized inputs (84x84x3, 32 filters), 4 tasks; methods MAML and Sharp-MAML_both.
On CPU the defaults are smaller (fewer tasks, see ``--quick``). Also reported: peak GPU
memory, and the float32 meta-gradients' relative error against the float64 reference on the
same batch: the engine's (vmap) with TF32 off (its default) and on, and the reference's.

    python benchmarks/realdata_speed.py --out results/realdata/speed.json          # GPU: < 8 min
    python benchmarks/realdata_speed.py --quick --out results/realdata/speed.csv   # CPU: ~1-2 min
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from harness.meta import meta_gradient
from harness.precision import float32_precision
from harness.tree import Params
from infra.provenance import device_name, package_versions
from infra.store import atomic_write_bytes
from realdata.reference import Case, make_workload, meta_config, reference_meta_gradient, relative_error

AGREEMENT_TOLERANCE = 1e-9  # relative, engine vs reference, both in float64


GPU_CASES = (
    Case("omniglot-5w1s", 1, 28, 64, tasks=32, inner_lr=0.4),
    Case("mini-5w1s", 3, 84, 32, tasks=4, inner_lr=0.01, alpha=0.0005),
)
CPU_SCALE = {"omniglot-5w1s": {"tasks": 8}, "mini-5w1s": {"tasks": 2}}
QUICK_SCALE = {"omniglot-5w1s": {"tasks": 4, "filters": 32}, "mini-5w1s": {"tasks": 1}}
METHODS = ("maml", "sharp_both")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> dict[str, float]:
    """Median and min seconds per call after warm-up; peak GPU memory (MiB) of the timed calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    cuda = device.type == "cuda"
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else float("nan")
    return {"median_s": statistics.median(times), "min_s": min(times), "peak_mib": peak}


def run_case(
    case: Case, method: str, device: torch.device, warmup: int, repeats: int, executors: tuple[str, ...]
) -> dict[str, Any]:
    """One row: agreement check, timings of the reference and the engine, ratios, numerics.

    The agreement check runs in float64, where both must give the same meta-gradient up to
    rounding; float32 differs from float64 by much more (ties of ReLU/max-pool and the
    normalised perturbations amplify rounding), so its error is reported, not asserted.
    """
    cfg = {ex: meta_config(case, method, ex) for ex in executors}
    loss64, params64, tasks64 = make_workload(case, device, torch.float64)
    exact = reference_meta_gradient(loss64, params64, tasks64, cfg[executors[0]])
    row: dict[str, Any] = {**dataclasses.asdict(case), "method": method, "second_order": True}
    for ex in executors:
        err = relative_error(meta_gradient(loss64, params64, tasks64, cfg[ex]).grad, exact)
        row[f"agreement_fp64_{ex}"] = err
        if not err <= AGREEMENT_TOLERANCE:
            raise SystemExit(
                f"{case.name} {method}: engine ({ex}) and reference meta-gradients "
                f"differ by {err:.2e} (relative, float64) > {AGREEMENT_TOLERANCE}; "
                "not timing"
            )
    del loss64, params64, tasks64
    loss, params, tasks = make_workload(case, device, torch.float32)

    def reference() -> Params:
        with float32_precision(device, allow_tf32=False):
            return reference_meta_gradient(loss, params, tasks, cfg[executors[0]])

    timed = {"reference": reference}
    for ex in executors:
        timed[f"engine_{ex}"] = lambda c=cfg[ex]: meta_gradient(loss, params, tasks, c)
    for name, fn in timed.items():
        stats = time_call(fn, device, warmup, repeats)
        row.update({f"{name}_{k}": v for k, v in stats.items()})
    for ex in executors:
        row[f"speedup_{ex}"] = row["reference_median_s"] / row[f"engine_{ex}_median_s"]
    row["fp32_rel_err_reference"] = relative_error(reference(), exact)
    for tf32 in (False, True):
        c = meta_config(case, method, executors[0], allow_tf32=tf32)
        row[f"fp32_rel_err_tf32_{'on' if tf32 else 'off'}"] = relative_error(
            meta_gradient(loss, params, tasks, c).grad, exact
        )
    return row


def scaled_cases(device: torch.device, quick: bool) -> list[Case]:
    """GPU: the full cases; CPU: fewer tasks (``--quick``: fewer still, and 32 filters)."""
    scale = QUICK_SCALE if quick else (CPU_SCALE if device.type == "cpu" else {})
    return [dataclasses.replace(c, **scale.get(c.name, {})) for c in GPU_CASES]


def write_results(path: Path, rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """CSV (one row per case and method, metadata as columns) or JSON (metadata + rows)."""
    if path.suffix == ".csv":
        data = pd.DataFrame([{**meta, **r} for r in rows]).to_csv(index=False).encode()
    else:
        data = json.dumps({**meta, "rows": rows}, indent=2, default=float).encode()
    atomic_write_bytes(path, data)


def main(argv: list[str] | None = None) -> int:
    """Command line; prints a table and writes ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="results file, .json or .csv")
    parser.add_argument("--device", help="default: cuda if available, else cpu")
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats (CPU)")
    parser.add_argument("--warmup", type=int, help="untimed calls (default 2; quick 1)")
    parser.add_argument("--repeats", type=int, help="timed calls (default 5; quick 2)")
    parser.add_argument(
        "--no-loop",
        action="store_true",
        help="time only the vmap executor of the engine (not its loop executor)",
    )
    args = parser.parse_args(argv)
    if args.out.suffix not in (".json", ".csv"):
        parser.error(f"--out: expected a .json or .csv path, got {args.out}")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 5)
    if warmup < 0 or repeats < 1:
        parser.error("--warmup: expected >= 0 and --repeats: expected >= 1")
    executors = ("vmap",) if args.no_loop else ("vmap", "loop")
    meta = {
        "device": str(device),
        "device_name": device_name(device),
        "versions": package_versions(),
        "quick": args.quick,
        "warmup": warmup,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
    }
    print(f"device: {meta['device_name']} ({device}); warmup {warmup}, repeats {repeats}")
    started = time.perf_counter()
    rows = []
    for case in scaled_cases(device, args.quick):
        for method in METHODS:
            row = run_case(case, method, device, warmup, repeats, executors)
            rows.append(row)
            times = "  ".join(
                f"{name} {row[f'{name}_median_s'] * 1e3:8.1f} ms"
                for name in ("reference", *(f"engine_{e}" for e in executors))
            )
            speed = "  ".join(f"x{row[f'speedup_{e}']:.2f} ({e})" for e in executors)
            peak = "  ".join(
                f"{row[f'{n}_peak_mib']:.0f}" for n in ("reference", *(f"engine_{e}" for e in executors))
            )
            print(
                f"{case.name:14s} {method:10s} tasks {case.tasks:2d} filters {case.filters:2d}: "
                f"{times}  speedup {speed}  peak MiB {peak}  fp32 vs fp64: engine "
                f"{row['fp32_rel_err_tf32_off']:.1e} (TF32 off) "
                f"{row['fp32_rel_err_tf32_on']:.1e} (TF32 on), reference "
                f"{row['fp32_rel_err_reference']:.1e}",
                flush=True,
            )
    meta["total_s"] = time.perf_counter() - started
    write_results(args.out, rows, meta)
    print(f"{meta['total_s']:.0f} s; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
