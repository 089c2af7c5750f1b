"""Episodes a user brings, read from a folder: one sub-folder per episode.

Layout (names of episodes, labels and files are free; hidden entries are ignored)::

    DIR/
      <episode>/                 one folder per episode, scored in sorted name order
        support/<label>/<image>  the labelled examples the model adapts on (>= 1 per label)
        query/<label>/<image>    the images it predicts; their folder is the true label,
                                 which must be one of the episode's support labels

Every episode has as many support labels as the model has ways; the label names, sorted, are
the model's outputs 0..N-1 for that episode. Images are preprocessed exactly as the training
images (``preprocess.preprocess_image``). Errors name the folder or file and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from realdata.datasets.errors import DatasetError
from realdata.datasets.preprocess import preprocess_image

SUPPORT, QUERY = "support", "query"
LAYOUT = "<episode>/support/<label>/<image> and <episode>/query/<label>/<image>"


@dataclass(frozen=True)
class FolderEpisode:
    """One user episode: label names (index = class), support and query tensors, query files."""

    name: str
    labels: tuple[str, ...]
    support: tuple[torch.Tensor, torch.Tensor]
    query: tuple[torch.Tensor, torch.Tensor]
    query_files: tuple[str, ...]


def _entries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _labelled_images(folder: Path, what: str) -> dict[str, list[Path]]:
    """``folder/<label>/<image>`` -> label -> image files; DatasetError naming what is wrong."""
    if not folder.is_dir():
        raise DatasetError(f"{folder}: {what} folder not found; expected {LAYOUT}")
    out: dict[str, list[Path]] = {}
    for entry in _entries(folder):
        if not entry.is_dir():
            raise DatasetError(f"{entry}: expected a folder per label in {folder} ({LAYOUT})")
        files = _entries(entry)
        stray = [p for p in files if not p.is_file()]
        if stray:
            raise DatasetError(f"{stray[0]}: expected image files in {entry}, found a folder")
        if not files:
            raise DatasetError(f"{entry}: no images; expected at least one image for label {entry.name!r}")
        out[entry.name] = files
    if not out:
        raise DatasetError(f"{folder}: no label folders; expected {LAYOUT}")
    return out


def read_episode_folder(folder: Path, dataset: str, image_size: int, ways: int) -> FolderEpisode:
    """One episode folder, checked against the model (``ways`` labels) and preprocessed."""
    folder = Path(folder)
    extra = [p for p in _entries(folder) if p.name not in (SUPPORT, QUERY)]
    if extra:
        raise DatasetError(f"{extra[0]}: unexpected entry; an episode folder holds only support/ and query/")
    support = _labelled_images(folder / SUPPORT, SUPPORT)
    query = _labelled_images(folder / QUERY, QUERY)
    labels = tuple(sorted(support))
    if len(labels) != ways:
        raise DatasetError(
            f"{folder / SUPPORT}: {len(labels)} labels ({', '.join(labels)}); expected {ways}, "
            f"the number of ways of the checkpoint's model"
        )
    unknown = sorted(set(query) - set(labels))
    if unknown:
        raise DatasetError(
            f"{folder / QUERY / unknown[0]}: label {unknown[0]!r} has no support images; expected "
            f"query labels among the support labels {list(labels)}"
        )

    def tensors(by_label: dict[str, list[Path]]) -> tuple[tuple[torch.Tensor, torch.Tensor], list[Path]]:
        files = [f for label in labels for f in by_label.get(label, [])]
        y = torch.tensor([labels.index(f.parent.name) for f in files], dtype=torch.int64)
        x = torch.stack([preprocess_image(f, dataset, image_size) for f in files])
        return (x, y), files

    support_xy, _ = tensors(support)
    query_xy, query_files = tensors(query)
    rel = tuple(f.relative_to(folder).as_posix() for f in query_files)
    return FolderEpisode(folder.name, labels, support_xy, query_xy, rel)


def read_episode_folders(root: Path, dataset: str, image_size: int, ways: int) -> list[FolderEpisode]:
    """Every episode under ``root`` (sorted by name); DatasetError when there is none or one is bad."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(
            f"{root}: episodes folder not found; expected a folder of episode folders ({LAYOUT})"
        )
    entries = _entries(root)
    files = [p for p in entries if not p.is_dir()]
    if files:
        raise DatasetError(f"{files[0]}: expected only episode folders in {root} ({LAYOUT})")
    if not entries:
        raise DatasetError(f"{root}: no episode folders; expected at least one ({LAYOUT})")
    return [read_episode_folder(p, dataset, image_size, ways) for p in entries]
