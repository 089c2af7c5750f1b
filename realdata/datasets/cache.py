"""Per-split class images, and their on-disk cache.

``ClassImages`` holds one split as uint8 ``(num_classes, examples_per_class, C, H, W)``;
``DatasetSplits`` holds train/val/test. The cache stores the splits as an uncompressed ``.npz``
(no pickles: loaded with ``allow_pickle=False``), named by a sha256 key of the source files'
identity and the preprocessing settings, and written atomically (``infra.store.atomic_writer``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from infra.store import atomic_writer
from realdata.datasets.errors import DatasetError

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ClassImages:
    """One split: ``images`` uint8 (num_classes, examples_per_class, C, H, W), and class names.

    Pixel values are 0..255; episodes turn them into float32 in [0, 1].
    """

    images: torch.Tensor
    class_ids: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 5:
            raise DatasetError(
                "class images: expected a uint8 tensor (classes, examples, C, H, W), got "
                f"{self.images.dtype} of shape {tuple(self.images.shape)}"
            )
        if len(self.class_ids) != self.images.shape[0]:
            raise DatasetError(
                f"class images: {len(self.class_ids)} class ids for {self.images.shape[0]} classes"
            )

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return self.images.shape[0]

    @property
    def examples_per_class(self) -> int:
        """Number of images of each class."""
        return self.images.shape[1]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.images.shape[2:]
        return (c, h, w)

    def to(self, device: torch.device | str) -> ClassImages:
        """The same images on another device (episodes are then gathered there)."""
        return ClassImages(self.images.to(device), self.class_ids)


@dataclass(frozen=True)
class DatasetSplits:
    """Meta-train, meta-validation and meta-test classes, and where they came from."""

    train: ClassImages
    val: ClassImages
    test: ClassImages
    from_cache: bool
    cache_path: Path | None

    def split(self, name: str) -> ClassImages:
        """The split called ``name`` (train, val or test)."""
        if name not in SPLITS:
            raise DatasetError(f"split: expected one of {', '.join(SPLITS)}, got {name!r}")
        return getattr(self, name)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def source_identity(path: Path) -> str:
    """Digest of a source: sha256 of a file's bytes, or of a folder's (path, size, mtime) list."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(path).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def cache_key(kind: str, sources: dict[str, str], settings: dict[str, Any]) -> str:
    """sha256 over the cache format, the dataset kind, the source identities and the settings."""
    blob = json.dumps(
        {"format": CACHE_FORMAT, "kind": kind, "sources": sources, "settings": settings},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def cache_file(folder: Path, kind: str, key: str) -> Path:
    """The cache file for a dataset kind and key."""
    return Path(folder) / f"{kind}-{key[:24]}.npz"


def save_splits(path: Path, splits: dict[str, ClassImages]) -> None:
    """Write the splits to ``path`` atomically."""
    arrays: dict[str, np.ndarray] = {}
    for name, split in splits.items():
        arrays[f"{name}_images"] = split.images.cpu().numpy()
        arrays[f"{name}_class_ids"] = np.array(split.class_ids, dtype=np.str_)
    with atomic_writer(path) as f:
        np.savez(f, **arrays)


def load_splits(path: Path) -> dict[str, ClassImages] | None:
    """The cached splits, or None when the file is absent or unreadable (it is then rebuilt)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            names = sorted(k[: -len("_images")] for k in data.files if k.endswith("_images"))
            return {
                name: ClassImages(
                    torch.from_numpy(np.ascontiguousarray(data[f"{name}_images"])),
                    tuple(str(c) for c in data[f"{name}_class_ids"]),
                )
                for name in names
            }
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        log.warning("ignoring unreadable cache %s (%s); rebuilding it", path, exc)
        return None
