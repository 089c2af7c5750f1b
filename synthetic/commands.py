"""``sharpmaml convergence``: the synthetic theory track's command, and the flags, comparison with
the expected verdicts and exit codes it shares with ``sharpmaml generalization``."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from harness.config import require_int
from infra.errors import UsageError, stage
from infra.paths import DEFAULT_RESULTS
from infra.seeding import DEFAULT_SEED
from infra.store import require_writable

if TYPE_CHECKING:
    import pandas as pd

PREDICTION_FILES = ("predictions.parquet", "predictions.csv")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convergence",
        help="synthetic theory track: predictions table",
        description="Run the convergence suite and compare its verdicts with the stored expected "
        "verdicts (docs/theory.md#expected-verdicts).",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_suite_arguments(parser, DEFAULT_RESULTS / "synthetic")
    parser.add_argument(
        "--family",
        action="append",
        metavar="NAME",
        help="run only this problem family (repeatable; default: every registered family)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="processes that compute cells (default: one per core; results are identical for any N)",
    )
    parser.set_defaults(handler=run)


EXIT_CODES = """exit codes:
  0  every verdict as expected (known findings show as FINDING), or --update-expected done
  1  a verdict differs from the expected file (unexpected FAIL, CHANGED, NEW, missing id);
     at a seed or scale the file does not store: any FAIL (the table says it is uncompared)
  2  interrupted (cells computed so far are kept; rerun the same command to resume)
  3  internal error (one line naming the stage; the traceback goes to a log file)
  4  usage error (bad flags, invalid expected file, --update-expected where CI is set)"""


def add_suite_arguments(parser: argparse.ArgumentParser, default_out: Path) -> None:
    """The flags every suite command shares: scale, results folder, seed, cache, progress, the
    expected verdicts."""
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument("--quick", action="store_const", dest="scale", const="quick", help="smoke-sized grid")
    scale.add_argument("--full", action="store_const", dest="scale", const="full", help="full-size grids")
    parser.add_argument("--out", type=Path, default=default_out, help="results folder")
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help="global seed (>= 0); verdicts are compared only at a (scale, seed) the expected file stores",
    )
    parser.add_argument("--fresh", action="store_true", help="ignore cached cells of an earlier run")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--expected",
        type=Path,
        metavar="FILE",
        help="expected verdicts (default synthetic/expected_verdicts.csv)",
    )
    parser.add_argument(
        "--update-expected",
        action="store_true",
        help="store this run's verdicts as the expected ones for its scale and seed, keeping the "
        "reasons of known findings, and print the diff (refused where CI is set)",
    )
    parser.set_defaults(scale="default", resume_hint=resume_hint)


def resume_hint(args: argparse.Namespace) -> str:
    """What an interrupted suite keeps, for the CLI's one-line message."""
    return f"the cells computed so far are kept in {args.out}/cells; run the same command again to resume"


def expected_path(args: argparse.Namespace) -> Path:
    from synthetic.expected import DEFAULT_EXPECTED

    return args.expected or DEFAULT_EXPECTED


def validate(args: argparse.Namespace) -> list:
    """Check the flags and read the expected verdicts before any compute; returns the stored rows."""
    from infra.csvtable import refuse_update_in_ci
    from synthetic.expected import load_expected

    require_int(args.seed, "seed", minimum=0)
    require_writable(args.out, "--out", folder=True)
    path = expected_path(args)
    if args.update_expected:
        refuse_update_in_ci(
            "expected verdicts", "they move only by a deliberate local update, reviewed in its diff"
        )
        return load_expected(path) if path.exists() else []
    return load_expected(path)


def print_table(predictions: pd.DataFrame) -> None:
    """The table with each row's outcome (FINDING, CHANGED, ... or the verdict) and the counts."""
    import pandas as pd

    shown = predictions.rename(columns={"verdict": "raw", "outcome": "verdict"})
    cols = ["id", "source", "predicted", "measured", "ratio", "verdict"]
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 48):
        print(shown[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    counts = shown["verdict"].value_counts().to_dict()
    print("verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


def run_suite(
    args: argparse.Namespace,
    suite: Callable[[str, Path, int, bool, bool], pd.DataFrame],
    name: str,
) -> int:
    """Run suite(scale, out, seed, fresh, progress) -> predictions single-threaded, compare its
    verdicts with the expected file, print the table with the outcomes, store it; the exit code
    of ``synthetic.expected.exit_code`` (or of the update)."""
    from infra.interrupts import stop_requests
    from infra.store import write_table
    from infra.threads import single_threaded
    from synthetic.expected import compare, exit_code, summary

    stored = validate(args)
    with (
        single_threaded(),
        stage(f"{name} suite (scale {args.scale}, seed {args.seed})"),
        stop_requests("finishing the current cell (it is kept)"),
    ):
        predictions = suite(args.scale, args.out, args.seed, args.fresh, not args.no_progress)
    complete = not getattr(args, "family", None)
    comparison = compare(predictions, stored, name, args.scale, args.seed, complete)
    print_table(comparison.table)  # shown before it is written: a failed write loses no result
    for file in PREDICTION_FILES:
        write_table(comparison.table, args.out / file)
    print(f"results written to {args.out}/")
    if args.update_expected:
        return update_expected(args, stored, predictions, name, complete)
    for line in summary(comparison, expected_path(args)):
        print(line)
    return exit_code(comparison)


def update_expected(
    args: argparse.Namespace, stored: list, predictions: pd.DataFrame, name: str, complete: bool
) -> int:
    """Store the run's verdicts for its (suite, scale, seed) and print the diff; 1 without
    writing when a FAIL has no reason yet (the rows to add by hand are printed)."""
    from synthetic.expected import FORMAT, Expected, updated_rows, write_update

    path = expected_path(args)
    rows, notes, unexplained = updated_rows(stored, predictions, name, args.scale, args.seed, complete)
    for note in notes:
        print(note)
    if unexplained:
        print(
            f"{path} left as it is: {len(unexplained)} FAIL rows have no reason yet. Explain each in the docs, add"
        )
        print(
            "its row by hand (reason, and section as docs/<file>.md#<anchor>), then rerun (cells are cached):"
        )
        rows_to_add = [
            Expected(name, args.scale, args.seed, i, "FAIL", "WHY", "docs/theory.md#<section>")
            for i in unexplained
        ]
        print(FORMAT.render(rows_to_add).split("\n", 1)[1], end="")
        return 1
    diff = write_update(path, rows)
    print(diff if diff else f"no change to {path}", end="" if diff else "\n")
    if diff:
        print(f"wrote {path}")
    return 0


def selected_families(names: list[str] | None) -> tuple[str, ...] | None:
    """The --family names, validated against the registry (None: every family)."""
    if names is None:
        return None
    from synthetic.problems.base import family_names

    known = family_names()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(f"--family: unknown family {unknown[0]!r}; expected one of {known}")
    return tuple(dict.fromkeys(names))


def run(args: argparse.Namespace) -> int:
    if args.jobs is not None:
        require_int(args.jobs, "jobs", minimum=1)
    families = selected_families(args.family)
    from synthetic.suites import run_convergence_suite

    return run_suite(
        args, functools.partial(run_convergence_suite, families=families, jobs=args.jobs), "convergence"
    )
