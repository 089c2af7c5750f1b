"""The cheaper-variant candidates in real-data training: --set, hash, rows, bit-exact resume."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch

from harness.config import ConfigError
from infra.provenance import config_hash
from realdata.checkpoint import load_checkpoint
from realdata.presets import parse_overrides, train_config
from realdata.train import train
from tests.test_realdata_training import TINY, tiny_splits

CANDIDATES = {"inner_params": "head", "ascent_every": 2, "lower_fraction": 0.5}
SET = ["inner_params=head", "ascent_every=2", "lower_fraction=0.5"]


def test_set_turns_the_candidates_on_and_they_reach_the_engine() -> None:
    assert parse_overrides(SET) == CANDIDATES
    config = train_config("ci", "sharp_both", overrides=parse_overrides(SET))
    cfg = config.meta_config()
    assert (cfg.inner_params, cfg.ascent_every, cfg.lower_fraction) == ("head", 2, 0.5)
    evaluation = config.eval_meta_config()
    assert (evaluation.inner_params, evaluation.lower_fraction) == ("head", 1.0)
    assert config.folder_name.startswith("ci+ascent_every=2+inner_params=head+lower_fraction=0.5-sharp_both")
    assert config.preset.candidate_columns() == CANDIDATES


def test_a_plain_run_keeps_its_hash_and_a_candidate_changes_it() -> None:
    plain = train_config(TINY, "sharp_both")
    settings = plain.to_dict()
    labels = {*CANDIDATES, "description", "sources", "split"}
    settings["preset"] = {k: v for k, v in settings["preset"].items() if k not in labels}
    assert plain.hash() == config_hash(settings)
    changed = {
        dataclasses.replace(plain, preset=TINY.replace(**{k: v})).hash() for k, v in CANDIDATES.items()
    }
    assert len({plain.hash(), *changed}) == 4


@pytest.mark.parametrize(
    ("method", "items", "message"),
    [
        ("maml", ["ascent_every=2"], r"^ascent_every: method 'maml' has no upper perturbation"),
        ("sharp_up", ["lower_fraction=0.5"], r"^lower_fraction: method 'sharp_up' has no lower perturbation"),
        ("maml", ["inner_params=body"], r"inner_params: expected one of \['all', 'head'\], got 'body'"),
        ("sharp_up", ["ascent_every=0"], r"ascent_every: expected an integer >= 1, got 0"),
        ("sharp_low", ["lower_fraction=2"], r"lower_fraction: expected a finite fraction > 0 and <= 1"),
    ],
)
def test_invalid_candidates_are_refused_before_any_compute(method: str, items: list, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        train_config("ci", method, overrides=parse_overrides(items))


def test_resume_with_every_candidate_is_bit_exact(tmp_path) -> None:
    data = tiny_splits()
    config = train_config(TINY, "sharp_both", overrides=CANDIDATES)
    whole = train(config, tmp_path / "whole", device="cpu", data=data, progress=False)
    # stopped after iteration 3: iteration 4 reuses the direction of iteration 3, from last.pt
    first = train(config, tmp_path / "split", device="cpu", data=data, stop_at=3, progress=False)
    assert load_checkpoint(first.last_checkpoint)["learner"]["ascent"] is not None
    second = train(config, tmp_path / "split", device="cpu", data=data, resume=True, progress=False)
    a, b = load_checkpoint(whole.last_checkpoint), load_checkpoint(second.last_checkpoint)
    assert a["learner"]["steps"] == b["learner"]["steps"] == TINY.iterations
    for name, value in a["params"].items():
        assert torch.equal(value, b["params"][name]), name
    rows = pd.read_parquet(second.metrics)
    assert set(rows["inner_params"]) == {"head"} and set(rows["ascent_every"]) == {2}
    assert set(rows["lower_fraction"]) == {0.5}
    columns = ["split", "iteration", "meta_loss", "accuracy"]
    pd.testing.assert_frame_equal(pd.read_parquet(whole.metrics)[columns], rows[columns])


def test_resume_refuses_other_candidate_settings(tmp_path) -> None:
    data = tiny_splits()
    train(
        train_config(TINY, "sharp_both", overrides=CANDIDATES),
        tmp_path,
        device="cpu",
        data=data,
        stop_at=1,
        progress=False,
    )
    with pytest.raises(ConfigError, match=r"preset\.ascent_every: checkpoint 2, now 1"):
        train(
            train_config(TINY, "sharp_both"), tmp_path, device="cpu", data=data, resume=True, progress=False
        )
