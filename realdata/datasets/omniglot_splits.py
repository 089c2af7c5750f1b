"""The named Omniglot splits: which characters meta-train, meta-validate and meta-test.

A character id is ``"<set>/<NNNN>"``: Lake's set (``images_background``, 964 characters of 30
alphabets; ``images_evaluation``, 659 characters of 20 alphabets) and his 1-based character
number within the set. Lake numbers the characters alphabet by alphabet, so every alphabet is
one contiguous range of numbers (the small zips show it: Sanskrit is 0851-0892, Tagalog
0893-0909). The npz files carry no alphabet names, so the splits below are written as ranges
of these numbers; a cut between two ranges splits at most one alphabet.

- ``hash`` (the project's original split, the default; MAML's code construction): all 1623
  characters in a seeded pseudo-random order (sha256 of ``split_seed`` and the id), the first
  1100 meta-train, the next 100 meta-validation, the last 423 meta-test. Alphabets are mixed:
  about two thirds of the evaluation set's characters are meta-training characters.
- ``vinyals`` (Vinyals et al. 2016, the counts of the split files used by Prototypical
  Networks and Torchmeta: 1028 / 172 / 423 characters): meta-train = the whole background set
  and evaluation characters 0001-0064, meta-validation = evaluation 0065-0236, meta-test =
  evaluation 0237-0659. As in the original, every meta-test character comes from the
  evaluation set and 1200 characters (with rotations 4800 classes) are seen in training. The
  original's exact alphabet list needs alphabet names the npz files lack; this is the
  contiguous-range construction with the same counts.
- ``lake`` (Lake et al. 2015: background set for learning, evaluation set for testing):
  meta-train = background 0001-0850, meta-validation = background 0851-0964 (114 characters,
  starting at Sanskrit's first character; in the small zips every alphabet lies on one side of
  this cut), meta-test = the whole evaluation set (659 characters, 20 alphabets never seen).

Rotations (``OmniglotSettings.rotations``) turn each character into four classes inside its
own part, never across parts.
"""

from __future__ import annotations

from collections.abc import Sequence

from infra.seeding import derive_seed
from realdata.datasets.errors import DatasetError
from realdata.splits import DEFAULT_SPLITS, OMNIGLOT_SPLITS

HASH, VINYALS, LAKE = OMNIGLOT_SPLITS
DEFAULT_SPLIT = DEFAULT_SPLITS["omniglot"]
BACKGROUND, EVALUATION = "images_background", "images_evaluation"
SET_SIZES = {BACKGROUND: 964, EVALUATION: 659}
PARTS = ("train", "val", "test")

# Per named split and part: (set, first number, last number) ranges, inclusive.
RANGES: dict[str, dict[str, tuple[tuple[str, int, int], ...]]] = {
    VINYALS: {
        "train": ((BACKGROUND, 1, 964), (EVALUATION, 1, 64)),
        "val": ((EVALUATION, 65, 236),),
        "test": ((EVALUATION, 237, 659),),
    },
    LAKE: {
        "train": ((BACKGROUND, 1, 850),),
        "val": ((BACKGROUND, 851, 964),),
        "test": ((EVALUATION, 1, 659),),
    },
}


def require_split(name: str) -> str:
    """``name`` if it is a named Omniglot split, else DatasetError listing them."""
    if name not in OMNIGLOT_SPLITS:
        raise DatasetError(f"split: expected one of {list(OMNIGLOT_SPLITS)}, got {name!r}")
    return name


def character_of(class_id: str) -> str:
    """The character id of a class id (``images_background/0001/rot090`` -> ``.../0001``)."""
    head, _, tail = class_id.rpartition("/")
    return head if tail.startswith("rot") and head else class_id


def full_character_ids() -> list[str]:
    """Every character id of the full Omniglot, in global order (background first)."""
    return [f"{name}/{n:04d}" for name, size in SET_SIZES.items() for n in range(1, size + 1)]


def _set_and_number(char_id: str) -> tuple[str, int]:
    name, _, number = char_id.rpartition("/")
    if name not in SET_SIZES or not number.isdigit():
        raise DatasetError(
            f"character id {char_id!r}: expected '<images_background|images_evaluation>/<NNNN>' "
            "(the named splits are defined on Lake's character numbers)"
        )
    return name, int(number)


def hash_split_indices(
    char_ids: Sequence[str], train_chars: int, val_chars: int, split_seed: int | None
) -> dict[str, list[int]]:
    """The ``hash`` split: indices into ``char_ids`` of each part, each sorted.

    The order sorts by ``derive_seed(split_seed, "omniglot-split", id)`` (None: the given order);
    the first ``train_chars - val_chars`` meta-train, the next ``val_chars`` meta-validate.
    """
    order = list(range(len(char_ids)))
    if split_seed is not None:
        order.sort(key=lambda i: derive_seed(split_seed, "omniglot-split", char_ids[i]))
    fit = train_chars - val_chars
    return {
        "train": sorted(order[:fit]),
        "val": sorted(order[fit:train_chars]),
        "test": sorted(order[train_chars:]),
    }


def range_split_indices(char_ids: Sequence[str], split: str) -> dict[str, list[int]]:
    """The ``vinyals`` or ``lake`` split of the full Omniglot: indices of each part, sorted.

    DatasetError unless ``char_ids`` are exactly Lake's 964 background and 659 evaluation ids.
    """
    parsed = [_set_and_number(c) for c in char_ids]
    for name, size in SET_SIZES.items():
        numbers = sorted(n for s, n in parsed if s == name)
        if numbers != list(range(1, size + 1)):
            raise DatasetError(
                f"split {split!r}: defined on the full Omniglot (964 background + 659 evaluation "
                f"characters, numbered from 0001); found {len(numbers)} {name} characters"
            )
    parts: dict[str, list[int]] = {part: [] for part in PARTS}
    for index, (name, number) in enumerate(parsed):
        for part, ranges in RANGES[split].items():
            if any(s == name and lo <= number <= hi for s, lo, hi in ranges):
                parts[part].append(index)
    return parts
