"""What pyproject.toml promises: every imported package declared, every command registered."""

from __future__ import annotations

import argparse
import ast
import importlib
import re
import sys
import tomllib
from pathlib import Path

from infra.cli import COMMAND_GROUP, PROG, main, registered_commands

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "infra", "synthetic", "realdata", "reports")
# import name -> distribution name, where they differ
DISTRIBUTION = {"PIL": "pillow"}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))


def _imported_top_level(folder: Path) -> set[str]:
    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.partition(".")[0])
    return names


def test_every_third_party_import_of_the_packages_is_a_declared_dependency() -> None:
    declared = {
        re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower()
        for req in [
            *_pyproject()["project"]["dependencies"],
            *(r for extra in _pyproject()["project"]["optional-dependencies"].values() for r in extra),
        ]
    }
    imported = set().union(*(_imported_top_level(ROOT / package) for package in PACKAGES))
    third_party = imported - set(sys.stdlib_module_names) - set(PACKAGES)
    assert third_party, "the scan found no third-party import: it is not reading the packages"
    undeclared = sorted(name for name in third_party if DISTRIBUTION.get(name, name).lower() not in declared)
    assert undeclared == [], f"imported but not in [project] dependencies: {undeclared}"


def _commands_added_by(value: str) -> list[str]:
    module, _, function = value.partition(":")
    subparsers = argparse.ArgumentParser().add_subparsers()
    getattr(importlib.import_module(module), function)(subparsers)
    return list(subparsers.choices)


def test_each_entry_of_the_command_table_registers_its_own_command_which_answers_help(capsys) -> None:
    table = _pyproject()["project"]["entry-points"][COMMAND_GROUP]
    assert registered_commands() == sorted(table.items())
    added = {name: _commands_added_by(value) for name, value in table.items()}
    wrong = {name: commands for name, commands in added.items() if commands != [name]}
    assert wrong == {}, f"each entry must register exactly the command it is named after: {wrong}"
    commands = list(added)
    for command in commands:
        assert main([command, "--help"]) == 0
        assert capsys.readouterr().out.startswith(f"usage: {PROG} {command}")
    assert main(["--help"]) == 0
    listed = capsys.readouterr().out
    assert all(command in listed for command in commands)
