"""The results store: tidy pandas tables written atomically as parquet (and csv for diffs)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from infra.errors import UsageError


class StoreError(UsageError):
    """A results file is missing or unreadable; the message names it."""


def current_umask() -> int:
    """The process umask (reading it requires setting it; restored at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and os.replace: never a half file.

    The file gets the permissions a plain ``open`` would give (0666 minus the umask), not
    mkstemp's private 0600, so reports and tables stay readable by whoever should read them.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            os.fchmod(fh.fileno(), 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_table(frame: pd.DataFrame, path: Path) -> Path:
    """Write a table atomically; the format follows the suffix (.parquet or .csv)."""
    path = Path(path)
    if path.suffix == ".parquet":
        data = frame.to_parquet(index=False)
    elif path.suffix == ".csv":
        data = frame.to_csv(index=False).encode()
    else:
        raise StoreError(f"{path}: unsupported table format; expected .parquet or .csv")
    atomic_write_bytes(path, data)
    return path


def read_table(path: Path) -> pd.DataFrame:
    """Read a table written by write_table, with an error naming the file when it cannot."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path}: results file not found; run the suite that writes it first")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except Exception as exc:  # pyarrow and pandas raise many types for a corrupt file
        raise StoreError(f"{path}: cannot read results table ({exc})") from exc
