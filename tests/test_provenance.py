"""Provenance's git sha: from the checkout the code runs from, else stamped into the wheel at
build time (tox installs a wheel, possibly in a work folder outside the checkout)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from infra import provenance

REPO = Path(__file__).resolve().parents[1]


def head(root: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True
    ).stdout.strip()


def test_the_checkout_the_code_runs_from_names_the_sha() -> None:
    assert provenance.git_sha.__wrapped__().split("+")[0] == head(REPO)


def test_outside_any_checkout_the_stamp_names_the_sha(tmp_path, monkeypatch) -> None:
    stamp = tmp_path / "build_stamp.json"
    stamp.write_text(json.dumps({"git_sha": "f" * 40}))
    monkeypatch.setattr(provenance, "source_tree", lambda: None)
    monkeypatch.setattr(provenance, "repo_root", lambda: tmp_path)  # no git here
    monkeypatch.setattr(provenance, "BUILD_STAMP", stamp)
    assert provenance.git_sha.__wrapped__() == "f" * 40
    stamp.write_text("{not json")
    assert provenance.git_sha.__wrapped__() == "unknown"


@pytest.mark.slow
def test_a_wheel_built_from_a_checkout_records_its_sha_when_run_elsewhere(tmp_path) -> None:
    """What tox does: build a wheel from the checkout, install it outside, run from elsewhere."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(clone)], check=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", "dist", "."],
        cwd=clone,
        check=True,
        capture_output=True,
    )
    site = tmp_path / "site"
    with zipfile.ZipFile(next((clone / "dist").glob("*.whl"))) as wheel:
        wheel.extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-c", "from infra.provenance import git_sha; print(git_sha())"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == head(clone)
