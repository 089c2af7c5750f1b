"""Where the data and the preprocessing cache live.

Data root: ``$SHARPMAML_DATA`` if set, else ``<repo>/../shared/data``; used only if it exists.
Omniglot is read from ``<data root>/omniglot`` and Mini-ImageNet from
``<data root>/miniimagenet``. Cache: ``$SHARPMAML_CACHE`` if set, else the user's cache folder
(``$XDG_CACHE_HOME/sharpmaml``, else ``~/.cache/sharpmaml``): never inside the checkout or the
installed package.
"""

from __future__ import annotations

import os
from pathlib import Path

from infra.paths import repo_root, user_folder
from realdata.datasets.errors import DatasetError

DATA_ENV = "SHARPMAML_DATA"
CACHE_ENV = "SHARPMAML_CACHE"
OMNIGLOT_DIR = "omniglot"
MINIIMAGENET_DIR = "miniimagenet"


def default_data_root() -> Path:
    """``$SHARPMAML_DATA`` if set, else ``<repo>/../shared/data`` (whether or not it exists)."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    return repo_root().parent / "shared" / "data"


def find_data_root() -> Path | None:
    """The data root if it exists, else None (no fallback when ``$SHARPMAML_DATA`` is set)."""
    root = default_data_root()
    return root if root.is_dir() else None


def _where_to_put(subdir: str, files: str, given_root: Path | None = None) -> str:
    if given_root is not None:
        return f"put {files} in {Path(given_root) / subdir}/ (the data root you passed)"
    return (
        f"put {files} in <data root>/{subdir}/, where <data root> is ${DATA_ENV} "
        f"(currently {os.environ.get(DATA_ENV) or 'unset'}) or, when that is unset, "
        f"{repo_root().parent / 'shared' / 'data'}"
    )


def _require_dataset_folder(
    data_root: Path | None, subdir: str, label: str, expected: str, hint: str = ""
) -> Path:
    """``<data root>/<subdir>``; if absent, DatasetError naming the folder and what goes in it."""
    root = data_root if data_root is not None else find_data_root()
    folder = None if root is None else Path(root) / subdir
    if folder is None or not folder.is_dir():
        looked = default_data_root() / subdir if folder is None else folder
        where = _where_to_put(subdir, expected, data_root)
        raise DatasetError(f"{looked}: {label} folder not found; " + where + hint)
    return folder


def require_omniglot_root(data_root: Path | None = None) -> Path:
    """The folder ``<data root>/omniglot``; if absent, DatasetError saying where to put it."""
    return _require_dataset_folder(
        data_root,
        OMNIGLOT_DIR,
        "Omniglot",
        "images_background.npz and images_evaluation.npz, or Lake's "
        "images_background.zip and images_evaluation.zip (zipped or unzipped)",
        " (or download them: python -m realdata.datasets.download --help)",
    )


def require_miniimagenet_root(data_root: Path | None = None) -> Path:
    """The Mini-ImageNet folder ``<data root>/miniimagenet``; DatasetError if absent."""
    return _require_dataset_folder(
        data_root,
        MINIIMAGENET_DIR,
        "Mini-ImageNet",
        "images/ with train.csv, val.csv, test.csv (Ravi-Larochelle split) or "
        "mini-imagenet-cache-{train,val,test}.pkl",
    )


def cache_dir() -> Path:
    """``$SHARPMAML_CACHE`` if set, else ``$XDG_CACHE_HOME/sharpmaml`` when that is an absolute
    path (the XDG rule), else ``~/.cache/sharpmaml`` (created on first write)."""
    return user_folder(CACHE_ENV, "XDG_CACHE_HOME", ".cache")
