"""The cell cache: a suite's unit of work computed once per (config, seed, code) and reused on
resume.

Cells are stored with ``infra.codec`` (an npz archive read without pickle), so a results folder
someone else wrote cannot run code when a suite resumes into it; a cell that cannot be read
(corrupt, truncated, foreign) is recomputed after a one-line warning. Inside
``infra.interrupts.stop_requests`` a SIGINT or SIGTERM stops the suite after the current cell,
which is stored first.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from infra.codec import UnreadableValue, decode, encode
from infra.errors import stage
from infra.interrupts import stop_point
from infra.provenance import code_fingerprint, config_hash
from infra.store import atomic_write_bytes

SUFFIX = ".npz"


class CellCache:
    """Per-cell results on disk, keyed by the cell's config, the global seed and the code
    (commit, uncommitted diff and untracked source files), so a resumed suite only reuses what
    the same code computed for the same seed."""

    def __init__(self, folder: Path, fresh: bool, progress: tqdm | None, seed: int) -> None:
        self.folder, self.fresh, self.progress, self.seed = folder, fresh, progress, seed
        self.code = code_fingerprint()

    def path(self, name: str, key: dict[str, Any]) -> Path:
        """The file of the cell ``name`` with config ``key`` (under this seed and code)."""
        full_key = {**key, "global_seed": self.seed, "code": self.code}
        return self.folder / f"{name.replace('/', '_')}-{config_hash(full_key)}{SUFFIX}"

    def __call__(self, name: str, key: dict[str, Any], compute: Callable[[], Any]) -> Any:
        path = self.path(name, key)
        if self.progress is not None:
            self.progress.set_description(name)
        found = not self.fresh and self._read(name, path)
        if found:
            result = found[0]
        else:
            with stage(f"cell {name}"):
                result = compute()
            atomic_write_bytes(path, encode(result))
        if self.progress is not None:
            self.progress.update(1)
        stop_point()  # a cell is the unit of work an interrupted suite keeps
        return result

    def _read(self, name: str, path: Path) -> tuple[Any] | None:
        """(value,) of a stored cell, or None when absent or unreadable (with a warning)."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
        else:
            try:
                return (decode(data),)
            except UnreadableValue as exc:
                reason = str(exc)
        tqdm.write(f"warning: cell {name}: cannot read {path} ({reason}); recomputing it", file=sys.stderr)
        return None
