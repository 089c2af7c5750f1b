"""The ``sharpmaml`` command. Each track registers its own subcommands.

Exit codes: 0 success, 1 a prediction or gate failed (a finding, not a crash), 2 bad input.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from harness.config import METHODS, ConfigError

# Modules with a ``register(subparsers)`` function, imported in this order.
COMMAND_MODULES = ("harness.info_command", "synthetic.commands", "synthetic.generalization.commands",
                   "realdata.commands", "reports.commands", "realdata.baselines_commands")


class CliError(ValueError):
    """Bad command-line input; reported with exit code 2 before any compute."""


def build_parser() -> argparse.ArgumentParser:
    """The full parser, every registered subcommand included."""
    parser = argparse.ArgumentParser(
        prog="sharpmaml",
        description="Does Sharp-MAML keep its promises? Theory checks and few-shot benchmarks.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script and of ``python -m harness``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except (CliError, ConfigError) as exc:
        print(f"sharpmaml {args.command}: error: {exc}", file=sys.stderr)
        return 2


def method_names() -> list[str]:
    """Method names accepted by every command."""
    return list(METHODS)
