"""The cell cache: a suite's unit of work computed once per (config, seed, code) and reused on
resume."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from infra.provenance import code_fingerprint, config_hash
from infra.store import atomic_write_bytes


class CellCache:
    """Per-cell results on disk, keyed by the cell's config, the global seed and the code
    (commit, uncommitted diff and untracked source files), so a resumed suite only reuses what the same code computed
    for the same seed."""

    def __init__(self, folder: Path, fresh: bool, progress: tqdm | None, seed: int) -> None:
        self.folder, self.fresh, self.progress, self.seed = folder, fresh, progress, seed
        self.code = code_fingerprint()

    def __call__(self, name: str, key: dict[str, Any], compute: Callable[[], Any]) -> Any:
        full_key = {**key, "global_seed": self.seed, "code": self.code}
        path = self.folder / f"{name.replace('/', '_')}-{config_hash(full_key)}.pkl"
        if self.progress is not None:
            self.progress.set_description(name)
        if path.exists() and not self.fresh:
            result = pickle.loads(path.read_bytes())
        else:
            result = compute()
            atomic_write_bytes(path, pickle.dumps(result))
        if self.progress is not None:
            self.progress.update(1)
        return result
