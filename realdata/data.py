"""Reading a dataset by name: where its files are, whether to download, which formats to allow."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from realdata.datasets import (
    DatasetError,
    DatasetSplits,
    OmniglotSettings,
    ensure_omniglot,
    load_miniimagenet,
    load_omniglot,
    miniimagenet_layout,
    require_miniimagenet_root,
)
from realdata.splits import DATASET_SPLITS, DEFAULT_SPLITS


@dataclass(frozen=True)
class DataOptions:
    """Where and how to read a dataset: data root (None: the default one), Omniglot download
    with the sha256 digests to check, and the opt-in for Mini-ImageNet pickles."""

    data_root: Path | None = None
    download: bool = False
    sha256: dict[str, str] | None = None
    allow_pickle: bool = False


def _load_omniglot(options: DataOptions, split: str) -> DatasetSplits:
    folder = ensure_omniglot(options.data_root, download=options.download, sha256=options.sha256)
    return load_omniglot(folder, OmniglotSettings(split=split))


def _load_miniimagenet(options: DataOptions, split: str) -> DatasetSplits:
    if options.download:
        raise DatasetError(
            "download: only Omniglot can be downloaded; Mini-ImageNet must be put in place by "
            "hand (see docs/datasets.md)"
        )
    folder = require_miniimagenet_root(options.data_root)
    return load_miniimagenet(folder, allow_pickle=options.allow_pickle)


# Dataset name (Preset.dataset) -> loader of its train/val/test parts under a named split.
DATASET_LOADERS: dict[str, Callable[[DataOptions, str], DatasetSplits]] = {
    "omniglot": _load_omniglot,
    "miniimagenet": _load_miniimagenet,
}


def _locate_miniimagenet(data_root: Path | None) -> Path:
    folder = require_miniimagenet_root(data_root)
    miniimagenet_layout(folder)
    return folder


# Dataset name -> the folder holding its source files under a data root (None: the default one),
# found from the file names alone: nothing is read, decoded or downloaded.
DATASET_LOCATORS: dict[str, Callable[[Path | None], Path]] = {
    "omniglot": ensure_omniglot,
    "miniimagenet": _locate_miniimagenet,
}


def locate_dataset(name: str, data_root: Path | None = None) -> Path:
    """The folder of dataset ``name`` under ``data_root`` when its source files are all there
    (for a machine that checks where others will read the data); DatasetError saying where to
    put them otherwise."""
    return DATASET_LOCATORS[name](data_root)


def load_dataset(name: str, options: DataOptions = DataOptions(), split: str | None = None) -> DatasetSplits:
    """Dataset ``name`` cut by its named ``split`` (None: the dataset's default); DatasetError
    saying where to put missing files."""
    split = DEFAULT_SPLITS[name] if split is None else split
    if split not in DATASET_SPLITS[name]:
        raise DatasetError(f"split: {name} has the splits {list(DATASET_SPLITS[name])}; got {split!r}")
    return DATASET_LOADERS[name](options, split)


@functools.lru_cache(maxsize=2)
def worker_dataset(name: str, data_root: str | None, split: str | None = None) -> DatasetSplits:
    """Dataset ``name`` cut by ``split`` under ``data_root`` (None: the defaults), loaded once
    per process: a worker process (sweep run, gate seed) reuses it for every task it runs."""
    return load_dataset(name, DataOptions(data_root=None if data_root is None else Path(data_root)), split)
