"""The CLI answers --help and flag errors without importing torch, pandas or a track's engine.

Each case runs in a fresh interpreter (a subprocess), where sys.modules shows exactly what
parsing pulled in; every registered command and sub-action is visited, so a command added
later is held to the same rule.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.errors import EXIT_USAGE

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "pandas", "numpy", "pyarrow", "scipy", "cvxpy", "jinja2")

# Walks the parser tree, parses each command's --help and one unknown flag, and reports which
# heavy top-level modules were loaded after each case, with the exit codes.
PROBE = r"""
import argparse, json, sys
from infra.cli import build_parser, main

HEAVY = set(sys.argv[1].split(","))

def paths(parser, prefix=()):
    yield prefix
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from paths(sub, (*prefix, name))

report = []
for path in list(paths(build_parser())):
    for extra in (["--help"], ["--no-such-flag"]):
        code = main([*path, *extra])
        loaded = sorted(HEAVY & {m.split(".")[0] for m in sys.modules})
        report.append({"argv": [*path, *extra], "code": code, "heavy": loaded})
print(json.dumps(report))
"""


def probe() -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(HEAVY)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def cases() -> list[dict]:
    return probe()


def test_every_command_is_visited(cases: list[dict]) -> None:
    visited = {tuple(c["argv"][:-1]) for c in cases}
    for command in ("convergence", "train", "evaluate", "report", "info"):
        assert (command,) in visited
    assert ("baselines", "check") in visited


def test_help_and_flag_errors_import_no_heavy_module(cases: list[dict]) -> None:
    heavy = [(c["argv"], c["heavy"]) for c in cases if c["heavy"]]
    assert heavy == [], f"parsing imported heavy modules: {heavy}"


def test_help_exits_0_and_a_bad_flag_exits_usage(cases: list[dict]) -> None:
    for case in cases:
        expected = 0 if case["argv"][-1] == "--help" else EXIT_USAGE
        assert case["code"] == expected, case
