"""The named Omniglot splits (hash, vinyals, lake): their characters on a generated full-sized
Omniglot and on the real files, the split recorded with a run, and the contamination check."""

from __future__ import annotations

import shlex
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from infra.cli import build_parser, main
from infra.errors import EXIT_USAGE
from infra.store import read_table
from realdata.commands import _continue_command, _train_config
from realdata.datasets import DatasetError, OmniglotSettings, load_omniglot, locate, read_omniglot
from realdata.datasets.omniglot import split_characters, split_indices, split_overlap
from realdata.datasets.omniglot_splits import character_of, full_character_ids
from realdata.episodes_from import predictions_path
from realdata.presets import PRESETS, TrainConfig, train_config
from tests.fixtures_datasets import random_ink, write_omniglot_npz, write_small_image_omniglot
from tests.test_episodes_from import write_episodes

REAL = locate.find_data_root()
REAL_OMNIGLOT = None if REAL is None else REAL / "omniglot"
needs_real = pytest.mark.skipif(
    REAL_OMNIGLOT is None or not (REAL_OMNIGLOT / "images_evaluation.npz").is_file(),
    reason=f"no Omniglot npz under the data root: {locate.default_data_root()}",
)
COUNTS = {"hash": (1100, 100, 423), "vinyals": (1028, 172, 423), "lake": (850, 114, 659)}


def characters(splits, part: str) -> set[str]:
    return {character_of(c) for c in splits.split(part).class_ids}


@pytest.fixture(scope="module")
def full_root(tmp_path_factory):
    return write_small_image_omniglot(tmp_path_factory.mktemp("data"), drawers=3, size=12) / "omniglot"


@pytest.mark.parametrize("split", ["hash", "vinyals", "lake"])
def test_named_split_parts_on_a_generated_full_omniglot(full_root, split, tmp_path):
    splits = load_omniglot(full_root, OmniglotSettings(split=split), cache_folder=tmp_path)
    chars = {part: characters(splits, part) for part in ("train", "val", "test")}
    assert tuple(len(chars[p]) for p in ("train", "val", "test")) == COUNTS[split]
    assert not (
        chars["train"] & chars["val"] or chars["train"] & chars["test"] or chars["val"] & chars["test"]
    )
    assert [splits.split(p).num_classes for p in ("train", "val", "test")] == [4 * n for n in COUNTS[split]]
    assert chars == split_characters(split)  # the ids-only view used before any data is read
    sets = {p: {c.split("/")[0] for c in chars[p]} for p in chars}
    if split == "lake":
        assert sets == {
            "train": {"images_background"},
            "val": {"images_background"},
            "test": {"images_evaluation"},
        }
        assert min(chars["val"]) == "images_background/0851"
    if split == "vinyals":
        assert sets["test"] == sets["val"] == {"images_evaluation"}
        assert {c for c in chars["train"] if c.startswith("images_evaluation")} == {
            f"images_evaluation/{n:04d}" for n in range(1, 65)
        }


def test_named_splits_need_the_full_omniglot(tmp_path):
    write_omniglot_npz(tmp_path / "images_background.npz", random_ink(6, 3, 12))
    write_omniglot_npz(tmp_path / "images_evaluation.npz", random_ink(4, 3, 12, seed=1))
    with pytest.raises(
        DatasetError, match="split 'lake': defined on the full Omniglot.*found 6 images_background"
    ):
        load_omniglot(tmp_path, OmniglotSettings(split="lake", total_chars=None), use_cache=False)
    with pytest.raises(DatasetError, match=r"split: expected one of \['hash', 'vinyals', 'lake'\]"):
        OmniglotSettings(split="random")


def test_overlap_between_splits_is_counted_from_the_ids():
    expected = {
        ("hash", "lake"): (470, 659),  # 439 evaluation characters meta-train, 31 meta-validate
        ("hash", "vinyals"): (293, 423),
        ("vinyals", "lake"): (236, 659),
        ("lake", "hash"): (234, 423),
        ("lake", "vinyals"): (0, 423),
    }
    for (trained, evaluated), (n, n_test) in expected.items():
        overlap, total = split_overlap(trained, evaluated)
        assert (len(overlap), total) == (n, n_test)
    for split in COUNTS:
        assert not split_overlap(split, split)[0]
    hash_train = split_characters("hash")["train"]
    assert sum(c.startswith("images_evaluation") for c in hash_train) == 439  # the count


def test_split_is_part_of_the_run_config_and_old_configs_read_as_hash():
    lake = train_config("ci", "maml", overrides={"split": "lake"})
    assert lake.preset.split == "lake" and lake.folder_name == "ci+split=lake-maml-lo0-up0-s0"
    assert lake.run_name == "ci-maml-lo0-up0-s0"  # a sweep's run id: its spec holds the changes
    longer = train_config("ci", "maml", iterations=7, overrides={"split": "lake"})
    assert longer.folder_name == lake.folder_name  # a larger budget resumes in the same folder
    assert lake.hash() != train_config("ci", "maml").hash()
    stored = train_config("ci", "maml").to_dict()
    assert stored["preset"]["split"] == "hash"
    del stored["preset"]["split"]  # a checkpoint written before splits were recorded
    old = TrainConfig.from_dict(stored)
    assert old.preset.split == "hash" and old.hash() == train_config("ci", "maml").hash()
    assert PRESETS["mini-5w1s"].split == "ravi"


def test_the_resume_command_repeats_the_preset_changes():
    config = train_config("ci", "maml", iterations=9, overrides={"split": "lake", "ways": 20, "alpha": 0.1})
    command = _continue_command(config, Path("run"))
    assert command.endswith("--resume --set alpha=0.1 --set split=lake --set ways=20")
    argv = shlex.split(command)[1:]  # without "sharpmaml"
    args = build_parser("train").parse_args(argv)
    assert _train_config(args) == config


TINY_SETTINGS = ["filters=4", "meta_batch=2", "queries=1", "val_episodes=4", "iterations=2"]


def tiny_train_argv(data_root, out, *sets: str) -> list[str]:
    argv = ["train", "--preset", "ci", "--method", "maml", "--device", "cpu", "--no-progress"]
    for item in (*TINY_SETTINGS, *sets):
        argv += ["--set", item]
    return [*argv, "--data-root", str(data_root), "--out", str(out)]


@pytest.mark.slow
def test_cli_trains_on_lake_and_refuses_a_contaminated_evaluation(full_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(locate.CACHE_ENV, str(tmp_path / "cache"))
    run, table = tmp_path / "run", tmp_path / "evaluations.csv"
    assert main(tiny_train_argv(full_root.parent, run, "split=lake")) == 0
    assert "--set split=lake" not in capsys.readouterr().out  # completed: no resume hint
    metrics = read_table(run / "metrics.parquet")
    assert set(metrics["data_split"]) == {"lake"}
    evaluate = ["evaluate", str(run / "best.pt"), "--device", "cpu", "--data-root", str(full_root.parent)]
    assert main([*evaluate, "--split", "hash", "--out", str(table)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "trained on split 'lake'" in err and "234 of the 423 meta-test characters" in err
    assert "--allow-overlap" in err and not table.exists()
    allowed = [*evaluate, "--split", "hash", "--allow-overlap", "--episodes", "600", "--out", str(table)]
    assert main(allowed) == 0
    assert "ci split hash (trained on lake) maml" in capsys.readouterr().out
    row = read_table(table).iloc[0]
    assert (row["data_split"], row["train_split"], row["n_episodes"]) == ("hash", "lake", 600)
    mine = write_episodes(tmp_path / "my-episodes", n=2)  # the user's own benchmark
    assert main([*evaluate, "--episodes-from", str(mine), "--out", str(tmp_path / "mine.csv")]) == 0
    assert "ci (trained on split lake) maml" in capsys.readouterr().out
    assert len(read_table(tmp_path / "mine.csv")) == 2


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("colour=red", "unknown key 'colour'"),
        ("ways=many", "--set ways=many: expected an integer"),
        ("inner_lr=-1", "inner_lr: expected a finite number > 0"),
        ("split=omniglot", "split: expected one of ['hash', 'vinyals', 'lake']"),
        ("name=mine", "unknown key 'name'"),
        ("ways", "expected KEY=VALUE"),
    ],
)
def test_bad_set_exits_4_before_reading_data(item, expected, tmp_path, capsys):
    argv = tiny_train_argv(tmp_path / "no-data", tmp_path / "run", item)
    assert main(argv) == EXIT_USAGE
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- real Omniglot


@pytest.mark.data
@needs_real
def test_real_ids_give_the_published_counts():
    ids = [*read_omniglot(REAL_OMNIGLOT / "images_background.npz").char_ids]
    ids += read_omniglot(REAL_OMNIGLOT / "images_evaluation.npz").char_ids
    assert ids == full_character_ids()
    for split, counts in COUNTS.items():
        parts = split_indices(ids, OmniglotSettings(split=split))
        assert tuple(len(parts[p]) for p in ("train", "val", "test")) == counts


@pytest.mark.data
@needs_real
def test_real_small_zips_show_lake_validation_starts_at_an_alphabet():
    """Sanskrit (0851-0892) and Tagalog (0893-0909) are whole in the validation part; every
    alphabet of the small zips lies on one side of the cut."""
    lake = split_characters("lake")
    for name in ("images_background_small1.zip", "images_background_small2.zip"):
        path = REAL_OMNIGLOT / name
        if not path.is_file():
            pytest.skip(f"{path} absent")
        with zipfile.ZipFile(path) as archive:
            alphabets: dict[str, set[str]] = {}
            for member in archive.namelist():
                parts = member.split("/")
                if member.endswith("_01.png"):
                    alphabets.setdefault(parts[1], set()).add(f"images_background/{parts[-1][:4]}")
        for alphabet, chars in alphabets.items():
            sides = {part for part in ("train", "val") if chars & lake[part]}
            assert len(sides) == 1, alphabet
            if alphabet in ("Sanskrit", "Tagalog"):
                assert sides == {"val"}


@pytest.mark.data
@pytest.mark.slow
@needs_real
def test_real_lake_split_has_no_evaluation_character_in_training(tmp_path):
    splits = load_omniglot(REAL_OMNIGLOT, OmniglotSettings(split="lake"), cache_folder=tmp_path)
    chars = {part: characters(splits, part) for part in ("train", "val", "test")}
    assert tuple(len(chars[p]) for p in ("train", "val", "test")) == COUNTS["lake"]
    assert not (chars["train"] | chars["val"]) & chars["test"]
    assert all(c.startswith("images_evaluation/") for c in chars["test"])
    with np.load(REAL_OMNIGLOT / "images_evaluation.npz") as data:
        first = ~data["images"][0, 0]  # Lake's evaluation character 0001, drawer 01
    index = splits.test.class_ids.index("images_evaluation/0001/rot000")
    small = splits.test.images[index, 0, 0].float() / 255
    assert abs(small.mean().item() - first.mean()) < 0.02 and splits.test.images.dtype == torch.uint8


@pytest.mark.slow
@needs_real
def test_real_omniglot_lake_run_refuses_hash_and_scores_real_evaluation_episodes(
    tmp_path, monkeypatch, capsys
):
    """The issue's user story on the real files: train on Lake's background set, score episodes
    cut from Lake's evaluation drawings (Lake's PNG convention), refuse the contaminated split."""
    monkeypatch.setenv(locate.CACHE_ENV, str(tmp_path / "cache"))
    run = tmp_path / "run"
    assert main(tiny_train_argv(REAL, run, "split=lake")) == 0
    evaluate = ["evaluate", str(run / "best.pt"), "--device", "cpu", "--data-root", str(REAL)]
    assert main([*evaluate, "--split", "hash", "--out", str(tmp_path / "e.csv")]) == EXIT_USAGE
    assert "include 234 of the 423 meta-test characters of split 'hash'" in capsys.readouterr().err
    with np.load(REAL_OMNIGLOT / "images_evaluation.npz") as data:
        white = data["images"][:10, :3]  # 10 evaluation characters, 3 drawers; True = white
    for e in range(2):
        for k in range(5):
            char = white[5 * e + k]
            for part, drawers in (("support", (0,)), ("query", (1, 2))):
                for d in drawers:
                    path = tmp_path / "mine" / f"ep{e}" / part / f"char{k}" / f"{d}.png"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(char[d]).convert("1").save(path)
    out = tmp_path / "mine.csv"
    assert main([*evaluate, "--episodes-from", str(tmp_path / "mine"), "--out", str(out)]) == 0
    assert "ci (trained on split lake) maml" in capsys.readouterr().out
    table = read_table(out)
    assert list(table["n_query"]) == [10, 10] and set(table["train_split"]) == {"lake"}
    assert len(read_table(predictions_path(out))) == 20
