"""The per-image preprocessing of training, as public functions for images a user brings.

Omniglot: the image is read as grayscale and thresholded (< 128 is ink: dark strokes on a light
background, as Lake's PNGs), the bool ink image is resized to S x S with PIL (LANCZOS by
default, MAML's ``proc_images.py``), giving uint8 with ink = 255 on a 0 background.
Mini-ImageNet: the image is read as RGB and resized to S x S with LANCZOS when it is not
already that size. Episodes divide by 255: float32 in [0, 1], channels first.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from realdata.datasets.errors import DatasetError

RESAMPLING = {"lanczos": Image.Resampling.LANCZOS, "box": Image.Resampling.BOX}
INK_THRESHOLD = 128
# Dataset name -> (channels, default image size) of the training images.
IMAGE_FORMATS = {"omniglot": (1, 28), "miniimagenet": (3, 84)}


def _open(data: bytes, name: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        return image
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"{name}: not a readable image ({exc})") from exc


def decode_ink(data: bytes, name: str = "image") -> np.ndarray:
    """bool (H, W), True where there is ink (grayscale value < 128); DatasetError naming ``name``."""
    with _open(data, name) as image:
        return np.asarray(image.convert("L")) < INK_THRESHOLD


def resize_ink_image(ink: np.ndarray, image_size: int, resample: str = "lanczos") -> np.ndarray:
    """bool ink (H, W) -> uint8 (S, S), ink = 255, resized with PIL ``resample``."""
    if resample not in RESAMPLING:
        raise DatasetError(f"resample: expected one of {', '.join(RESAMPLING)}, got {resample!r}")
    image = Image.fromarray(ink.astype(np.uint8) * 255)
    return np.asarray(image.resize((image_size, image_size), RESAMPLING[resample]))


def rgb_image(image: Image.Image, image_size: int) -> np.ndarray:
    """A PIL image -> uint8 (S, S, 3) RGB, resized with LANCZOS unless already S x S."""
    rgb = image.convert("RGB")
    if rgb.size != (image_size, image_size):
        rgb = rgb.resize((image_size, image_size), Image.Resampling.LANCZOS)
    return np.asarray(rgb)


def preprocess_image(
    source: Path | str | bytes, dataset: str, image_size: int | None = None, *, name: str | None = None
) -> torch.Tensor:
    """One image file (or its bytes) preprocessed as ``dataset``'s training images: float32
    (C, S, S) in [0, 1] (S: the dataset's size unless given). DatasetError naming the file."""
    if dataset not in IMAGE_FORMATS:
        raise DatasetError(f"dataset: expected one of {list(IMAGE_FORMATS)}, got {dataset!r}")
    size = IMAGE_FORMATS[dataset][1] if image_size is None else image_size
    if isinstance(source, bytes):
        data, label = source, name or "image"
    else:
        label = name or str(source)
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise DatasetError(f"{label}: cannot read ({exc.strerror or exc})") from exc
    if dataset == "omniglot":
        pixels = resize_ink_image(decode_ink(data, label), size)[None]
    else:
        with _open(data, label) as image:
            pixels = rgb_image(image, size).transpose(2, 0, 1)
    return torch.from_numpy(np.array(pixels, dtype=np.uint8)).float().div_(255.0)  # a writable copy
