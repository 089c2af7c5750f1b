"""Omniglot (Lake et al. 2015): readers for the npz and canonical PNG layouts, the standard split.

Sources, in ``<data root>/omniglot`` (first found per set wins):

- ``images_background.npz`` / ``images_evaluation.npz``: ``images`` bool (chars, drawers, H, W),
  True = white background (ink is ``~images``), ``labels`` int (chars, drawers) = row index;
- ``images_background/`` / ``images_evaluation/``: Lake's folders
  ``<Alphabet>/<characterNN>/<NNNN>_<DD>.png`` (NNNN = character id within the set, DD = drawer),
  optionally under one more top folder;
- ``images_background.zip`` / ``images_evaluation.zip``: the same, zipped (as Lake distributes
  them); any top folder name is accepted, e.g. ``images_background_small1/``.

Characters are ordered by (set, NNNN): Omniglot's global order, background before evaluation.
Preprocessing (MAML): resized to 28x28 with PIL LANCZOS, ink = 1; rotations by 0/90/180/270
degrees make each character 4 classes of its own part. The split into meta-train,
meta-validation and meta-test characters is one of the named splits of ``omniglot_splits``
(``hash``, the default, ``vinyals`` or ``lake``).
"""

from __future__ import annotations

import logging
import re
import time
import zipfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from harness.config import require_int
from realdata.datasets.cache import (
    ClassImages,
    DatasetSplits,
    cache_file,
    cache_key,
    load_splits,
    save_splits,
    source_identity,
)
from realdata.datasets.errors import DatasetError
from realdata.datasets.locate import cache_dir, require_omniglot_root
from realdata.datasets.omniglot_splits import (
    DEFAULT_SPLIT,
    HASH,
    full_character_ids,
    hash_split_indices,
    range_split_indices,
    require_split,
)
from realdata.datasets.preprocess import RESAMPLING, decode_ink, resize_ink_image

log = logging.getLogger(__name__)

BACKGROUND = "images_background"
EVALUATION = "images_evaluation"
SETS = (BACKGROUND, EVALUATION)
ROTATIONS = (0, 90, 180, 270)
_PNG_NAME = re.compile(r"^(\d+)_(\d+)\.png$", re.IGNORECASE)
_LAYOUT = "<Alphabet>/<characterNN>/<NNNN>_<DD>.png (optionally under one top folder)"


@dataclass(frozen=True)
class OmniglotChars:
    """Raw characters of one source: ``ink`` bool (chars, drawers, H, W), True where there is ink.

    ``char_ids`` are ``"<set>/<NNNN>"`` with Lake's 1-based character id within the set.
    """

    ink: np.ndarray
    char_ids: tuple[str, ...]
    source: Path


@dataclass(frozen=True)
class OmniglotSettings:
    """Preprocessing and split settings (all part of the cache key).

    image_size: output side (28 in MAML). resample: "lanczos" (MAML) or "box" (area average).
    rotations: add 90/180/270-degree rotations as extra classes. split: the named split
    (``omniglot_splits``). For ``hash`` only: train_chars characters for meta-training, of
    which the last val_chars (in split order) form meta-validation, the rest meta-test;
    split_seed: seed of the split order, None for Omniglot's global order. total_chars: the
    number of characters the sources must hold (None: any, for small subsets).
    """

    image_size: int = 28
    resample: str = "lanczos"
    rotations: bool = True
    train_chars: int = 1200
    val_chars: int = 100
    split_seed: int | None = 1
    total_chars: int | None = 1623
    split: str = DEFAULT_SPLIT

    def __post_init__(self) -> None:
        require_split(self.split)
        if self.resample not in RESAMPLING:
            raise DatasetError(f"resample: expected one of {', '.join(RESAMPLING)}, got {self.resample!r}")
        require_int(self.image_size, "image_size", minimum=1)
        if not 0 <= self.val_chars < self.train_chars:
            raise DatasetError(
                f"val_chars: expected 0 <= val_chars < train_chars ({self.train_chars}), got {self.val_chars}"
            )
        if self.total_chars is not None and self.total_chars <= self.train_chars:
            raise DatasetError(
                f"train_chars: expected fewer than total_chars ({self.total_chars}) to leave "
                f"meta-test characters, got {self.train_chars}"
            )


def read_omniglot(path: Path, set_name: str | None = None) -> OmniglotChars:
    """Read one Omniglot set from an ``.npz``, a ``.zip`` or a folder in Lake's layout.

    ``set_name`` prefixes the character ids (default: the file or folder name without suffix).
    """
    path = Path(path)
    name = set_name or path.stem
    if path.is_dir():
        files = [p for p in sorted(path.rglob("*")) if p.is_file()]
        entries = [(p.relative_to(path).as_posix(), p.read_bytes) for p in files]
        return _assemble(entries, path, name)
    if not path.is_file():
        raise DatasetError(
            f"{path}: not found; expected an Omniglot .npz, a .zip or a folder in Lake's layout {_LAYOUT}"
        )
    if path.suffix.lower() == ".npz":
        return _read_npz(path, name)
    if path.suffix.lower() == ".zip":
        return _read_zip(path, name)
    raise DatasetError(f"{path}: expected an Omniglot .npz, a .zip or a folder")


def _read_npz(path: Path, set_name: str) -> OmniglotChars:
    expect = "keys 'images' (bool, chars x drawers x H x W) and 'labels' (int, chars x drawers)"
    try:
        with np.load(path, allow_pickle=False) as data:
            found = sorted(data.files)
            arrays = {k: data[k] for k in ("images", "labels") if k in found}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError(f"{path}: not a readable npz file ({exc}); expected {expect}") from exc
    if len(arrays) != 2:
        missing = sorted({"images", "labels"} - set(arrays))
        raise DatasetError(f"{path}: missing key(s) {missing}; expected {expect}, found {found}")
    images, labels = arrays["images"], arrays["labels"]
    if images.dtype != np.bool_ or images.ndim != 4 or min(images.shape) < 1:
        raise DatasetError(
            f"{path}: 'images' has dtype {images.dtype} and shape {images.shape}; expected bool "
            "(chars, drawers, H, W) with True = white background"
        )
    if not np.issubdtype(labels.dtype, np.integer) or labels.shape != images.shape[:2]:
        raise DatasetError(
            f"{path}: 'labels' has dtype {labels.dtype} and shape {labels.shape}; expected an "
            f"integer array of shape {images.shape[:2]}"
        )
    if not (labels == np.arange(len(labels))[:, None]).all():
        raise DatasetError(f"{path}: 'labels' row i must hold character index i (global order); it does not")
    np.logical_not(images, out=images)
    ids = tuple(f"{set_name}/{i + 1:04d}" for i in range(len(images)))
    return OmniglotChars(images, ids, path)


def _check_member(zip_path: Path, name: str) -> None:
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or ".." in posix.parts or re.match(r"^[A-Za-z]:", name):
        raise DatasetError(
            f"{zip_path}: unsafe member {name!r} (absolute path or '..'); refusing to read this "
            "archive; expected relative paths like " + _LAYOUT
        )


def _read_zip(path: Path, set_name: str) -> OmniglotChars:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(
            f"{path}: not a readable zip file ({exc}); expected Lake's {path.name} with {_LAYOUT}"
        ) from exc
    with archive:
        for info in archive.infolist():
            _check_member(path, info.filename)
        infos = [i for i in archive.infolist() if not i.is_dir()]

        def reader(info: zipfile.ZipInfo) -> Callable[[], bytes]:
            def read() -> bytes:
                try:
                    return archive.read(info)
                except (zipfile.BadZipFile, OSError, EOFError) as exc:  # CRC or zlib failure
                    raise DatasetError(f"{path}: member {info.filename} is corrupt ({exc})") from exc

            return read

        return _assemble([(i.filename, reader(i)) for i in infos], path, set_name)


def _assemble(
    entries: Iterable[tuple[str, Callable[[], bytes]]], source: Path, set_name: str
) -> OmniglotChars:
    """Group ``<Alphabet>/<characterNN>/<NNNN>_<DD>.png`` entries into characters; decode them."""
    folders: dict[tuple[str, ...], dict[int, tuple[str, Callable[[], bytes]]]] = {}
    char_of_folder: dict[tuple[str, ...], int] = {}
    for name, read in entries:
        parts = PurePosixPath(name).parts
        if not parts[-1].lower().endswith(".png") or parts[0] == "__MACOSX" or parts[-1].startswith("."):
            continue
        match = _PNG_NAME.match(parts[-1])
        if len(parts) not in (3, 4) or match is None:
            raise DatasetError(f"{source}: unexpected file {name}; expected {_LAYOUT}")
        folder, char, drawer = parts[:-1], int(match[1]), int(match[2])
        if char_of_folder.setdefault(folder, char) != char:
            raise DatasetError(
                f"{source}: {'/'.join(folder)} mixes characters {char_of_folder[folder]:04d} and "
                f"{char:04d}; expected one character id per folder ({_LAYOUT})"
            )
        folders.setdefault(folder, {})[drawer] = (name, read)
    if not folders:
        raise DatasetError(f"{source}: no Omniglot PNGs found; expected {_LAYOUT}")
    by_char = sorted(char_of_folder.items(), key=lambda item: item[1])
    for (f1, c1), (f2, c2) in pairwise(by_char):
        if c1 == c2:
            raise DatasetError(
                f"{source}: folders {'/'.join(f1)} and {'/'.join(f2)} both hold character {c1:04d}"
            )
    drawers = sorted(folders[by_char[0][0]])
    if drawers != list(range(1, len(drawers) + 1)):
        raise DatasetError(
            f"{source}: {'/'.join(by_char[0][0])} has drawers {drawers}; expected 01..{len(drawers):02d}"
        )
    for folder, _ in by_char:
        if sorted(folders[folder]) != drawers:
            raise DatasetError(
                f"{source}: {'/'.join(folder)} has drawers {sorted(folders[folder])}; expected "
                f"the same {len(drawers)} drawers 01..{len(drawers):02d} as every other character"
            )
    first_name, first_read = folders[by_char[0][0]][1]
    shape = decode_ink(first_read(), f"{source}: {first_name}").shape
    ink = np.empty((len(by_char), len(drawers), *shape), dtype=np.bool_)
    for i, (folder, _) in enumerate(by_char):
        for j, d in enumerate(drawers):
            name, read = folders[folder][d]
            image = decode_ink(read(), f"{source}: {name}")
            if image.shape != shape:
                raise DatasetError(
                    f"{source}: {name} is {image.shape[1]}x{image.shape[0]}; expected "
                    f"{shape[1]}x{shape[0]} like every other image"
                )
            ink[i, j] = image
    return OmniglotChars(ink, tuple(f"{set_name}/{c:04d}" for _, c in by_char), source)


def resize_ink(ink: np.ndarray, image_size: int, resample: str = "lanczos") -> np.ndarray:
    """Resize bool ink (chars, drawers, H, W) to uint8 (chars, drawers, S, S), ink = 255."""
    if resample not in RESAMPLING:
        raise DatasetError(f"resample: expected one of {', '.join(RESAMPLING)}, got {resample!r}")
    out = np.empty((*ink.shape[:2], image_size, image_size), dtype=np.uint8)

    def work(i: int) -> None:
        for j in range(ink.shape[1]):
            out[i, j] = resize_ink_image(ink[i, j], image_size, resample)

    with ThreadPoolExecutor() as pool:
        list(pool.map(work, range(ink.shape[0])))
    return out


def to_class_images(images: np.ndarray, char_ids: Iterable[str], rotations: bool) -> ClassImages:
    """uint8 (chars, drawers, S, S) -> ClassImages (classes, drawers, 1, S, S).

    With rotations, character c gives classes ``<id>/rot000``, ``/rot090``, ``/rot180``,
    ``/rot270`` (counter-clockwise, in this order, adjacent).
    """
    ids = list(char_ids)
    if rotations:
        images = np.stack([np.rot90(images, k, axes=(-2, -1)) for k in range(4)], axis=1)
        images = images.reshape(-1, *images.shape[2:])
        ids = [f"{c}/rot{deg:03d}" for c in ids for deg in ROTATIONS]
    return ClassImages(torch.from_numpy(np.ascontiguousarray(images[:, :, None])), tuple(ids))


def omniglot_class_images(
    chars: OmniglotChars, *, image_size: int = 28, resample: str = "lanczos", rotations: bool = True
) -> ClassImages:
    """All characters of one source as classes, without a split (e.g. the small zips)."""
    return to_class_images(resize_ink(chars.ink, image_size, resample), chars.char_ids, rotations)


def find_omniglot_sources(folder: Path) -> dict[str, Path]:
    """Per set, the first of ``<set>.npz``, ``<set>/``, ``<set>.zip`` present in ``folder``."""
    folder = Path(folder)
    found: dict[str, Path] = {}
    for name in SETS:
        for candidate in (folder / f"{name}.npz", folder / name, folder / f"{name}.zip"):
            if candidate.exists():
                found[name] = candidate
                break
        else:
            raise DatasetError(
                f"{folder}: no Omniglot '{name}' found; expected {name}.npz, {name}/ (Lake's "
                f"folders {_LAYOUT}) or {name}.zip in this folder "
                "(see docs/datasets.md; download: python -m realdata.datasets.download)"
            )
    return found


def split_indices(char_ids: list[str], settings: OmniglotSettings) -> dict[str, list[int]]:
    """Indices (into ``char_ids``, global order) of the train/val/test characters, each sorted."""
    if settings.split == HASH:
        return hash_split_indices(char_ids, settings.train_chars, settings.val_chars, settings.split_seed)
    return range_split_indices(char_ids, settings.split)


def split_characters(split: str) -> dict[str, set[str]]:
    """The full Omniglot's character ids in each part of a named split (``hash`` with its
    default settings, as presets name it)."""
    ids = full_character_ids()
    parts = split_indices(ids, OmniglotSettings(split=require_split(split)))
    return {part: {ids[i] for i in indices} for part, indices in parts.items()}


def split_overlap(trained_on: str, evaluated_on: str) -> tuple[set[str], int]:
    """The meta-test characters of ``evaluated_on`` that a model trained on ``trained_on`` saw
    (its meta-train or meta-validation characters: validation chose its best checkpoint), and
    the number of meta-test characters. Computed from the ids alone, before any data is read."""
    seen, test = split_characters(trained_on), split_characters(evaluated_on)["test"]
    return test & (seen["train"] | seen["val"]), len(test)


def load_omniglot(
    folder: Path | None = None,
    settings: OmniglotSettings = OmniglotSettings(),
    *,
    use_cache: bool = True,
    cache_folder: Path | None = None,
) -> DatasetSplits:
    """The Omniglot train/val/test splits, from the cache when the sources and settings match.

    ``folder`` holds the two sets (default: ``require_omniglot_root()``); ``cache_folder``
    defaults to ``locate.cache_dir()``.
    """
    folder = Path(folder) if folder is not None else require_omniglot_root()
    sources = find_omniglot_sources(folder)
    key = cache_key("omniglot", {name: source_identity(p) for name, p in sources.items()}, asdict(settings))
    path = cache_file(cache_folder if cache_folder is not None else cache_dir(), "omniglot", key)
    if use_cache:
        cached = load_splits(path)
        if cached is not None and set(cached) == {"train", "val", "test"}:
            log.info("Omniglot loaded from cache %s", path)
            return DatasetSplits(**cached, from_cache=True, cache_path=path)
    start = time.perf_counter()
    resized, ids = [], []
    for name, source in sources.items():
        chars = read_omniglot(source, name)
        resized.append(resize_ink(chars.ink, settings.image_size, settings.resample))
        ids.extend(chars.char_ids)
    if len({r.shape[1] for r in resized}) != 1:
        raise DatasetError(
            f"{folder}: the sets have {[r.shape[1] for r in resized]} drawers per character; "
            "expected the same number in both"
        )
    images = np.concatenate(resized)
    if settings.total_chars is not None and len(ids) != settings.total_chars:
        raise DatasetError(
            f"{folder}: found {len(ids)} characters in {', '.join(map(str, sources.values()))}; "
            f"expected {settings.total_chars} (the full Omniglot: 964 background + 659 evaluation)"
        )
    if settings.split == HASH and len(ids) <= settings.train_chars:
        raise DatasetError(
            f"{folder}: found {len(ids)} characters; expected more than train_chars "
            f"({settings.train_chars}) to leave meta-test characters"
        )
    splits = {
        name: to_class_images(images[idx], [ids[i] for i in idx], settings.rotations)
        for name, idx in split_indices(ids, settings).items()
    }
    log.info("Omniglot preprocessed in %.1f s", time.perf_counter() - start)
    if use_cache:
        save_splits(path, splits)
    return DatasetSplits(**splits, from_cache=False, cache_path=path if use_cache else None)
