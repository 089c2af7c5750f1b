"""``sharpmaml report``: one self-contained HTML file of both tracks, from the results store."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from infra.errors import UsageError, stage
from infra.paths import DEFAULT_BASELINES, DEFAULT_RESULTS
from infra.store import atomic_write_bytes


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``report`` to the ``sharpmaml`` command."""
    parser = subparsers.add_parser(
        "report",
        help="HTML report of both tracks from the results store (re-runs nothing)",
        description="Build one self-contained HTML file (inline CSS, embedded figures, nothing "
        "fetched) from the results store; absent parts show as 'not run yet'.",
    )
    parser.add_argument(
        "--results",
        type=Path,
        metavar="DIR",
        help=f"results store to read (default {DEFAULT_RESULTS}/; must exist when given)",
    )
    parser.add_argument(
        "--out", type=Path, metavar="FILE", help="HTML file to write (default DIR/report.html)"
    )
    parser.add_argument(
        "--baselines",
        type=Path,
        default=DEFAULT_BASELINES,
        metavar="CSV",
        help="stored baselines (default: the repository's realdata/baselines/baselines.csv; may be absent)",
    )
    parser.set_defaults(handler=run, resume_hint=lambda a: "no report written")


def validate(args: argparse.Namespace) -> tuple[Path, Path]:
    """The results folder and output file, after checking them (exit 4 on bad input)."""
    results = args.results if args.results is not None else DEFAULT_RESULTS
    if results.exists() and not results.is_dir():
        raise UsageError(f"--results: expected a results folder, but {results} is a file")
    if args.results is not None and not results.exists():
        raise UsageError(
            f"--results: folder {results} not found; expected the --out folder of the suites "
            "(default results/)"
        )
    out = args.out if args.out is not None else results / "report.html"
    if out.is_dir():
        raise UsageError(f"--out: expected an HTML file path, but {out} is a folder")
    if out.parent.exists() and not out.parent.is_dir():
        raise UsageError(f"--out: {out.parent} is a file, not a folder")
    if args.baselines.exists() and not args.baselines.is_file():
        raise UsageError(f"--baselines: expected a CSV file, but {args.baselines} is not a file")
    return results, out


def run(args: argparse.Namespace) -> int:
    results, out = validate(args)
    from reports.build import build_report

    if not results.exists():
        print(f"note: {results}/ does not exist yet; every section will say 'not run yet'", file=sys.stderr)
    started = time.perf_counter()
    with stage(f"report from {results}"):
        html = build_report(results, args.baselines).encode("utf-8")
    atomic_write_bytes(out, html)
    print(f"report written to {out} ({len(html) / 1024:.0f} KiB, {time.perf_counter() - started:.1f} s)")
    return 0
