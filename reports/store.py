"""Reading the results store for the report, and remembering exactly what was read.

Every file is read once into memory, hashed (sha256) and parsed from those bytes, so the
provenance table names the very bytes behind every number. Absent files are not errors
(the section says "not run yet"); unreadable ones become a notice, never a crash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from infra.paths import repo_root
from infra.store import parse_table


@dataclass(frozen=True)
class SourceFile:
    """One file the report read: where, how big, its sha256 and its row count."""

    path: str
    size: int
    sha256: str
    rows: int


class ResultsReader:
    """Reads tables under a results root (and the stored-baselines CSV) for one report."""

    def __init__(self, root: Path, baselines: Path) -> None:
        self.root, self.baselines = Path(root), Path(baselines)
        self.files: list[SourceFile] = []
        self.frames: dict[str, pd.DataFrame] = {}
        self.problems: list[str] = []

    def display(self, path: Path) -> str:
        """A file's name in the report: relative to the results root, else to the repository."""
        resolved = path.resolve()
        if resolved.is_relative_to(self.root.resolve()):
            return resolved.relative_to(self.root.resolve()).as_posix()
        if resolved.is_relative_to(repo_root()):
            return "repository: " + resolved.relative_to(repo_root()).as_posix()
        return path.as_posix()

    def table(self, relative: str) -> pd.DataFrame | None:
        """The table at ``root/relative`` (.parquet, .csv or the speed benchmark's .json)."""
        return self.read(self.root / relative)

    def read(self, path: Path) -> pd.DataFrame | None:
        """A table read from ``path``; None when it is absent or unreadable (then noted)."""
        if not path.is_file():
            return None
        name = self.display(path)
        data = path.read_bytes()
        try:
            frame = parse_table(data, path.suffix)
        except Exception as exc:  # pyarrow, pandas and json raise many types for a bad file
            self.problems.append(f"{name}: cannot read ({type(exc).__name__}: {exc})")
            return None
        self.files.append(SourceFile(name, len(data), hashlib.sha256(data).hexdigest(), len(frame)))
        self.frames[name] = frame
        return frame

    def run_metrics(self) -> pd.DataFrame | None:
        """Every ``realdata/runs/<run>/metrics.parquet``, concatenated (None when there is none)."""
        frames = [self.read(p) for p in sorted((self.root / "realdata" / "runs").glob("*/metrics.parquet"))]
        frames = [f for f in frames if f is not None and not f.empty]
        return pd.concat(frames, ignore_index=True) if frames else None
