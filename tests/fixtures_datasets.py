"""Tiny datasets in every supported on-disk format, generated for tests/test_datasets.py."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def random_ink(n_chars: int, n_drawers: int, size: int = 105, seed: int = 0) -> np.ndarray:
    """bool (chars, drawers, size, size), True = ink: a few random strokes (rectangles) each."""
    rng = np.random.default_rng(seed)
    ink = np.zeros((n_chars, n_drawers, size, size), dtype=bool)
    for c in range(n_chars):
        for d in range(n_drawers):
            for _ in range(3):
                y, x = rng.integers(0, size - size // 4, 2)
                h, w = rng.integers(2, size // 4, 2)
                ink[c, d, y : y + h, x : x + w] = True
    return ink


def write_omniglot_npz(path: Path, ink: np.ndarray) -> Path:
    """The npz form: ``images`` = ~ink (True = white background), ``labels`` = row index."""
    labels = np.repeat(np.arange(len(ink), dtype=np.int64)[:, None], ink.shape[1], axis=1)
    np.savez(path, images=~ink, labels=labels)
    return path


def write_omniglot_folder(root: Path, ink: np.ndarray, first_id: int = 1, per_alphabet: int = 3) -> Path:
    """Lake's layout: ``root/Alphabet_k/characterNN/<NNNN>_<DD>.png`` (1-bit, white background)."""
    for c in range(len(ink)):
        char_id = first_id + c
        folder = root / f"Alphabet_{c // per_alphabet}" / f"character{c % per_alphabet + 1:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for d in range(ink.shape[1]):
            Image.fromarray(~ink[c, d]).convert("1").save(folder / f"{char_id:04d}_{d + 1:02d}.png")
    return root


def zip_folder(folder: Path, zip_path: Path, top: str | None) -> Path:
    """Zip ``folder``'s files, under the top folder ``top`` (or at the archive root if None)."""
    with zipfile.ZipFile(zip_path, "w") as archive:
        for p in sorted(folder.rglob("*")):
            rel = p.relative_to(folder).as_posix()
            archive.write(p, f"{top}/{rel}" if top else rel)
    return zip_path


def mini_images(n_classes: int, n_per_class: int, size: int, seed: int) -> np.ndarray:
    """uint8 (classes, n, size, size, 3) random colour images."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n_classes, n_per_class, size, size, 3), dtype=np.uint8)


def write_mini_pickle(path: Path, images: np.ndarray, names: list[str], shuffle_seed: int = 0) -> Path:
    """A ``mini-imagenet-cache-<split>.pkl``: rows shuffled, ``class_dict`` maps names to rows."""
    n_classes, n = images.shape[:2]
    perm = np.random.default_rng(shuffle_seed).permutation(n_classes * n)
    flat = images.reshape(-1, *images.shape[2:])
    image_data = np.empty_like(flat)
    image_data[perm] = flat
    class_dict = {name: perm[k * n : (k + 1) * n].tolist() for k, name in enumerate(names)}
    with open(path, "wb") as f:
        pickle.dump({"image_data": image_data, "class_dict": class_dict}, f)
    return path


def write_mini_csv(
    folder: Path, split: str, names: list[str], n_per_class: int, sizes: list[tuple[int, int]]
) -> Path:
    """``folder/<split>.csv`` and JPEGs in ``folder/images/``, sizes cycling through ``sizes``."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(split))
    lines = ["filename,label"]
    for name in names:
        for i in range(n_per_class):
            w, h = sizes[i % len(sizes)]
            file = f"{name}{i:08d}.jpg"
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(images / file)
            lines.append(f"{file},{name}")
    path = folder / f"{split}.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


OMNIGLOT_SETS = {"images_background": 964, "images_evaluation": 659}


def write_small_image_omniglot(root: Path, drawers: int = 2, size: int = 28, seed: int = 0) -> Path:
    """All 1,623 Omniglot characters in the npz form, with ``drawers`` tiny random ``size`` x
    ``size`` drawings each: real-format data the default split and ``load_dataset`` accept,
    small enough for end-to-end runs in tests (``root/omniglot/images_*.npz``)."""
    folder = root / "omniglot"
    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, chars) in enumerate(OMNIGLOT_SETS.items()):
        rng = np.random.default_rng(seed + i)
        ink = rng.random((chars, drawers, size, size)) < 0.15
        write_omniglot_npz(folder / f"{name}.npz", ink)
    return root
