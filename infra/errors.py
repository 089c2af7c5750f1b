"""The exit-code contract of every ``sharpmaml`` command, pytest's, in one place.

    0  every verdict as expected, or the job done
    1  a result differs from what is stored (unexpected FAIL, CHANGED finding, gate failure,
       diverged training run); the last lines say which and why
    2  interrupted by the user (SIGINT) or the scheduler (SIGTERM); partial results are kept
    3  internal error: anything uncaught; one line, the traceback in a log file
    4  usage error: bad flags, config or data files, reported before any compute

Commands return 0 or 1; the other codes come from exceptions, mapped in ``exit_code_for``.
"""

from __future__ import annotations

import datetime as _dt
import os
import tempfile
import traceback
from pathlib import Path

EXIT_OK = 0
EXIT_DIFFERS = 1
EXIT_INTERRUPTED = 2
EXIT_INTERNAL = 3
EXIT_USAGE = 4

LOG_ENV = "SHARPMAML_LOGS"


class UsageError(ValueError):
    """Bad input from the user (flag, config, data or results file); exit 4 before any compute.

    Every input error of the project derives from it, so the CLI maps them all at once."""


class Interrupted(Exception):
    """The run was stopped from outside (SIGINT, SIGTERM); exit 2, partial results kept."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


def usage_error_types() -> tuple[type[BaseException], ...]:
    """The exception classes that mean bad input: ours, and the engine's ConfigError."""
    from harness.config import ConfigError

    return (UsageError, ConfigError)


def exit_code_for(exc: BaseException) -> int:
    """The contract's code for an exception that reached the command line."""
    if isinstance(exc, (KeyboardInterrupt, Interrupted)):
        return EXIT_INTERRUPTED
    if isinstance(exc, usage_error_types()):
        return EXIT_USAGE
    return EXIT_INTERNAL


def log_folder() -> Path:
    """Where tracebacks of internal errors go: ``$SHARPMAML_LOGS``, else a folder in the
    system's temporary directory (never the checkout)."""
    env = os.environ.get(LOG_ENV)
    return Path(env) if env else Path(tempfile.gettempdir()) / "sharpmaml-logs"


def write_traceback(command: str, exc: BaseException) -> Path | None:
    """Write the traceback of an internal error to a new log file; its path, or None when no
    log folder is writable."""
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S")
    text = "".join(traceback.format_exception(exc))
    try:
        folder = log_folder()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{command}-{stamp}-{os.getpid()}.log"
        path.write_text(text, encoding="utf-8")
    except OSError:
        return None
    return path


STAGE_ATTRIBUTE = "sharpmaml_stage"


class stage:
    """Name the unit of work an internal error happened in (``with stage("rate cell Q1/maml")``).

    The innermost name wins; the CLI's one-line message quotes it. Usage errors and
    interrupts pass through unnamed."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> stage:
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> bool:
        if isinstance(exc, Exception) and exit_code_for(exc) == EXIT_INTERNAL:
            if not hasattr(exc, STAGE_ATTRIBUTE):
                setattr(exc, STAGE_ATTRIBUTE, self.name)
        return False


def stage_of(exc: BaseException) -> str | None:
    """The stage named by the innermost ``stage`` block the exception left, if any."""
    return getattr(exc, STAGE_ATTRIBUTE, None)
