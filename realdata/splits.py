"""The names of each dataset's splits, and the one a run uses unless it names another.

Kept free of heavy imports so presets and flags can be validated before torch loads. What each
Omniglot split contains: ``realdata/datasets/omniglot_splits.py`` and docs/datasets.md.
"""

from __future__ import annotations

OMNIGLOT_SPLITS = ("hash", "vinyals", "lake")
MINIIMAGENET_SPLITS = ("ravi",)  # Ravi & Larochelle's 64 / 16 / 20 classes, the only one
DATASET_SPLITS: dict[str, tuple[str, ...]] = {
    "omniglot": OMNIGLOT_SPLITS,
    "miniimagenet": MINIIMAGENET_SPLITS,
}
# The split of a run that names none, and of checkpoints written before splits were recorded
# (they were all trained on it).
DEFAULT_SPLITS: dict[str, str] = {"omniglot": "hash", "miniimagenet": "ravi"}
