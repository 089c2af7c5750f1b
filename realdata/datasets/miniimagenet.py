"""Mini-ImageNet, Ravi-Larochelle split (64 train / 16 val / 20 test classes, 600 images, 84x84).

Two distributions are read from ``<data root>/miniimagenet`` (or a folder you pass):

- ``images/`` (JPEGs) with ``train.csv``, ``val.csv``, ``test.csv`` (columns ``filename,label``):
  preferred; decoded once and cached like Omniglot;
- ``mini-imagenet-cache-{train,val,test}.pkl``: dicts with ``image_data`` uint8 (N, 84, 84, 3)
  and ``class_dict`` {class name: list of row indices}. Unpickling runs whatever code the file
  names, so these are read only with ``allow_pickle=True`` (pass it only for files you trust).

Each split becomes ``ClassImages`` uint8 (classes, images per class, 3, S, S), classes sorted by
name, images in file order; images not S x S are resized with PIL LANCZOS.
"""

from __future__ import annotations

import csv
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image

from realdata.datasets.cache import (
    SPLITS,
    ClassImages,
    DatasetSplits,
    cache_file,
    cache_key,
    load_splits,
    save_splits,
    source_identity,
)
from realdata.datasets.errors import DatasetError
from realdata.datasets.locate import cache_dir, require_miniimagenet_root
from realdata.datasets.preprocess import rgb_image

IMAGE_SIZE = 84
PICKLE_NAME = "mini-imagenet-cache-{}.pkl"
CSV_COLUMNS = ("filename", "label")
CSV_LAYOUT, PICKLE_LAYOUT = "csv", "pickle"  # images/ + CSVs, or the three pickles


def _equal_counts(source: Path, counts: dict[str, int]) -> int:
    if not counts:
        raise DatasetError(f"{source}: no classes found; expected at least one")
    per_class = max(counts.values())
    short = {name: n for name, n in counts.items() if n != per_class}
    if short:
        listing = ", ".join(f"{name}: {n}" for name, n in list(short.items())[:5])
        raise DatasetError(
            f"{source}: inconsistent image counts per class; expected {per_class} for every "
            f"class, got {listing}"
        )
    return per_class


def _resize_rgb(images: np.ndarray, image_size: int) -> np.ndarray:
    """uint8 (..., H, W, 3) -> uint8 (..., S, S, 3) with LANCZOS (a no-op at the target size)."""
    if images.shape[-3:-1] == (image_size, image_size):
        return images
    flat = images.reshape(-1, *images.shape[-3:])
    out = np.empty((len(flat), image_size, image_size, 3), dtype=np.uint8)

    def work(i: int) -> None:
        out[i] = np.asarray(
            Image.fromarray(flat[i]).resize((image_size, image_size), Image.Resampling.LANCZOS)
        )

    with ThreadPoolExecutor() as pool:
        list(pool.map(work, range(len(flat))))
    return out.reshape(*images.shape[:-3], image_size, image_size, 3)


def _to_class_images(images: np.ndarray, names: list[str]) -> ClassImages:
    """uint8 (classes, n, S, S, 3) -> ClassImages (classes, n, 3, S, S)."""
    chw = np.ascontiguousarray(images.transpose(0, 1, 4, 2, 3))
    return ClassImages(torch.from_numpy(chw), tuple(names))


def read_miniimagenet_pickle(
    path: Path, *, allow_pickle: bool = False, image_size: int = IMAGE_SIZE
) -> ClassImages:
    """One split from a ``mini-imagenet-cache-<split>.pkl`` (only with ``allow_pickle=True``)."""
    path = Path(path)
    if not allow_pickle:
        raise DatasetError(
            f"{path}: refusing to unpickle: loading a pickle can run arbitrary code. If you trust "
            "this file, pass allow_pickle=True; otherwise use the images/ + "
            "train.csv/val.csv/test.csv distribution, which needs no pickle"
        )
    expect = "a dict with 'image_data' (uint8, N x 84 x 84 x 3) and 'class_dict' {name: [rows]}"
    if not path.is_file():
        raise DatasetError(f"{path}: not found; expected {expect}")
    try:
        with open(path, "rb") as f:
            data = pickle.load(f, encoding="latin1")
    except Exception as exc:  # unpickling can fail in any way a malformed stream dictates
        raise DatasetError(f"{path}: not a readable pickle ({exc!r}); expected {expect}") from exc
    if not isinstance(data, dict) or not {"image_data", "class_dict"} <= set(data):
        found = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise DatasetError(f"{path}: found {found}; expected {expect}")
    image_data, class_dict = data["image_data"], data["class_dict"]
    if (
        not isinstance(image_data, np.ndarray)
        or image_data.dtype != np.uint8
        or image_data.ndim != 4
        or image_data.shape[-1] != 3
    ):
        kind = f"{type(image_data).__name__} {getattr(image_data, 'dtype', '')}"
        shape = getattr(image_data, "shape", None)
        raise DatasetError(f"{path}: 'image_data' is {kind} of shape {shape}; expected uint8 (N, 84, 84, 3)")
    if not isinstance(class_dict, dict) or not class_dict:
        raise DatasetError(f"{path}: 'class_dict' is empty or not a dict; expected {expect}")
    rows = {str(name): np.asarray(idx, dtype=np.int64).reshape(-1) for name, idx in class_dict.items()}
    _equal_counts(path, {name: len(idx) for name, idx in rows.items()})
    names = sorted(rows)
    index = np.stack([rows[name] for name in names])
    if index.min() < 0 or index.max() >= len(image_data):
        raise DatasetError(
            f"{path}: 'class_dict' row indices span {index.min()}..{index.max()}; expected "
            f"0..{len(image_data) - 1} (rows of 'image_data')"
        )
    if len(np.unique(index)) != index.size:
        raise DatasetError(f"{path}: 'class_dict' lists some rows under several classes")
    return _to_class_images(_resize_rgb(image_data[index], image_size), names)


def _safe_name(csv_path: Path, line: int, name: str) -> str:
    posix = PurePosixPath(name.replace("\\", "/"))
    if not name or posix.is_absolute() or ".." in posix.parts:
        raise DatasetError(f"{csv_path}, line {line}: filename {name!r} must be a plain name inside images/")
    return posix.as_posix()


def read_miniimagenet_csv(csv_path: Path, images_dir: Path, *, image_size: int = IMAGE_SIZE) -> ClassImages:
    """One split from a ``filename,label`` CSV and the ``images/`` folder of JPEGs."""
    csv_path, images_dir = Path(csv_path), Path(images_dir)
    try:
        with open(csv_path, newline="") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            if not set(CSV_COLUMNS) <= set(columns):
                raise DatasetError(
                    f"{csv_path}: columns {columns}; expected a header with {','.join(CSV_COLUMNS)}"
                )
            by_class: dict[str, list[str]] = {}
            for row in reader:
                line = reader.line_num
                name, label = (row.get(c) or "" for c in CSV_COLUMNS)
                if not label:
                    raise DatasetError(f"{csv_path}, line {line}: empty label; expected a class name")
                by_class.setdefault(label, []).append(_safe_name(csv_path, line, name))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(
            f"{csv_path}: not a readable CSV ({exc}); expected columns {','.join(CSV_COLUMNS)}"
        ) from exc
    _equal_counts(csv_path, {label: len(files) for label, files in by_class.items()})
    names = sorted(by_class)
    files = [images_dir / f for label in names for f in by_class[label]]
    missing = [p.name for p in files if not p.is_file()]
    if missing:
        raise DatasetError(
            f"{images_dir}: {len(missing)} image(s) listed in {csv_path.name} are missing, e.g. "
            f"{', '.join(missing[:5])}; expected every listed file in this folder"
        )
    out = np.empty((len(files), image_size, image_size, 3), dtype=np.uint8)

    def work(i: int) -> None:
        try:
            with Image.open(files[i]) as image:
                out[i] = rgb_image(image, image_size)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise DatasetError(f"{files[i]}: not a readable image ({exc})") from exc

    with ThreadPoolExecutor() as pool:
        list(pool.map(work, range(len(files))))
    return _to_class_images(out.reshape(len(names), -1, image_size, image_size, 3), names)


def load_miniimagenet(
    folder: Path | None = None,
    *,
    allow_pickle: bool = False,
    image_size: int = IMAGE_SIZE,
    use_cache: bool = True,
    cache_folder: Path | None = None,
) -> DatasetSplits:
    """Train/val/test of Mini-ImageNet from ``folder`` (default ``<data root>/miniimagenet``).

    Uses ``images/`` + CSVs when present (cached after the first decode), else the three pickles,
    which need ``allow_pickle=True``.
    """
    folder = Path(folder) if folder is not None else require_miniimagenet_root()
    if miniimagenet_layout(folder) == CSV_LAYOUT:
        csvs = {s: folder / f"{s}.csv" for s in SPLITS}
        return _load_csv(folder, csvs, folder / "images", image_size, use_cache, cache_folder)
    splits = {
        s: read_miniimagenet_pickle(
            folder / PICKLE_NAME.format(s), allow_pickle=allow_pickle, image_size=image_size
        )
        for s in SPLITS
    }
    _check_disjoint(folder, splits)
    return DatasetSplits(**splits, from_cache=False, cache_path=None)


def miniimagenet_layout(folder: Path) -> str:
    """Which complete distribution ``folder`` holds, ``CSV_LAYOUT`` (preferred) or ``PICKLE_LAYOUT``,
    from the file names alone (nothing is read); DatasetError naming what is there if neither."""
    csvs = [folder / f"{s}.csv" for s in SPLITS]
    pickles = [folder / PICKLE_NAME.format(s) for s in SPLITS]
    images_dir = folder / "images"
    if images_dir.is_dir() and all(p.is_file() for p in csvs):
        return CSV_LAYOUT
    if all(p.is_file() for p in pickles):
        return PICKLE_LAYOUT
    present = sorted(p.name for p in [images_dir, *csvs, *pickles] if p.exists())
    raise DatasetError(
        f"{folder}: no complete Mini-ImageNet found (present: {present or 'nothing'}); expected "
        "either images/ with train.csv, val.csv, test.csv, or mini-imagenet-cache-train.pkl, "
        "-val.pkl and -test.pkl (see docs/datasets.md)"
    )


def _check_disjoint(folder: Path, splits: dict[str, ClassImages]) -> None:
    seen: dict[str, str] = {}
    for split, images in splits.items():
        for name in images.class_ids:
            if name in seen:
                raise DatasetError(
                    f"{folder}: class {name} is in both {seen[name]} and {split}; expected "
                    "disjoint class sets (Ravi-Larochelle split)"
                )
            seen[name] = split


def _load_csv(
    folder: Path,
    csvs: dict[str, Path],
    images_dir: Path,
    image_size: int,
    use_cache: bool,
    cache_folder: Path | None,
) -> DatasetSplits:
    sources = {s: source_identity(p) for s, p in csvs.items()}
    sources["images"] = source_identity(images_dir)
    key = cache_key("miniimagenet", sources, {"image_size": image_size, "resample": "lanczos"})
    path = cache_file(cache_folder if cache_folder is not None else cache_dir(), "miniimagenet", key)
    if use_cache:
        cached = load_splits(path)
        if cached is not None and set(cached) == set(SPLITS):
            return DatasetSplits(**cached, from_cache=True, cache_path=path)
    splits = {s: read_miniimagenet_csv(p, images_dir, image_size=image_size) for s, p in csvs.items()}
    _check_disjoint(folder, splits)
    if use_cache:
        save_splits(path, splits)
    return DatasetSplits(**splits, from_cache=False, cache_path=path if use_cache else None)
