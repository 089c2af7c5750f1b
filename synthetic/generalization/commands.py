"""``sharpmaml generalization``: the generalization track's command (flags as ``convergence``)."""

from __future__ import annotations

import argparse

from infra.paths import DEFAULT_RESULTS
from synthetic.commands import EXIT_CODES, add_suite_arguments, run_suite


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generalization",
        help="generalization track: PAC-Bayes and sharpness bound checks (L2, E2)",
        description="Run the generalization suite and compare its verdicts with the stored expected "
        "verdicts (docs/theory.md#expected-verdicts).",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_suite_arguments(parser, DEFAULT_RESULTS / "generalization")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from synthetic.generalization.suite import run_generalization_suite

    return run_suite(args, run_generalization_suite, "generalization")
