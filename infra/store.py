"""The results store: tidy pandas tables written atomically as parquet (and csv for diffs).

Every file the project writes goes through ``atomic_writer`` (tables, checkpoints, the cell
and dataset caches, the report), and every table is parsed by its suffix in ``parse_table``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from infra.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd


class StoreError(UsageError):
    """A results file is missing or unreadable; the message names it."""


def require_writable(path: Path, name: str, *, folder: bool) -> None:
    """UsageError naming ``name`` (a field or flag) unless files can be written at ``path``: a
    folder to write into (``folder``), or a file to create or replace. Checked before any
    compute, without creating anything: a probe file is written and removed in the nearest
    folder that exists (missing ones are created there later), the only test that also holds
    for root, read-only mounts, immutable folders and full disks."""
    path = Path(path)
    kind = "folder" if folder else "file"
    if path.exists() and path.is_dir() != folder:
        raise UsageError(
            f"{name}: expected a {kind}, but {path} is {'a folder' if path.is_dir() else 'a file'}"
        )
    existing = path if folder else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{name}: cannot create {path}: {existing} is a file; expected a folder there")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".write-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(
            f"{name}: cannot write to {existing} ({exc.strerror or exc}); expected a writable {kind} location"
        ) from None


def current_umask() -> int:
    """The process umask (reading it requires setting it; restored at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """A binary file whose content replaces ``path`` only when the block ends without error.

    Written to a temporary file in the same folder, flushed to disk, then ``os.replace``d:
    never a half file, and a failed write keeps the old one. The file gets the permissions a
    plain ``open`` would give (0666 minus the umask), not mkstemp's private 0600, so reports,
    tables and caches stay readable by whoever should read them.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fchmod(fh.fileno(), 0o666 & ~current_umask())
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (``atomic_writer``)."""
    with atomic_writer(path) as fh:
        fh.write(data)


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


TABLE_SUFFIXES = (".parquet", ".csv", ".json")


def parse_table(data: bytes, suffix: str) -> pd.DataFrame:
    """Parse a table's bytes by its file suffix (one of ``TABLE_SUFFIXES``).

    JSON is a document ``{meta..., "rows": [...]}`` (the speed benchmark's): one row per entry
    of ``rows``, the other keys repeated as columns."""
    import pandas as pd

    if suffix == ".parquet":
        return pd.read_parquet(io.BytesIO(data))
    if suffix == ".csv":
        return pd.read_csv(io.BytesIO(data))
    if suffix == ".json":
        doc = json.loads(data)
        meta = {k: v for k, v in doc.items() if k != "rows"}
        return pd.DataFrame([{**meta, **row} for row in doc["rows"]])
    raise StoreError(f"unsupported table format {suffix!r}; expected one of {', '.join(TABLE_SUFFIXES)}")


def read_table(path: Path) -> pd.DataFrame:
    """Read a table (``parse_table``), with an error naming the file when it cannot."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path}: results file not found; run the suite that writes it first")
    try:
        return parse_table(path.read_bytes(), path.suffix)
    except Exception as exc:  # pyarrow, pandas and json raise many types for a corrupt file
        raise StoreError(f"{path}: cannot read results table ({exc})") from exc
