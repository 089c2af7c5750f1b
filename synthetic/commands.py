"""``sharpmaml convergence``: the synthetic theory track's command."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from harness.config import require_int
from infra.errors import UsageError
from infra.seeding import DEFAULT_SEED

if TYPE_CHECKING:
    import pandas as pd


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("convergence", help="synthetic theory track: predictions table")
    add_suite_arguments(parser, Path("results/synthetic"))
    parser.set_defaults(handler=run)


def add_suite_arguments(parser: argparse.ArgumentParser, default_out: Path) -> None:
    """The flags every suite command shares: scale, results folder, seed, cache, progress."""
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument("--quick", action="store_const", dest="scale", const="quick", help="smoke-sized grid")
    scale.add_argument("--full", action="store_const", dest="scale", const="full", help="full-size grids")
    parser.add_argument("--out", type=Path, default=default_out, help="results folder")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="global seed (>= 0)")
    parser.add_argument("--fresh", action="store_true", help="ignore cached cells of an earlier run")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(scale="default")


def validate(args: argparse.Namespace) -> None:
    require_int(args.seed, "seed", minimum=0)
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out: expected a folder, but {args.out} is a file")


def print_table(predictions: pd.DataFrame) -> None:
    import pandas as pd

    cols = ["id", "source", "predicted", "measured", "ratio", "verdict"]
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 48):
        print(predictions[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    counts = predictions["verdict"].value_counts().to_dict()
    print("verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


def run_suite(args: argparse.Namespace, suite: Callable[[str, Path, int, bool, bool], pd.DataFrame]) -> int:
    """Run suite(scale, out, seed, fresh, progress) -> predictions single-threaded, print the
    table; exit code 1 when a prediction failed."""
    validate(args)
    from infra.threads import single_threaded
    from synthetic.suites import any_failed

    with single_threaded():
        predictions = suite(args.scale, args.out, args.seed, args.fresh, not args.no_progress)
    print_table(predictions)
    print(f"results written to {args.out}/")
    return 1 if any_failed(predictions) else 0


def run(args: argparse.Namespace) -> int:
    from synthetic.suites import run_convergence_suite

    return run_suite(args, run_convergence_suite)
