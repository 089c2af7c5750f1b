"""The ``sharpmaml`` command: the subcommands each package registers, and the exit-code contract.

A package adds commands with an entry point in the group ``sharpmaml.commands`` whose value is a
``register(subparsers)`` function (see pyproject.toml); this module names no command. Handlers
return 0 or 1; exceptions become the other codes of ``infra.errors``.

Startup stays fast (``--help`` and flag errors answer in well under a second): a command module
imports neither torch, pandas nor its track's engine at module level; ``register`` only builds
arguments, and each handler imports what it needs (tests/test_cli_startup.py checks this).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import re
import signal
import sys
import tomllib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

from infra.errors import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    Interrupted,
    UsageError,
    exit_code_for,
    stage_of,
    write_traceback,
)

COMMAND_GROUP = "sharpmaml.commands"
PROG = "sharpmaml"


class Parser(argparse.ArgumentParser):
    """argparse with the contract's usage code: a bad flag raises UsageError (exit 4, not 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message}\n{self.format_usage().strip()}")


def registered_commands() -> list[tuple[str, str]]:
    """(name, 'module:function') of every registered command, sorted by name.

    Run from a source tree (a checkout on ``PYTHONPATH``, or an editable install), the table in
    that tree's pyproject.toml, so a command added there works before any reinstall; from an
    installed wheel, the distribution's entry points."""
    from infra.paths import source_tree

    tree = source_tree()
    if tree is not None:
        table = tomllib.loads((tree / "pyproject.toml").read_text("utf-8"))
        return sorted(table["project"]["entry-points"][COMMAND_GROUP].items())
    from importlib import metadata

    return sorted((e.name, e.value) for e in metadata.entry_points(group=COMMAND_GROUP))


def _flags_by_field(parser: argparse.ArgumentParser) -> dict[str, str]:
    """{dest: its long flag} over ``parser`` and its subcommands (the first one wins)."""
    flags: dict[str, str] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                flags = {**_flags_by_field(sub), **flags}
        elif action.option_strings:
            flags.setdefault(action.dest, max(action.option_strings, key=len))
    return flags


def with_flags(message: str, parser: argparse.ArgumentParser) -> str:
    """A library error in command-line words: the leading ``field:`` gets its flag,
    ``field (--flag):``, and each backquoted `field` becomes ``--flag``.

    Library errors name fields, never flags (``harness.config.ConfigError``); a field is
    mapped when it is the ``dest`` of one of the command's options."""
    flags = _flags_by_field(parser)
    field, colon, rest = message.partition(": ")
    if colon and field in flags:
        message = f"{field} ({flags[field]}): {rest}"
    return re.sub(r"`(\w+)`", lambda m: flags.get(m[1], m[0]), message)


def _command_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser | None:
    """The subcommand's own parser (its flags are the ones an error can name)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(command)
    return None


def _load(value: str) -> Callable[[argparse._SubParsersAction], None]:
    module, _, function = value.partition(":")
    return getattr(importlib.import_module(module), function)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with every registered subcommand, or only the command ``only`` when it is
    one (any other word, or None, registers them all, for the overview and its errors).

    Each entry registers the one command it is named after (tests/test_packaging.py), so
    running a command imports its own command module and no other (none imports torch)."""
    parser = Parser(
        prog=PROG,
        description="Does Sharp-MAML keep its promises? Theory checks and few-shot benchmarks.",
        epilog=EXIT_CODES_HELP,
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands = registered_commands()
    for _name, value in [entry for entry in commands if entry[0] == only] or commands:
        _load(value)(subparsers)
    _add_exit_codes(parser)
    return parser


EXIT_CODES_HELP = (
    "exit codes: 0 as expected (or done), 1 a result differs from what is stored, "
    "2 interrupted, 3 internal error (traceback in a log file), 4 usage error"
)


def _add_exit_codes(parser: argparse.ArgumentParser) -> None:
    """Every (sub)command's --help states the contract, unless it states its own."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub.epilog = sub.epilog or EXIT_CODES_HELP
                _add_exit_codes(sub)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler's time limit, ``kill``) raises Interrupted like Ctrl-C does."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted("SIGTERM")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _report(
    command: str,
    exc: BaseException,
    args: argparse.Namespace | None,
    parser: argparse.ArgumentParser | None,
) -> int:
    code = exit_code_for(exc)
    prefix = f"{PROG} {command}".rstrip()
    if code == EXIT_USAGE:
        message = with_flags(str(exc), parser) if parser is not None else str(exc)
        print(f"{prefix}: error: {message}", file=sys.stderr)
    elif code == EXIT_INTERRUPTED:
        name = exc.signal_name if isinstance(exc, Interrupted) else "SIGINT"
        hint = getattr(args, "resume_hint", None) if args is not None else None
        advice = hint(args) if callable(hint) else "partial results are kept"
        print(f"{prefix}: interrupted ({name}); {advice}", file=sys.stderr)
    else:
        log = write_traceback(command, exc)
        where = f" in {stage_of(exc)}" if stage_of(exc) else ""
        trace = f"traceback in {log}" if log else "no log folder was writable"
        print(f"{prefix}: internal error{where}: {type(exc).__name__}: {exc} ({trace})", file=sys.stderr)
    return code


def run() -> int:
    """The ``sharpmaml`` process: ``main`` on the command line, then ``gc.freeze()``, since the
    process ends next. Every object alive then stays in memory until exit, which skips the
    interpreter's final collection of a heap that holds torch and torch._dynamo (about 1 s of
    every command). Only here: ``main`` also runs in-process, e.g. from the tests."""
    code = main()
    gc.freeze()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """The command: parse ``argv`` (default the command line), run the handler, map any
    exception to the exit-code contract."""
    args: argparse.Namespace | None = None
    parser: argparse.ArgumentParser | None = None
    words = list(sys.argv[1:] if argv is None else argv)
    command = next((w for w in words if not w.startswith("-")), "")
    try:
        with sigterm_as_interrupt():
            parser = build_parser(command)
            args = parser.parse_args(argv)
            command = args.command
            return int(args.handler(args))
    except SystemExit as exc:  # --help and --version
        return int(exc.code or 0)
    except BaseException as exc:  # noqa: BLE001 - the contract maps every exception to a code
        command_parser = _command_parser(parser, command) if parser is not None and args is not None else None
        return _report(command, exc, args, command_parser)
