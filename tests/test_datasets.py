"""Dataset readers, cache, episode sampler, fixed evaluation episodes and CIs (no network)."""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.config import ConfigError
from infra.errors import EXIT_USAGE
from infra.paths import RESULTS_ENV, results_root
from realdata.datasets import (
    ClassImages,
    DatasetError,
    EpisodeSampler,
    OmniglotSettings,
    download,
    fixed_test_episodes,
    load_miniimagenet,
    load_omniglot,
    locate,
    omniglot_class_images,
    read_miniimagenet_csv,
    read_miniimagenet_pickle,
    read_omniglot,
)
from realdata.datasets import cache as cache_mod
from realdata.datasets import omniglot as omniglot_mod
from realdata.datasets.omniglot import split_indices
from realdata.stats import accuracy_ci, aggregate_seeds
from tests.fixtures_datasets import (
    mini_images,
    random_ink,
    write_mini_csv,
    write_mini_pickle,
    write_omniglot_folder,
    write_omniglot_npz,
    zip_folder,
)

REAL = locate.find_data_root()
REAL_OMNIGLOT = None if REAL is None else REAL / "omniglot"
needs_real = pytest.mark.skipif(
    REAL_OMNIGLOT is None or not (REAL_OMNIGLOT / "images_background.npz").is_file(),
    reason=f"no Omniglot npz under the data root (${locate.DATA_ENV} or ../shared/data): "
    f"{locate.default_data_root()}",
)
SMALL = {"train_chars": 6, "val_chars": 2, "total_chars": 10}


# ----------------------------------------------------------------------------- data root


def test_repo_root_is_this_project(monkeypatch, tmp_path):
    root = locate.repo_root()
    assert (root / "pyproject.toml").is_file() and (root / "realdata" / "datasets").is_dir()
    monkeypatch.chdir(tmp_path)
    assert locate.repo_root() == root


def test_data_root_and_cache_dir_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(locate.DATA_ENV, str(tmp_path))
    assert locate.find_data_root() == tmp_path
    monkeypatch.setenv(locate.DATA_ENV, str(tmp_path / "absent"))
    assert locate.find_data_root() is None
    monkeypatch.setenv(locate.CACHE_ENV, str(tmp_path / "c"))
    assert locate.cache_dir() == tmp_path / "c"
    monkeypatch.delenv(locate.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert locate.cache_dir() == tmp_path / "xdg" / "sharpmaml"
    for unusable in ("", "relative/cache"):  # the XDG rule: only an absolute path counts
        monkeypatch.setenv("XDG_CACHE_HOME", unusable)
        assert locate.cache_dir() == Path.home() / ".cache" / "sharpmaml"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert not locate.cache_dir().is_relative_to(locate.repo_root())
    monkeypatch.delenv(locate.DATA_ENV)
    assert locate.default_data_root() == locate.repo_root().parent / "shared" / "data"


def test_the_results_store_is_a_per_user_folder_unless_the_environment_names_one(monkeypatch, tmp_path):
    monkeypatch.setenv(RESULTS_ENV, str(tmp_path / "r"))
    assert results_root() == tmp_path / "r"
    monkeypatch.delenv(RESULTS_ENV)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert results_root() == tmp_path / "xdg" / "sharpmaml"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/data")  # the XDG rule: only an absolute path counts
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert results_root() == tmp_path / "home" / ".local" / "share" / "sharpmaml"
    assert not results_root().is_relative_to(locate.repo_root())


def test_require_omniglot_root_says_where_to_put_the_data(monkeypatch, tmp_path):
    monkeypatch.setenv(locate.DATA_ENV, str(tmp_path))
    with pytest.raises(DatasetError) as err:
        locate.require_omniglot_root()
    msg = str(err.value)
    assert str(tmp_path / "omniglot") in msg and "SHARPMAML_DATA" in msg
    assert "images_background.npz" in msg and "images_evaluation.zip" in msg
    (tmp_path / "omniglot").mkdir()
    assert locate.require_omniglot_root() == tmp_path / "omniglot"
    with pytest.raises(DatasetError, match="miniimagenet"):
        locate.require_miniimagenet_root()


def test_a_given_data_root_is_the_one_the_error_names(tmp_path):
    given = tmp_path / "mine"
    with pytest.raises(DatasetError) as err:
        locate.require_omniglot_root(given)
    msg = str(err.value)
    assert f"in {given / 'omniglot'}/ (the data root you passed)" in msg
    assert "shared" not in msg and "SHARPMAML_DATA" not in msg


# ----------------------------------------------------------------------------- Omniglot readers


@pytest.fixture
def ink() -> np.ndarray:
    return random_ink(5, 4, seed=1)


def test_every_omniglot_format_reads_the_same_characters(tmp_path, ink):
    npz = read_omniglot(write_omniglot_npz(tmp_path / "images_background.npz", ink))
    folder = write_omniglot_folder(tmp_path / "images_background", ink)
    from_folder = read_omniglot(folder)
    zipped = read_omniglot(zip_folder(folder, tmp_path / "bg.zip", top="images_background_small1"))
    flat_zip = read_omniglot(zip_folder(folder, tmp_path / "flat.zip", top=None), "images_background")
    for chars in (npz, from_folder, zipped, flat_zip):
        assert chars.ink.dtype == np.bool_ and np.array_equal(chars.ink, ink)
    assert npz.char_ids == from_folder.char_ids == flat_zip.char_ids
    assert npz.char_ids[0] == "images_background/0001"
    assert zipped.char_ids[-1] == "bg/0005"


def test_character_order_follows_lake_ids_not_folder_names(tmp_path, ink):
    folder = write_omniglot_folder(tmp_path / "set", ink, first_id=40, per_alphabet=2)
    (folder / "Alphabet_0").rename(folder / "Zulu")  # sorts last by name, holds ids 40 and 41
    chars = read_omniglot(folder)
    assert chars.char_ids == tuple(f"set/{i:04d}" for i in range(40, 45))
    assert np.array_equal(chars.ink, ink)


@pytest.mark.parametrize("member", ["../evil.png", "/abs/evil.png", "a/../../evil.png", "C:/evil.png"])
def test_zip_with_unsafe_member_is_rejected(tmp_path, ink, member):
    path = zip_folder(write_omniglot_folder(tmp_path / "s", ink), tmp_path / "s.zip", top="s")
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(member, b"not a png")
    with pytest.raises(DatasetError, match="unsafe member"):
        read_omniglot(path)


def test_corrupt_zip_and_corrupt_member(tmp_path, ink):
    bad = tmp_path / "images_background.zip"
    bad.write_bytes(b"PK\x03\x04 truncated garbage")
    with pytest.raises(DatasetError, match="not a readable zip") as err:
        read_omniglot(bad)
    assert str(bad) in str(err.value)
    folder = write_omniglot_folder(tmp_path / "s", ink)
    (folder / "Alphabet_0" / "character01" / "0001_01.png").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="0001_01.png: not a readable image"):
        read_omniglot(folder)


@pytest.mark.parametrize(
    "arrays, expected",
    [
        ({"pictures": np.zeros((2, 2, 5, 5), bool)}, r"missing key\(s\) \['images', 'labels'\]"),
        (
            {"images": np.zeros((2, 2, 5, 5), np.uint8), "labels": np.zeros((2, 2), np.int64)},
            "expected bool",
        ),
        (
            {"images": np.zeros((2, 5, 5), bool), "labels": np.zeros((2, 2), np.int64)},
            "expected bool",
        ),
        (
            {"images": np.zeros((2, 2, 5, 5), bool), "labels": np.zeros((2, 3), np.int64)},
            r"shape \(2, 2\)",
        ),
        (
            {"images": np.zeros((2, 2, 5, 5), bool), "labels": np.zeros((2, 2), np.int64)},
            "row i must hold",
        ),
    ],
)
def test_corrupt_npz_names_file_and_expectation(tmp_path, arrays, expected):
    path = tmp_path / "images_background.npz"
    np.savez(path, **arrays)
    with pytest.raises(DatasetError, match=expected) as err:
        read_omniglot(path)
    assert str(path) in str(err.value)


def test_npz_that_is_not_an_npz(tmp_path):
    path = tmp_path / "images_evaluation.npz"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(DatasetError, match="not a readable npz.*expected keys 'images'"):
        read_omniglot(path)


def test_folder_layout_errors(tmp_path, ink):
    folder = write_omniglot_folder(tmp_path / "a", ink)
    (folder / "Alphabet_0" / "character01" / "0001_03.png").unlink()
    with pytest.raises(DatasetError, match=r"character01 has drawers \[1, 2, 4\]; expected"):
        read_omniglot(folder)
    folder = write_omniglot_folder(tmp_path / "b", ink)
    Image.new("1", (50, 50), 1).save(folder / "Alphabet_1" / "character01" / "0004_02.png")
    with pytest.raises(DatasetError, match="0004_02.png is 50x50; expected 105x105"):
        read_omniglot(folder)
    folder = write_omniglot_folder(tmp_path / "c", ink)
    Image.new("1", (105, 105), 1).save(folder / "Alphabet_0" / "character01" / "drawing.png")
    with pytest.raises(DatasetError, match="unexpected file .*drawing.png; expected <Alphabet>"):
        read_omniglot(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no Omniglot PNGs found"):
        read_omniglot(tmp_path / "empty")
    with pytest.raises(DatasetError, match="not found"):
        read_omniglot(tmp_path / "nothing.npz")


@pytest.mark.skipif(
    REAL_OMNIGLOT is None or not (REAL_OMNIGLOT / "images_background_small1.zip").is_file(),
    reason="the real small Omniglot zips are not under the data root",
)
def test_real_small_zips_match_the_npz():
    small1 = read_omniglot(REAL_OMNIGLOT / "images_background_small1.zip")
    assert small1.ink.shape == (136, 20, 105, 105)
    assert small1.char_ids[0] == "images_background_small1/0108"
    small2 = read_omniglot(REAL_OMNIGLOT / "images_background_small2.zip")
    assert small2.ink.shape == (156, 20, 105, 105)
    with np.load(REAL_OMNIGLOT / "images_background.npz") as data:
        row = ~data["images"][107]  # Lake's character 0108 (Balinese/character01)
    assert np.array_equal(small1.ink[0], row)
    classes = omniglot_class_images(small1, rotations=False)
    assert classes.images.shape == (136, 20, 1, 28, 28)


# ---------------------------------------------------------------- Omniglot loading and cache


def make_omniglot_folder(root: Path, as_zip: bool = False) -> Path:
    """6 background characters (npz) and 4 evaluation characters (folder or zip), 4 drawers."""
    root.mkdir(parents=True, exist_ok=True)
    write_omniglot_npz(root / "images_background.npz", random_ink(6, 4, seed=2))
    folder = write_omniglot_folder(root / "images_evaluation", random_ink(4, 4, seed=3))
    if as_zip:
        zip_folder(folder, root / "images_evaluation.zip", top="images_evaluation")
        for p in sorted(folder.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        folder.rmdir()
    return root


@pytest.mark.parametrize("as_zip", [False, True])
def test_load_omniglot_splits_and_rotations(tmp_path, as_zip):
    root = make_omniglot_folder(tmp_path / "omniglot", as_zip)
    splits = load_omniglot(root, OmniglotSettings(**SMALL), cache_folder=tmp_path / "cache")
    assert [splits.split(s).num_classes for s in ("train", "val", "test")] == [16, 8, 16]
    assert splits.train.images.shape[1:] == (4, 1, 28, 28) and splits.train.images.dtype == torch.uint8
    ids = [c.rsplit("/", 1)[0] for s in ("train", "val", "test") for c in splits.split(s).class_ids]
    assert len(set(ids)) == 10 and any(i.startswith("images_evaluation/") for i in ids)
    assert splits.train.class_ids[1].endswith("/rot090")
    x = splits.train.images
    for k in range(4):
        assert torch.equal(x[k], torch.rot90(x[0], k, dims=(-2, -1)))
    plain = load_omniglot(root, OmniglotSettings(**SMALL, rotations=False), use_cache=False)
    assert [plain.split(s).num_classes for s in ("train", "val", "test")] == [4, 2, 4]
    assert plain.cache_path is None and not plain.from_cache
    assert torch.equal(plain.train.images, x[::4])


def test_split_is_deterministic_and_seeded():
    ids = [f"images_background/{i:04d}" for i in range(1, 31)]
    s = OmniglotSettings(train_chars=20, val_chars=5, total_chars=30)
    a, b = split_indices(ids, s), split_indices(list(ids), s)
    assert a == b and sorted(a["train"] + a["val"] + a["test"]) == list(range(30))
    assert [len(a[k]) for k in ("train", "val", "test")] == [15, 5, 10]
    other = split_indices(ids, OmniglotSettings(train_chars=20, val_chars=5, total_chars=30, split_seed=2))
    assert other != a
    ordered = split_indices(
        ids, OmniglotSettings(train_chars=20, val_chars=5, total_chars=30, split_seed=None)
    )
    assert ordered == {
        "train": list(range(15)),
        "val": list(range(15, 20)),
        "test": list(range(20, 30)),
    }


def test_second_load_hits_the_cache_and_never_reads_the_sources(tmp_path, monkeypatch):
    root = make_omniglot_folder(tmp_path / "omniglot")
    cache = tmp_path / "cache"
    first = load_omniglot(root, OmniglotSettings(**SMALL), cache_folder=cache)
    assert not first.from_cache and first.cache_path.is_file()
    assert [p.name for p in cache.iterdir()] == [first.cache_path.name]  # no temp file left

    def no_reading(*args, **kwargs):
        raise AssertionError("sources read although the cache is valid")

    monkeypatch.setattr(omniglot_mod, "read_omniglot", no_reading)
    second = load_omniglot(root, OmniglotSettings(**SMALL), cache_folder=cache)
    assert second.from_cache and second.cache_path == first.cache_path
    for s in ("train", "val", "test"):
        assert torch.equal(first.split(s).images, second.split(s).images)
        assert first.split(s).class_ids == second.split(s).class_ids


def test_cache_key_changes_with_settings_and_sources(tmp_path):
    root = make_omniglot_folder(tmp_path / "omniglot")
    cache = tmp_path / "cache"
    base = load_omniglot(root, OmniglotSettings(**SMALL), cache_folder=cache)
    paths = {base.cache_path}
    for change in (
        {"image_size": 14},
        {"rotations": False},
        {"resample": "box"},
        {"split_seed": 7},
    ):
        other = load_omniglot(root, OmniglotSettings(**{**SMALL, **change}), cache_folder=cache)
        assert not other.from_cache
        paths.add(other.cache_path)
    assert len(paths) == 5
    assert load_omniglot(
        root, OmniglotSettings(**SMALL, image_size=14), cache_folder=cache
    ).train.image_shape == (1, 14, 14)
    write_omniglot_npz(root / "images_background.npz", random_ink(6, 4, seed=99))
    changed = load_omniglot(root, OmniglotSettings(**SMALL), cache_folder=cache)
    assert not changed.from_cache and changed.cache_path != base.cache_path


def test_failed_cache_write_leaves_nothing_and_corrupt_cache_is_rebuilt(tmp_path, monkeypatch):
    root = make_omniglot_folder(tmp_path / "omniglot")
    cache = tmp_path / "cache"

    def broken_savez(*args, **kwargs):
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(cache_mod.np, "savez", broken_savez)
        with pytest.raises(OSError, match="disk full"):
            load_omniglot(root, OmniglotSettings(**SMALL), cache_folder=cache)
    assert list(cache.iterdir()) == []
    first = load_omniglot(root, OmniglotSettings(**SMALL), cache_folder=cache)
    first.cache_path.write_bytes(b"truncated")
    rebuilt = load_omniglot(root, OmniglotSettings(**SMALL), cache_folder=cache)
    assert not rebuilt.from_cache and torch.equal(rebuilt.test.images, first.test.images)
    assert load_omniglot(root, OmniglotSettings(**SMALL), cache_folder=cache).from_cache


def test_load_omniglot_errors(tmp_path):
    root = tmp_path / "omniglot"
    root.mkdir()
    write_omniglot_npz(root / "images_background.npz", random_ink(6, 4))
    with pytest.raises(DatasetError) as err:
        load_omniglot(root, OmniglotSettings(**SMALL), cache_folder=tmp_path)
    msg = str(err.value)
    assert "images_evaluation" in msg and "images_evaluation.npz" in msg and "images_evaluation.zip" in msg
    write_omniglot_npz(root / "images_evaluation.npz", random_ink(4, 4))
    with pytest.raises(DatasetError, match="found 10 characters .* expected 1623"):
        load_omniglot(root, cache_folder=tmp_path)
    with pytest.raises(DatasetError, match="resample"):
        OmniglotSettings(resample="nearest")
    with pytest.raises(DatasetError, match="val_chars"):
        OmniglotSettings(train_chars=10, val_chars=10)


# ----------------------------------------------------------------------------- real Omniglot


@pytest.fixture(scope="module")
def real_splits(tmp_path_factory):
    cache = tmp_path_factory.mktemp("omniglot-cache")
    first = load_omniglot(REAL_OMNIGLOT, cache_folder=cache)
    second = load_omniglot(REAL_OMNIGLOT, cache_folder=cache)
    assert not first.from_cache and second.from_cache
    return second


@pytest.mark.data
@needs_real
def test_real_omniglot_protocol(real_splits):
    counts = [real_splits.split(s).num_classes for s in ("train", "val", "test")]
    assert counts == [1100 * 4, 100 * 4, 423 * 4]
    chars = {
        s: {c.rsplit("/", 1)[0] for c in real_splits.split(s).class_ids} for s in ("train", "val", "test")
    }
    assert [len(chars[s]) for s in ("train", "val", "test")] == [1100, 100, 423]
    assert len(chars["train"] | chars["val"] | chars["test"]) == 1623
    for s in ("train", "val", "test"):
        split = real_splits.split(s)
        assert split.images.shape[1:] == (20, 1, 28, 28) and split.images.dtype == torch.uint8
        assert split.images.min() == 0 and split.images.max() == 255
        suffixes = [c.rsplit("/", 1)[1] for c in split.class_ids[:8]]
        assert suffixes == ["rot000", "rot090", "rot180", "rot270"] * 2


@pytest.mark.data
@needs_real
def test_real_omniglot_ink_fraction_survives_resizing(real_splits):
    with np.load(REAL_OMNIGLOT / "images_background.npz") as data:
        raw = ~data["images"][0]  # Lake's images_background/0001, drawer 01..20
    split = next(
        s
        for s in ("train", "val", "test")
        if "images_background/0001/rot000" in real_splits.split(s).class_ids
    )
    classes = real_splits.split(split)
    small = classes.images[classes.class_ids.index("images_background/0001/rot000"), :, 0].float() / 255
    assert 0.02 < raw.mean() < 0.3
    assert abs(small.mean().item() - raw.mean()) < 0.02
    assert small[:, [0, -1]].max() < 0.5  # ink is 1 on a 0 background, which fills the border


# ----------------------------------------------------------------------------- Mini-ImageNet


MINI_NAMES = {"train": ["n01", "n02", "n03"], "val": ["n04", "n05"], "test": ["n06", "n07"]}


def make_mini_pickles(folder: Path, size: int = 84) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for k, (split, names) in enumerate(MINI_NAMES.items()):
        out[split] = mini_images(len(names), 6, size, seed=k)
        write_mini_pickle(folder / f"mini-imagenet-cache-{split}.pkl", out[split], list(reversed(names)))
    return out


def test_mini_pickle_requires_allow_pickle_and_reads(tmp_path):
    images = make_mini_pickles(tmp_path)
    path = tmp_path / "mini-imagenet-cache-train.pkl"
    with pytest.raises(DatasetError) as err:
        read_miniimagenet_pickle(path)
    assert (
        "allow_pickle=True" in str(err.value)
        and "arbitrary code" in str(err.value)
        and str(path) in str(err.value)
    )
    with pytest.raises(DatasetError, match="allow_pickle"):
        load_miniimagenet(tmp_path)
    classes = read_miniimagenet_pickle(path, allow_pickle=True)
    assert classes.class_ids == ("n01", "n02", "n03")  # sorted; the file lists them reversed
    assert classes.images.shape == (3, 6, 3, 84, 84)
    expected = torch.from_numpy(images["train"][::-1].copy()).permute(0, 1, 4, 2, 3)
    assert torch.equal(classes.images, expected)
    splits = load_miniimagenet(tmp_path, allow_pickle=True)
    assert [splits.split(s).num_classes for s in ("train", "val", "test")] == [3, 2, 2]
    assert not splits.from_cache


def test_locating_a_dataset_checks_its_file_names_and_reads_nothing(tmp_path):
    from realdata.data import locate_dataset

    mini = tmp_path / "miniimagenet"
    mini.mkdir()
    for split in ("train", "val"):
        (mini / f"mini-imagenet-cache-{split}.pkl").write_bytes(b"")  # placeholders: never unpickled
    with pytest.raises(
        DatasetError, match=r"no complete Mini-ImageNet found \(present: \['mini-imagenet-cache-"
    ):
        locate_dataset("miniimagenet", tmp_path)
    (mini / "mini-imagenet-cache-test.pkl").write_bytes(b"")
    assert locate_dataset("miniimagenet", tmp_path) == mini
    with pytest.raises(DatasetError, match=f"{tmp_path / 'omniglot'}: Omniglot folder not found"):
        locate_dataset("omniglot", tmp_path)


def test_mini_pickle_other_sizes_are_resized(tmp_path):
    make_mini_pickles(tmp_path, size=40)
    classes = read_miniimagenet_pickle(tmp_path / "mini-imagenet-cache-val.pkl", allow_pickle=True)
    assert classes.images.shape == (2, 6, 3, 84, 84)


@pytest.mark.parametrize(
    "payload, expected",
    [
        ({"images": np.zeros((2, 84, 84, 3), np.uint8)}, "expected a dict with 'image_data'"),
        (
            {"image_data": np.zeros((2, 84, 84, 3), np.float32), "class_dict": {"a": [0, 1]}},
            r"expected uint8 \(N, 84, 84, 3\)",
        ),
        (
            {"image_data": np.zeros((2, 84, 84), np.uint8), "class_dict": {"a": [0, 1]}},
            r"expected uint8 \(N, 84, 84, 3\)",
        ),
        (
            {
                "image_data": np.zeros((3, 84, 84, 3), np.uint8),
                "class_dict": {"a": [0, 1], "b": [2]},
            },
            "inconsistent image counts.*b: 1",
        ),
        (
            {"image_data": np.zeros((2, 84, 84, 3), np.uint8), "class_dict": {"a": [0, 5]}},
            r"expected 0\.\.1",
        ),
        ([1, 2, 3], "found list; expected a dict"),
    ],
)
def test_mini_pickle_errors(tmp_path, payload, expected):
    path = tmp_path / "mini-imagenet-cache-train.pkl"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(DatasetError, match=expected) as err:
        read_miniimagenet_pickle(path, allow_pickle=True)
    assert str(path) in str(err.value)


def make_mini_csv(folder: Path) -> None:
    for split, names in MINI_NAMES.items():
        write_mini_csv(folder, split, names, 4, sizes=[(84, 84), (100, 60), (50, 90)])


def test_mini_csv_reads_resizes_and_caches(tmp_path, monkeypatch):
    make_mini_csv(tmp_path / "mini")
    cache = tmp_path / "cache"
    splits = load_miniimagenet(tmp_path / "mini", cache_folder=cache)
    assert not splits.from_cache and splits.cache_path.is_file()
    assert splits.train.images.shape == (3, 4, 3, 84, 84) and splits.train.class_ids == (
        "n01",
        "n02",
        "n03",
    )
    with Image.open(tmp_path / "mini" / "images" / "n0200000000.jpg") as im:  # 84x84: not resized
        assert torch.equal(
            splits.train.images[1, 0],
            torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1),
        )
    with Image.open(tmp_path / "mini" / "images" / "n0200000001.jpg") as im:  # 100x60: resized
        ref = np.array(im.convert("RGB").resize((84, 84), Image.Resampling.LANCZOS))
        assert torch.equal(splits.train.images[1, 1], torch.from_numpy(ref).permute(2, 0, 1))
    monkeypatch.setattr("realdata.datasets.miniimagenet.read_miniimagenet_csv", lambda *a, **k: 1 / 0)
    again = load_miniimagenet(tmp_path / "mini", cache_folder=cache)
    assert again.from_cache and torch.equal(again.test.images, splits.test.images)


def test_mini_csv_errors(tmp_path):
    folder = tmp_path / "mini"
    make_mini_csv(folder)
    csv_path = folder / "val.csv"
    csv_path.write_text("file,class\na.jpg,n04\n")
    with pytest.raises(
        DatasetError,
        match=r"val.csv: columns \['file', 'class'\]; expected a header with filename,label",
    ):
        read_miniimagenet_csv(csv_path, folder / "images")
    csv_path.write_text("filename,label\nn0400000000.jpg,n04\nn0400000001.jpg,n04\nn0500000000.jpg,n05\n")
    with pytest.raises(
        DatasetError,
        match="val.csv: inconsistent image counts per class; expected 2 for every class, got n05: 1",
    ):
        read_miniimagenet_csv(csv_path, folder / "images")
    csv_path.write_text("filename,label\nn0400000000.jpg,n04\nmissing.jpg,n05\n")
    with pytest.raises(DatasetError, match=r"1 image\(s\) listed in val.csv are missing, e.g. missing.jpg"):
        read_miniimagenet_csv(csv_path, folder / "images")
    csv_path.write_text("filename,label\n../secret.jpg,n04\n")
    with pytest.raises(DatasetError, match="line 2: filename '../secret.jpg' must be a plain name"):
        read_miniimagenet_csv(csv_path, folder / "images")
    csv_path.write_text("filename,label\nn0100000000.jpg,n01\n")
    with pytest.raises(DatasetError, match="class n01 is in both train and val"):
        load_miniimagenet(folder, use_cache=False)
    (folder / "images" / "broken.jpg").write_bytes(b"no jpeg")
    csv_path.write_text("filename,label\nbroken.jpg,n04\n")
    with pytest.raises(DatasetError, match="broken.jpg: not a readable image"):
        read_miniimagenet_csv(csv_path, folder / "images")
    csv_path.unlink()
    with pytest.raises(DatasetError) as err:
        load_miniimagenet(folder)
    assert "no complete Mini-ImageNet" in str(err.value) and "train.csv" in str(err.value)
    assert "mini-imagenet-cache-train.pkl" in str(err.value)


# ----------------------------------------------------------------------------- episodes


def coded_classes(n_classes: int = 12, per_class: int = 10) -> ClassImages:
    """Each 1x1x2 image stores (class, example) in its two pixels."""
    c = torch.arange(n_classes)[:, None].expand(n_classes, per_class)
    e = torch.arange(per_class)[None, :].expand(n_classes, per_class)
    images = torch.stack([c, e], -1).to(torch.uint8).reshape(n_classes, per_class, 1, 1, 2)
    return ClassImages(images, tuple(f"c{i}" for i in range(n_classes)))


def decode(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round().long().reshape(*x.shape[:-3], 2)


def test_sampler_shapes_labels_and_no_reuse():
    sampler = EpisodeSampler(coded_classes().to("cpu"), ways=5, shots=2, queries=3, seed=0)
    batch = sampler.sample_batch(7)
    (xs, ys), (xq, yq) = batch.support, batch.query
    assert xs.shape == (7, 10, 1, 1, 2) and xq.shape == (7, 15, 1, 1, 2)
    assert xs.dtype == torch.float32 and ys.dtype == torch.int64 and xs.min() >= 0 and xs.max() <= 1
    assert torch.equal(ys[0], torch.arange(5).repeat_interleave(2))
    assert torch.equal(yq[3], torch.arange(5).repeat_interleave(3))
    for t in range(7):
        pairs = torch.cat([decode(xs[t]), decode(xq[t])])
        labels = torch.cat([ys[t], yq[t]])
        assert len({tuple(p.tolist()) for p in pairs}) == 25  # no image used twice
        cls_of_label = {}
        for (c, _), y in zip(pairs.tolist(), labels.tolist(), strict=True):
            assert cls_of_label.setdefault(y, c) == c  # one class per label
        assert len(set(cls_of_label.values())) == 5
    assert sampler.next_index == 7 and batch.num_tasks == 7


def test_sampler_is_deterministic_per_seed_and_index():
    data = coded_classes()
    a = EpisodeSampler(data, 5, 1, 4, seed=3)
    b = EpisodeSampler(data, 5, 1, 4, seed=3)
    batches_a = [a.sample_batch(4), a.sample_batch(2)]
    batch_b = b.sample_batch(6)
    assert torch.equal(torch.cat([x.support[0] for x in batches_a]), batch_b.support[0])
    assert torch.equal(torch.cat([x.query[0] for x in batches_a]), batch_b.query[0])
    ep = b.episode(4)
    assert torch.equal(ep.support[0], batch_b.support[0][4]) and torch.equal(ep.query[1], batch_b.query[1][4])
    c = EpisodeSampler(data, 5, 1, 4, seed=4).sample_batch(6)
    assert not torch.equal(c.support[0], batch_b.support[0])
    resumed = EpisodeSampler(data, 5, 1, 4, seed=3, start=4).sample_batch(2)
    assert torch.equal(resumed.query[0], batch_b.query[0][4:])
    labels_seen = {tuple(decode(a.episode(i).support[0])[:, 0].tolist()) for i in range(30)}
    assert len(labels_seen) > 20  # class -> label order varies


def test_sampler_validates_before_compute():
    data = coded_classes(6, 5)
    with pytest.raises(DatasetError, match="7-way episodes need 7 classes; this split has only 6"):
        EpisodeSampler(data, 7, 1, 1, seed=0)
    with pytest.raises(
        DatasetError,
        match=r"shots \+ queries: 2 \+ 4 distinct images per class needed; this split has only 5",
    ):
        EpisodeSampler(data, 5, 2, 4, seed=0)
    with pytest.raises(ConfigError, match="shots: expected an integer >= 1, got 0"):
        EpisodeSampler(data, 5, 0, 4, seed=0)
    with pytest.raises(ConfigError, match="num_tasks: expected an integer >= 1, got 0"):
        EpisodeSampler(data, 5, 1, 1, seed=0).sample_batch(0)


def test_fixed_test_episodes_are_stable_and_prefix_consistent():
    data = coded_classes()
    one = fixed_test_episodes(data, 5, 1, 3, n_episodes=600)
    two = fixed_test_episodes(data, 5, 1, 3, n_episodes=600)
    assert len(one) == 600 and one.fingerprint() == two.fingerprint()
    assert torch.equal(one.classes, two.classes) and torch.equal(one.examples, two.examples)
    few = fixed_test_episodes(data, 5, 1, 3, n_episodes=10, allow_small=True)
    assert torch.equal(few.examples, one.examples[:10]) and few.fingerprint() != one.fingerprint()
    batches = list(one.batches(256))
    assert [b.num_tasks for b in batches] == [256, 256, 88]
    whole = torch.cat([b.query[0] for b in batches])
    sampler = EpisodeSampler(data, 5, 1, 3, seed=fixed_test_episodes.__defaults__[1], stream="test")
    assert torch.equal(whole[:5], sampler.sample_batch(5).query[0])
    assert fixed_test_episodes(data, 5, 1, 3, 600, seed=1).fingerprint() != one.fingerprint()
    with pytest.raises(DatasetError, match="at least 600 evaluation episodes .* got 599"):
        fixed_test_episodes(data, 5, 1, 3, n_episodes=599)
    with pytest.raises(DatasetError, match="ways"):
        fixed_test_episodes(data, 13, 1, 3)


def test_accuracy_ci_matches_a_hand_computation():
    acc = [0.5, 0.7, 0.9, 0.6]
    # mean 0.675; squared deviations .030625 + .000625 + .050625 + .005625 = .0875;
    # std (ddof=1) = sqrt(.0875 / 3) = 0.1707825; half-width = 1.96 * 0.1707825 / 2
    mean, ci95, n = accuracy_ci(acc)
    assert n == 4 and mean == pytest.approx(0.675) and ci95 == pytest.approx(0.16736684, rel=1e-6)
    assert accuracy_ci(torch.tensor(acc, dtype=torch.float64)) == accuracy_ci(np.array(acc))
    with pytest.raises(DatasetError, match="at least 2"):
        accuracy_ci([0.5])
    summary = aggregate_seeds([[0.5, 0.7], [0.6, 0.8], [0.7, 0.9]])
    assert summary.n_seeds == 3 and summary.mean == pytest.approx(0.7)
    assert summary.std == pytest.approx(0.1)  # seed means 0.6, 0.7, 0.8
    assert summary.per_seed[1].mean == pytest.approx(0.7)
    assert math.isnan(aggregate_seeds([[0.5, 0.7]]).std)


def test_episodes_on_real_sized_omniglot_layout(tmp_path):
    root = make_omniglot_folder(tmp_path / "omniglot")
    splits = load_omniglot(root, OmniglotSettings(**SMALL), use_cache=False)
    batch = EpisodeSampler(splits.train, 5, 1, 3, seed=0).sample_batch(2)
    assert batch.support[0].shape == (2, 5, 1, 28, 28) and batch.query[0].shape == (
        2,
        15,
        1,
        28,
        28,
    )


# ---------------------------------------------------------------- download (no network)


def test_download_verifies_sha256_of_a_local_file(tmp_path, monkeypatch):
    src = tmp_path / "src" / "sample.zip"
    src.parent.mkdir()
    src.write_bytes(b"omniglot bytes")
    digest = hashlib.sha256(b"omniglot bytes").hexdigest()
    dest = download.download_file(src.as_uri(), tmp_path / "data" / "sample.zip", sha256=digest)
    assert dest.read_bytes() == b"omniglot bytes"
    with pytest.raises(DatasetError, match="sha256 .*; expected 0000"):
        download.download_file(src.as_uri(), tmp_path / "bad" / "sample.zip", sha256="0" * 64)
    assert list((tmp_path / "bad").iterdir()) == []  # nothing kept, no partial file

    def no_network(url):
        raise AssertionError("fetched without a digest to check")

    with pytest.raises(DatasetError, match=r"no sha256 is known .* `sha256` \(images_background.zip=<hex>\)"):
        download.download_file(
            "https://example.invalid/images_background.zip",
            tmp_path / "x" / "images_background.zip",
            opener=no_network,
        )
    with pytest.raises(DatasetError, match="md5 .*; expected the published 68d2efa1"):
        download.download_file(src.as_uri(), tmp_path / "m" / "images_background.zip", sha256=digest)
    monkeypatch.setattr(
        download,
        "KNOWN_DIGESTS",
        {
            "images_background.zip": download.KnownDigest(digest, None),
            "images_evaluation.zip": download.KnownDigest(digest, None),
        },
    )
    (tmp_path / "src" / "images_background.zip").write_bytes(b"omniglot bytes")
    (tmp_path / "src" / "images_evaluation.zip").write_bytes(b"omniglot bytes")
    folder = download.download_omniglot(tmp_path / "root", base_url=(tmp_path / "src").as_uri() + "/")
    assert sorted(p.name for p in folder.iterdir()) == [
        "images_background.zip",
        "images_evaluation.zip",
    ]
    with pytest.raises(DatasetError, match="download failed"):
        download.download_file((tmp_path / "nope.zip").as_uri(), tmp_path / "y" / "images_background.zip")


def test_ensure_omniglot_and_cli_without_network(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(locate.DATA_ENV, str(tmp_path))
    with pytest.raises(DatasetError, match="Omniglot folder not found"):
        download.ensure_omniglot()
    make_omniglot_folder(tmp_path / "omniglot")
    assert download.ensure_omniglot() == tmp_path / "omniglot"
    assert download.main(["--sha256", "images_background.zip=abc"]) == EXIT_USAGE
    assert "expected NAME=HEX" in capsys.readouterr().err
    os.remove(tmp_path / "omniglot" / "images_background.npz")
    assert download.main(["--data-root", str(tmp_path), "--base-url", "file:///nonexistent/"]) == EXIT_USAGE
    assert "no sha256 is known" in capsys.readouterr().err
