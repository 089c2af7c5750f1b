"""Provenance columns stamped on every result row: git sha, versions, device, date, config hash."""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import platform
import subprocess
from importlib import metadata
from typing import Any

import torch

from infra.paths import repo_root

TRACKED_PACKAGES = ("torch", "numpy", "pandas", "cvxpy", "sharp-maml-bench")


@functools.lru_cache(maxsize=1)
def git_sha() -> str:
    """HEAD's sha, with '+dirty' when the working tree has changes; 'unknown' outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo_root(), capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo_root(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def code_fingerprint() -> str:
    """HEAD's sha plus a hash of the uncommitted diff of tracked files: changes whenever the
    code does, so caches keyed by it never serve results of code that has since been edited."""
    sha = git_sha()
    if not sha.endswith("+dirty"):
        return sha
    try:
        diff = subprocess.run(
            ["git", "diff", "HEAD"], cwd=repo_root(), capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return sha
    return f"{sha}-{hashlib.sha256(diff).hexdigest()[:16]}"


@functools.lru_cache(maxsize=1)
def package_versions() -> str:
    """'torch=2.13.0;numpy=...' for the packages that decide the numbers."""
    parts = []
    for name in TRACKED_PACKAGES:
        try:
            parts.append(f"{name}={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name}=absent")
    parts.append(f"python={platform.python_version()}")
    return ";".join(parts)


def device_name(device: torch.device | str) -> str:
    """A human name for the device: the GPU model on CUDA, the CPU model elsewhere."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu:{platform.processor() or platform.machine()}"


def config_hash(config: Any) -> str:
    """Short stable hash of a JSON-able config (dict keys sorted)."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def provenance(device: torch.device | str = "cpu", **extra: Any) -> dict[str, Any]:
    """The provenance columns for a row (extra keys such as seed or config_hash appended)."""
    return {
        "git_sha": git_sha(),
        "versions": package_versions(),
        "device": device_name(device),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        **extra,
    }
