"""Provenance columns stamped on every result row: git sha, versions, device, date, config hash."""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra.paths import repo_root, source_tree

if TYPE_CHECKING:
    import torch

TRACKED_PACKAGES = ("torch", "numpy", "pandas", "cvxpy", "sharp-maml-bench")
# Untracked files that count as code for ``code_fingerprint`` (git pathspecs).
SOURCE_PATTERNS = ("*.py", "*.toml", "*.j2", "*.css")


# Written into the package by setup.py when a wheel is built: {"git_sha": ...} of the checkout.
BUILD_STAMP = Path(__file__).with_name("build_stamp.json")


@functools.lru_cache(maxsize=1)
def git_sha() -> str:
    """The code's git sha, '+dirty' when tracked files had changes: from the checkout the code
    is imported from, else the one stamped into the package when its wheel was built (tox's
    install, wherever its work folder is), else the checkout holding the installed package
    or the working directory; 'unknown' only when none of them says."""
    tree = source_tree()
    sha = checkout_sha(tree) if tree is not None else None
    return sha or stamped_sha() or checkout_sha(repo_root()) or "unknown"


def checkout_sha(root: Path) -> str | None:
    """HEAD's sha of the git checkout at ``root`` (+dirty as in ``git_sha``); None when ``root``
    is no checkout or git cannot run."""
    try:
        sha = _git(root, "rev-parse", "HEAD").decode().strip()
        dirty = _git(root, "status", "--porcelain", "--untracked-files=no").strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha + ("+dirty" if dirty else "") if sha else None


def stamped_sha() -> str | None:
    """The sha setup.py stamped into an installed package; None without a readable stamp."""
    try:
        sha = json.loads(BUILD_STAMP.read_text("utf-8"))["git_sha"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return sha if isinstance(sha, str) and sha else None


def code_fingerprint(root: Path | None = None) -> str:
    """HEAD's sha plus a hash of the uncommitted diff of the tracked source files and of every
    untracked, not-ignored source file (``SOURCE_PATTERNS``, path and content): changes whenever
    the code does, also for a new module not yet added to git, so caches keyed by it never serve
    results of code since edited; an uncommitted edit of a doc leaves it as it is. Results written into the checkout (cells of an unignored ``--out``)
    are not source and never change it. ``root`` defaults to the repository root; 'unknown'
    outside git."""
    root = repo_root() if root is None else root
    try:
        sha = _git(root, "rev-parse", "HEAD").decode().strip()
        diff = _git(root, "diff", "HEAD", "--", *SOURCE_PATTERNS)
        untracked = sorted(
            p
            for p in _git(
                root, "ls-files", "--others", "--exclude-standard", "-z", "--", *SOURCE_PATTERNS
            ).split(b"\0")
            if p
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    if not diff and not untracked:
        return sha
    digest = hashlib.sha256(diff)
    for path in untracked:
        digest.update(b"\0untracked\0" + path + b"\0")
        file = root / os.fsdecode(path)
        digest.update(file.read_bytes() if file.is_file() else b"")
    return f"{sha}-{digest.hexdigest()[:16]}"


def _git(root: Path, *args: str) -> bytes:
    """stdout of ``git args`` run in root (raises CalledProcessError on failure)."""
    return subprocess.run(["git", *args], cwd=root, capture_output=True, check=True).stdout


@functools.lru_cache(maxsize=1)
def package_versions() -> str:
    """'torch=2.13.0;numpy=...' for the packages that decide the numbers."""
    from importlib import metadata

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
    import torch

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
