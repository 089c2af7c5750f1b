"""Scoring a checkpoint on episodes the user brings: folder layout, preprocessing identical to
training, per-episode and per-query tables, the CI rule, and errors that name the file."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.meta import adapt
from infra.cli import main
from infra.errors import EXIT_USAGE
from infra.store import read_table
from realdata.checkpoint import load_checkpoint
from realdata.datasets import DatasetError, omniglot_class_images, preprocess_image, read_omniglot
from realdata.episodes_from import MIN_CI_EPISODES, predictions_path, score_episodes
from realdata.models import Conv4Loss, Conv4Spec
from realdata.presets import TrainConfig
from realdata.train import train
from tests.fixtures_datasets import random_ink, write_omniglot_folder
from tests.test_realdata_training import tiny_config, tiny_splits

WAYS = 5  # the tiny preset's


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A 5-way Omniglot checkpoint on 16x16 images (2 iterations on random data)."""
    run = tmp_path_factory.mktemp("run")
    config = tiny_config("maml", iterations=2)
    return train(config, run, device="cpu", data=tiny_splits(), progress=False).best_checkpoint


def write_png(path: Path, ink: np.ndarray) -> Path:
    """Lake's convention: black strokes on white, 1-bit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(~ink).convert("1").save(path)
    return path


def write_episodes(root: Path, n: int, ways: int = WAYS, shots: int = 1, queries: int = 2) -> Path:
    """``n`` episode folders of random drawings (30x30), labels ``c<k>``."""
    ink = random_ink(n * ways, shots + queries, size=30, seed=n)
    for e in range(n):
        for k in range(ways):
            drawings = ink[e * ways + k]
            for s in range(shots):
                write_png(root / f"ep{e:03d}" / "support" / f"c{k}" / f"s{s}.png", drawings[s])
            for q in range(queries):
                write_png(root / f"ep{e:03d}" / "query" / f"c{k}" / f"q{q}.png", drawings[shots + q])
    return root


def test_preprocessing_is_the_training_pipeline(tmp_path):
    """A PNG in Lake's layout, read by the Omniglot reader, equals preprocess_image of the file."""
    ink = random_ink(1, 2, size=105, seed=4)
    folder = write_omniglot_folder(tmp_path / "images_background", ink)
    trained = omniglot_class_images(read_omniglot(folder), rotations=False).images[0, 1].float() / 255
    png = folder / "Alphabet_0" / "character01" / "0001_02.png"
    assert torch.equal(preprocess_image(png, "omniglot"), trained)
    assert torch.equal(preprocess_image(png.read_bytes(), "omniglot", name="x"), trained)
    assert preprocess_image(png, "omniglot", 16).shape == (1, 16, 16)
    rgb = tmp_path / "photo.png"
    Image.fromarray(np.full((50, 40, 3), 200, dtype=np.uint8)).save(rgb)
    image = preprocess_image(rgb, "miniimagenet")
    assert image.shape == (3, 84, 84) and torch.allclose(image, torch.full_like(image, 200 / 255))


def test_scores_match_adapting_by_hand(checkpoint, tmp_path):
    root = write_episodes(tmp_path / "episodes", n=3, queries=2)
    out = tmp_path / "scores.csv"
    scores = score_episodes(checkpoint, root, device="cpu", results=out)
    assert list(scores.episodes["episode"]) == ["ep000", "ep001", "ep002"]
    assert list(scores.episodes["n_query"]) == [10, 10, 10] and set(scores.episodes["n_support"]) == {5}
    assert math.isnan(scores.ci95)  # 3 episodes: no CI
    state = load_checkpoint(checkpoint)
    config = TrainConfig.from_dict(state["config"])
    loss = Conv4Loss(Conv4Spec(**state["model"]))
    for _, row in scores.episodes.iterrows():
        folder = root / row["episode"]

        def images(part: str, folder: Path = folder) -> tuple[torch.Tensor, torch.Tensor]:
            files = sorted((folder / part).glob("c*/*.png"))
            x = torch.stack([preprocess_image(f, "omniglot", 16) for f in files])
            return x, torch.tensor([int(f.parent.name[1:]) for f in files])

        x, y = images("query")
        logits = loss.logits(adapt(loss, state["params"], images("support"), config.eval_meta_config()), x)
        predicted = logits.argmax(-1)
        mine = scores.predictions[scores.predictions["episode"] == row["episode"]]
        assert list(mine["predicted"]) == [f"c{k}" for k in predicted.tolist()]
        assert list(mine["label"]) == [f"c{k}" for k in y.tolist()]
        assert row["accuracy"] == pytest.approx(100 * (predicted == y).double().mean().item())
    assert scores.accuracy == pytest.approx(scores.episodes["accuracy"].mean())
    stored = read_table(out)
    assert list(stored["accuracy"]) == pytest.approx(list(scores.episodes["accuracy"]))
    assert len(read_table(predictions_path(out))) == 30
    assert set(stored["train_split"]) == {"hash"} and set(stored["eval_inner_loop"]) == {
        config.eval_inner_loop
    }


def test_one_episode_and_the_ci_threshold(checkpoint, tmp_path):
    one = score_episodes(checkpoint, write_episodes(tmp_path / "one", n=1, queries=1), device="cpu")
    assert one.n_episodes == 1 and math.isnan(one.ci95) and len(one.predictions) == WAYS
    root = write_episodes(tmp_path / "many", n=MIN_CI_EPISODES, queries=1)
    many = score_episodes(checkpoint, root, device="cpu")
    acc = many.episodes["accuracy"].to_numpy()
    assert many.ci95 == pytest.approx(1.96 * acc.std(ddof=1) / math.sqrt(MIN_CI_EPISODES))


def test_cli_writes_both_tables_and_prints_the_summary(checkpoint, tmp_path, capsys):
    root = write_episodes(tmp_path / "mine", n=2, shots=2, queries=1)
    out = tmp_path / "mine.parquet"
    argv = ["evaluate", str(checkpoint), "--episodes-from", str(root), "--device", "cpu", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "over 2 episode(s), 10 query images" in printed and "no CI: fewer than 30 episodes" in printed
    assert len(read_table(out)) == 2 and len(read_table(predictions_path(out))) == 10
    assert set(read_table(out)["n_support"]) == {10}
    assert main([*argv, "--split", "lake"]) == EXIT_USAGE
    assert "--split: not used with --episodes-from" in capsys.readouterr().err


def _remove_label(part: Path) -> None:
    for f in part.iterdir():
        f.unlink()
    part.rmdir()


def break_layout(root: Path, how: str) -> tuple[Path, str]:
    """Damage a valid 2-episode folder; the path and text the error must name."""
    ep = root / "ep000"
    if how == "no query":
        for label in sorted((ep / "query").iterdir()):
            _remove_label(label)
        (ep / "query").rmdir()
        return ep / "query", "query folder not found"
    if how == "unknown label":
        (ep / "query" / "c0").rename(ep / "query" / "zebra")
        return ep / "query" / "zebra", "label 'zebra' has no support images"
    if how == "too few ways":
        _remove_label(ep / "support" / "c4")
        _remove_label(ep / "query" / "c4")
        return ep / "support", "4 labels (c0, c1, c2, c3); expected 5"
    if how == "broken image":
        bad = ep / "support" / "c2" / "s0.png"
        bad.write_bytes(b"not a png")
        return bad, "not a readable image"
    if how == "stray file":
        (root / "notes.txt").write_text("hi")
        return root / "notes.txt", "expected only episode folders"
    if how == "empty label":
        (ep / "query" / "c1" / "q0.png").unlink()
        return ep / "query" / "c1", "no images; expected at least one image for label 'c1'"
    if how == "extra entry":
        (ep / "labels.csv").write_text("x")
        return ep / "labels.csv", "an episode folder holds only support/ and query/"
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    ["no query", "unknown label", "too few ways", "broken image", "stray file", "empty label", "extra entry"],
)
def test_bad_folders_exit_4_naming_the_file(checkpoint, tmp_path, capsys, how):
    root = write_episodes(tmp_path / "eps", n=2, queries=1)
    path, text = break_layout(root, how)
    out = tmp_path / "t.csv"
    argv = ["evaluate", str(checkpoint), "--episodes-from", str(root), "--device", "cpu", "--out", str(out)]
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert str(path) in err and text in err
    assert not out.exists()


def test_missing_and_empty_episode_folders(checkpoint, tmp_path):
    with pytest.raises(DatasetError, match="episodes folder not found"):
        score_episodes(checkpoint, tmp_path / "absent", device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no episode folders; expected at least one"):
        score_episodes(checkpoint, tmp_path / "empty", device="cpu")
