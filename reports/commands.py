"""``sharpmaml report``: one self-contained HTML file of both tracks, from the results store."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from infra.errors import UsageError, stage
from infra.paths import DEFAULT_BASELINES, DEFAULT_RESULTS, results_root
from infra.store import atomic_write_bytes, require_writable


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``report`` to the ``sharpmaml`` command."""
    parser = subparsers.add_parser(
        "report",
        help="HTML report of both tracks from the results store (re-runs nothing)",
        description="Build one self-contained HTML file (inline CSS, embedded figures, nothing "
        "fetched) from the results store; absent parts show as 'not run yet'. A file that exists "
        "but cannot be used is named in a banner at the top of the page and on stderr, and the "
        "command exits 4.",
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
    results = args.results if args.results is not None else results_root()
    if results.exists() and not results.is_dir():
        raise UsageError(f"--results: expected a results folder, but {results} is a file")
    if args.results is not None and not results.exists():
        raise UsageError(
            f"--results: folder {results} not found; expected the --out folder of the suites "
            f"(default {results_root()})"
        )
    out = args.out if args.out is not None else results / "report.html"
    if out.is_dir():
        raise UsageError(f"--out: expected an HTML file path, but {out} is a folder")
    require_writable(out, "--out", folder=False)
    if args.baselines.exists() and not args.baselines.is_file():
        raise UsageError(f"--baselines: expected a CSV file, but {args.baselines} is not a file")
    return results, out


class UnusableInputs(UsageError):
    """Input files exist but could not be used: the report is written with a banner naming
    them, and the command exits 4 rather than pass off a partial report as a complete one."""


def run(args: argparse.Namespace) -> int:
    results, out = validate(args)
    from reports.build import build_report

    if not results.exists():
        print(f"note: {results}/ does not exist yet; every section will say 'not run yet'", file=sys.stderr)
    started = time.perf_counter()
    with stage(f"report from {results}"):
        report = build_report(results, args.baselines)
    for line in report.unusable:
        print(f"could not use {line}", file=sys.stderr)
    html = report.html.encode("utf-8")
    atomic_write_bytes(out, html)
    print(f"report written to {out} ({len(html) / 1024:.0f} KiB, {time.perf_counter() - started:.1f} s)")
    if report.unusable:
        raise UnusableInputs(
            f"{len(report.unusable)} input file(s) could not be used (listed above and in the banner at "
            f"the top of {out}); the report leaves them out. Repair or remove them, e.g. rerun the "
            "command that writes them, then build the report again"
        )
    return 0
