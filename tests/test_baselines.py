"""Stored baselines and the regression gate: file format and errors, tolerance and verdicts,
update with its diff, and real gate runs that fail a degraded model and flag an improved one.

The gate runs use a toy scale (8-filter Conv4, 20 iterations, 16x16 generated images whose
classes are noisy copies of a prototype, so that adaptation helps) registered for the test;
their worker processes are forked so that they see the patches (toy data, a degraded model).
One test runs the same rows with 1 and 2 spawned workers on tiny Omniglot-format files; one slow
test re-runs a committed ci row on the real Omniglot with zero inner steps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch

import harness.meta
import infra.workers
import realdata.train
from harness.config import METHODS
from infra.cli import main
from infra.errors import EXIT_USAGE
from infra.paths import DEFAULT_BASELINES
from realdata.baselines.format import (
    FAIL,
    PASS,
    REFERENCE_RULE,
    SEED_RULE,
    SKIPPED,
    Baseline,
    BaselinesError,
    Measured,
    judge,
    load_baselines,
    render_baselines,
    seed_tolerance,
    write_baselines,
)
from realdata.baselines.measure import (
    BASELINE_SCALES,
    RowSpec,
    Scale,
    defined_rows,
    measure_rows,
    row_spec,
    run_seed,
    seed_runs,
    summarize,
)
from realdata.data import DATASET_LOADERS
from realdata.datasets import ClassImages, DatasetSplits, find_data_root
from realdata.presets import PRESETS, train_config
from tests.fixtures_datasets import write_small_image_omniglot

REAL = find_data_root()
HAS_OMNIGLOT = REAL is not None and (REAL / "omniglot").is_dir()
TOY_PRESET = PRESETS["ci"].replace(
    name="toy",
    filters=8,
    meta_batch=4,
    queries=2,
    iterations=20,
    val_every=20,
    val_episodes=10,
    log_every=10,
    train_classes=None,
    test_inner_steps=1,
)
TOY_SCALE = Scale(
    "toy",
    "test scale",
    preset="toy",
    iterations=20,
    seeds=(0, 1),
    spread_seeds=(0, 1, 2),
    n_episodes=600,
    device="cpu",
    threads=1,
    methods=("maml",),
)
TOY_ROW = "toy:omniglot-5w1s-maml-lo0-up0"
PAPER_LINE = (
    "paper:finn2017-omniglot-5w1s-maml,paper,omniglot,5,1,maml,0,0,98.7,0.4,,,,,,,,,,"
    '"paper: Finn et al., MAML, ICML 2017, Table 1",,,,,'
    f'"{REFERENCE_RULE}",\n'
)
VALID = render_baselines([]) + PAPER_LINE


def toy_splits() -> DatasetSplits:
    """16x16 images: each class a blocky random prototype with 15% of its pixels flipped."""
    g = torch.Generator().manual_seed(0)

    def split(name: str, n: int) -> ClassImages:
        proto = torch.rand(n, 1, 1, 4, 4, generator=g) < 0.5
        proto = proto.repeat_interleave(4, -1).repeat_interleave(4, -2).expand(n, 8, 1, 16, 16)
        flips = torch.rand(n, 8, 1, 16, 16, generator=g) < 0.15
        return ClassImages((proto ^ flips).to(torch.uint8) * 255, tuple(f"{name}/{i}" for i in range(n)))

    return DatasetSplits(split("train", 20), split("val", 10), split("test", 10), False, None)


def no_inner_steps(loss, params, support, cfg, radii=None):
    """The degraded model: adaptation returns the meta-parameters unchanged."""
    return params


def degrade(monkeypatch: pytest.MonkeyPatch) -> None:
    """Adaptation switched off, also in the gate's worker processes (forked: they see it)."""
    monkeypatch.setattr(harness.meta, "adapt", no_inner_steps)
    monkeypatch.setattr(realdata.train, "adapt", no_inner_steps)
    monkeypatch.setattr(infra.workers, "START_METHOD", "fork")


@contextlib.contextmanager
def toy_patches() -> Iterator[None]:
    """The toy preset and scale registered, the toy images in place of Omniglot, and CI unset
    (the tests run `update`, which CI machines refuse: tox passes CI through)."""
    splits = toy_splits()
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CI", raising=False)
        mp.setitem(PRESETS, "toy", TOY_PRESET)
        mp.setitem(BASELINE_SCALES, "toy", TOY_SCALE)
        mp.setitem(DATASET_LOADERS, "omniglot", lambda options, split: splits)
        mp.setattr(infra.workers, "START_METHOD", "fork")
        yield


@pytest.fixture
def toy_env() -> Iterator[None]:
    with toy_patches():
        yield


@pytest.fixture(scope="module")
def stored_text(tmp_path_factory) -> str:
    """A baselines file with one paper row and the toy row made by `baselines update`."""
    path = tmp_path_factory.mktemp("stored") / "baselines.csv"
    path.write_text(VALID)
    with toy_patches():
        assert main(["baselines", "update", "--scale", "toy", "--baselines", str(path)]) == 0
    return path.read_text()


def run(*argv: str | Path) -> int:
    return main(["baselines", *map(str, argv)])


def gate_rows(out: Path) -> pd.DataFrame:
    return pd.read_csv(out).set_index("row_id")


# ----------------------------------------------------------------------------- tolerance, verdicts


def test_tolerance_is_the_stored_ci_or_three_sigmas_of_a_seed_mean_difference():
    assert seed_tolerance(1.0, 2.0, 2) == pytest.approx(6.0)  # 3 * sqrt(2/2) * 2
    assert seed_tolerance(0.5, 1.0, 8) == pytest.approx(1.5)  # 3 * sqrt(2/8) * 1
    assert seed_tolerance(1.5, 0.1, 2) == 1.5  # the CI is the floor


def stored_row(**changes) -> Baseline:
    fields = dict(
        row_id="ci:omniglot-5w1s-maml-lo0-up0",
        scale="ci",
        dataset="omniglot",
        ways=5,
        shots=1,
        method="maml",
        alpha_low=0.0,
        alpha_up=0.0,
        accuracy=70.0,
        ci95=1.0,
        seed_std=1.0,
        n_episodes=600,
        n_seeds=2,
        seeds=(0, 1),
        spread_seeds=(0, 1, 2, 3),
        iterations=80,
        preset="ci",
        eval_inner_loop="same",
        test_seed=1,
        source="reproduced here",
        device="cpu",
        git_sha="abc",
        date="2025-01-01",
        config_hash="h",
        tolerance_rule=SEED_RULE,
        note="",
    )
    return Baseline(**{**fields, **changes})


def measured(accuracy: float, **changes) -> Measured:
    fields = dict(
        accuracy=accuracy,
        ci95=1.0,
        seed_std=1.0,
        seeds=(0, 1),
        spread_seeds=(0, 1),
        n_episodes=600,
        config_hash="h",
        device="cpu",
        elapsed_s=1.0,
    )
    return Measured(**{**fields, **changes})


@pytest.mark.parametrize(
    ("value", "changes", "verdict", "reason"),
    [
        (70.0, {}, PASS, ""),
        (67.0, {}, PASS, ""),  # exactly at the tolerance (3 points)
        (73.0, {}, PASS, ""),
        (66.9, {}, FAIL, "dropped 3.10 points, beyond the tolerance 3.00"),
        (
            73.2,
            {},
            FAIL,
            "improved 3.20 points, beyond the tolerance 3.00: store it deliberately "
            "with `sharpmaml baselines update --rows ci:omniglot-5w1s-maml-lo0-up0`",
        ),
        (70.0, {"config_hash": "other"}, FAIL, "settings changed (config hash h stored, other now)"),
        (math.nan, {"failure": "training of seed 1 diverged"}, FAIL, "training of seed 1 diverged"),
    ],
)
def test_verdicts_fail_drops_and_rises_beyond_the_tolerance(value, changes, verdict, reason):
    got_verdict, got_reason, tolerance = judge(stored_row(), measured(value, **changes))
    assert (got_verdict, tolerance) == (verdict, pytest.approx(3.0))
    assert got_reason.startswith(reason) if reason else got_reason == ""


# ----------------------------------------------------------------------------- the committed file


def test_committed_baselines_are_valid_canonical_and_describe_the_current_code():
    rows = load_baselines(DEFAULT_BASELINES)
    assert render_baselines(rows) == DEFAULT_BASELINES.read_text()  # byte-for-byte canonical
    paper = [r for r in rows if r.is_paper]
    assert {r.source.split(",")[0] for r in paper} == {"paper: Abbas et al.", "paper: Finn et al."}
    for row in paper:
        assert row.tolerance_rule == REFERENCE_RULE
        if row.source.startswith("paper: Abbas"):
            assert "revised arXiv 2206.03996" in row.source and "v1 numbers are not used" in row.source
    ci = [r for r in rows if r.scale == "ci"]
    assert sorted(r.method for r in ci) == sorted(METHODS)
    assert {s.row_id for s in defined_rows(BASELINE_SCALES["ci"])} == {r.row_id for r in ci}
    for row in ci:
        spec = row_spec(row, DEFAULT_BASELINES)
        assert spec.config_hash() == row.config_hash, (
            f"{row.row_id}: the ci preset or engine settings changed since the row was stored; "
            "re-measure with `sharpmaml baselines update --scale ci`"
        )
        assert row.n_seeds == len(BASELINE_SCALES["ci"].seeds) and row.tolerance() > 0
        assert row.device.endswith(", 1 thread") and row.git_sha and row.date  # pinned thread


# ----------------------------------------------------------------------------- bad files


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", ["line 1", "empty file"]),
        (VALID.replace("ci95,", "", 1).encode(), ["line 1", "missing ['ci95']"]),
        (
            VALID.replace(",98.7,", ",9x.7,").encode(),
            ["line 2", "column 'accuracy'", "expected a number", "'9x.7'"],
        ),
        (VALID.replace(",98.7,", ",198.7,").encode(), ["line 2", "column 'accuracy'", "[0, 100]"]),
        (VALID.replace(",0.4,", ",0.4,,").encode(), ["line 2", "expected 26 fields, got 27"]),
        ((VALID + PAPER_LINE).encode(), ["line 3", "column 'row_id'", "duplicate row_id; line 2"]),
        (VALID.replace('"paper: Finn', '"Finn').encode(), ["line 2", "column 'source'", "'paper:'"]),
        (VALID.replace(REFERENCE_RULE, "max(ci95)").encode(), ["line 2", "column 'tolerance_rule'"]),
        (VALID.encode() + b"\xff\xfe", ["not UTF-8"]),
    ],
)
def test_a_corrupt_file_is_a_clear_error_and_is_never_written(
    content, expected, tmp_path, capsys, monkeypatch
):
    path, out = tmp_path / "baselines.csv", tmp_path / "check.csv"
    path.write_bytes(content)
    monkeypatch.delenv("CI", raising=False)
    assert run("check", "--baselines", path, "--out", out) == EXIT_USAGE
    assert run("update", "--scale", "ci", "--baselines", path) == EXIT_USAGE  # fails before measuring
    err = capsys.readouterr().err
    assert str(path) in err
    for text in expected:
        assert text in err
    assert path.read_bytes() == content and not out.exists()


def measured_row_line(
    row_id: str = TOY_ROW, scale: str = "toy", preset: str = "toy", iterations: str = "20", n_seeds: str = "2"
) -> str:
    return (
        f"{row_id},{scale},omniglot,5,1,maml,0,0,60,1.3,1,600,{n_seeds},0 1,0 1 2,{iterations},"
        f"{preset},same,"
        f'20220606,reproduced here,cpu,abc,2025-01-01,h,"{SEED_RULE}",\n'
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (measured_row_line(scale="tpu"), ["line 3", "column 'scale'", "unknown scale 'tpu'"]),
        (measured_row_line(preset="nope"), ["line 3", "column 'preset'", "unknown preset 'nope'"]),
        (measured_row_line(preset="mini-5w1s"), ["line 3", "column 'dataset'", "'miniimagenet'"]),
        (measured_row_line(n_seeds="3"), ["line 3", "column 'n_seeds'", "the number of seeds listed (2)"]),
    ],
)
def test_a_row_the_code_cannot_rerun_is_rejected_before_any_compute(
    line, expected, toy_env, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr("realdata.baselines.measure.measure_rows", pytest.fail)
    path, out = tmp_path / "baselines.csv", tmp_path / "check.csv"
    path.write_text(VALID + line)
    before = path.read_bytes()
    assert run("check", "--baselines", path, "--out", out) == EXIT_USAGE
    err = capsys.readouterr().err
    for text in expected:
        assert text in err
    assert path.read_bytes() == before and not out.exists()


def test_a_missing_file_is_a_clear_error_and_is_not_created(tmp_path, capsys):
    path = tmp_path / "none.csv"
    assert run("check", "--baselines", path, "--out", tmp_path / "check.csv") == EXIT_USAGE
    assert run("show", "--baselines", path) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"{path}: baselines file not found" in err and "baselines update --scale ci" in err
    assert not path.exists() and not (tmp_path / "check.csv").exists()


def test_unknown_rows_and_ci_updates_are_refused_before_any_compute(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("realdata.baselines.measure.measure_rows", pytest.fail)
    path = tmp_path / "baselines.csv"
    path.write_text(VALID)
    monkeypatch.delenv("CI", raising=False)
    assert run("update", "--rows", "ci:nope", "--baselines", path) == EXIT_USAGE
    assert "--rows: unknown row of a scale ['ci:nope']" in capsys.readouterr().err
    assert run("check", "--rows", "ci:nope", "--baselines", path) == EXIT_USAGE
    assert "--rows: unknown row ['ci:nope']" in capsys.readouterr().err
    monkeypatch.setenv("CI", "true")
    assert run("update", "--scale", "ci", "--baselines", path) == EXIT_USAGE
    assert "refusing to update baselines where CI is set" in capsys.readouterr().err
    assert path.read_text() == VALID


def test_writes_are_validated_and_atomic(tmp_path, monkeypatch):
    path = tmp_path / "baselines.csv"
    path.write_text(VALID)
    with pytest.raises(BaselinesError, match=r"column 'accuracy'.*\[0, 100\]"):
        write_baselines(path, [stored_row(accuracy=150.0)])

    def interrupted(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(OSError, match="disk full"):
        write_baselines(path, [stored_row()])
    assert path.read_text() == VALID and os.listdir(tmp_path) == ["baselines.csv"]


# ----------------------------------------------------------------------------- gate runs (toy scale)


def test_update_prints_the_diff_and_keeps_the_other_rows(stored_text, toy_env, tmp_path, capsys, monkeypatch):
    rows = {r.row_id: r for r in load_baselines_text(stored_text, tmp_path)}
    assert set(rows) == {"paper:finn2017-omniglot-5w1s-maml", TOY_ROW}
    toy = rows[TOY_ROW]
    assert toy.accuracy > 40 and toy.seeds == (0, 1) and toy.spread_seeds == (0, 1, 2)  # chance: 20
    assert toy.seed_std > 0 and toy.tolerance() == seed_tolerance(toy.ci95, toy.seed_std, 2)
    assert toy.device.endswith(", 1 thread") and toy.tolerance_rule == SEED_RULE
    assert stored_text.startswith(VALID)  # the paper row untouched, the new row appended

    path = tmp_path / "baselines.csv"
    path.write_text(stored_text)
    degrade(monkeypatch)
    capsys.readouterr()
    assert run("update", "--rows", TOY_ROW, "--baselines", path, "--dry-run") == 0
    out = capsys.readouterr().out
    assert f"--- {path} (stored)" in out and f"+++ {path} (updated)" in out
    assert f"\n-{TOY_ROW}," in out and f"\n+{TOY_ROW}," in out and "--dry-run" in out
    assert path.read_text() == stored_text


def load_baselines_text(text: str, folder: Path) -> list[Baseline]:
    path = folder / "read.csv"
    path.write_text(text)
    return load_baselines(path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the skip of gpu rows without CUDA")
def test_an_unchanged_model_passes_bit_exactly_and_gpu_rows_are_skipped(
    stored_text, toy_env, tmp_path, capsys
):
    gpu = measured_row_line("gpu:omniglot-5w1s-maml-lo0-up0", "gpu", "omniglot-5w1s", "2000")
    path, out = tmp_path / "baselines.csv", tmp_path / "gate" / "check.csv"
    path.write_text(stored_text + gpu)
    before = path.read_bytes()
    assert run("check", "--baselines", path, "--out", out) == 0
    table = gate_rows(out)
    toy, skipped = table.loc[TOY_ROW], table.loc["gpu:omniglot-5w1s-maml-lo0-up0"]
    assert toy["verdict"] == PASS and abs(toy["delta"]) < 1e-3  # same machine: same numbers
    assert skipped["verdict"] == SKIPPED and "needs a CUDA GPU" in skipped["reason"]
    for column in (
        "row_id",
        "dataset",
        "ways",
        "shots",
        "method",
        "alpha_low",
        "alpha_up",
        "scale",
        "stored",
        "measured",
        "delta",
        "tolerance",
        "verdict",
        "reason",
        "git_sha",
        "versions",
        "device",
        "date",
    ):
        assert column in table.reset_index().columns
    printed = capsys.readouterr().out
    assert "row_id" in printed and "tolerance" in printed and "verdicts: PASS 1, SKIPPED 1" in printed
    assert path.read_bytes() == before


def test_a_model_without_inner_steps_fails_the_gate(stored_text, toy_env, tmp_path, monkeypatch):
    path, out = tmp_path / "baselines.csv", tmp_path / "check.csv"
    path.write_text(stored_text)
    degrade(monkeypatch)
    assert run("check", "--baselines", path, "--out", out) == 1
    row = gate_rows(out).loc[TOY_ROW]
    assert row["verdict"] == FAIL and row["reason"].startswith("dropped")
    assert row["measured"] < row["stored"] - row["tolerance"] and row["measured"] < 30
    assert path.read_text() == stored_text  # a check never writes the baselines


def test_an_improved_model_is_flagged_until_the_baseline_is_updated(toy_env, tmp_path, monkeypatch, capsys):
    path, out = tmp_path / "baselines.csv", tmp_path / "check.csv"
    path.write_text(VALID)
    with monkeypatch.context() as degraded:
        degrade(degraded)
        assert run("update", "--scale", "toy", "--baselines", path) == 0  # stored: the weak model
    assert run("check", "--baselines", path, "--out", out) == 1
    row = gate_rows(out).loc[TOY_ROW]
    assert row["verdict"] == FAIL and row["reason"].startswith("improved")
    assert f"baselines update --rows {TOY_ROW}" in row["reason"]
    assert row["delta"] > row["tolerance"]
    assert "FAIL" in capsys.readouterr().out


@pytest.mark.slow
def test_the_numbers_do_not_depend_on_the_number_of_worker_processes(tmp_path, monkeypatch):
    """Two rows x three seeds on tiny Omniglot-format files, measured with 1 and with 2 spawned
    worker processes (no patch of this process reaches them) and in this process: the same
    accuracy, CI and seed spread, bit for bit, whatever order the seeds end in."""
    data = write_small_image_omniglot(tmp_path / "data")
    monkeypatch.setenv("SHARPMAML_CACHE", str(tmp_path / "cache"))
    preset = PRESETS["ci"].replace(
        name="tiny",
        filters=4,
        meta_batch=2,
        queries=1,
        val_every=3,
        val_episodes=4,
        log_every=2,
        test_inner_steps=1,
    )
    scale = dataclasses.replace(TOY_SCALE, preset="tiny", iterations=3)
    specs = [
        RowSpec(scale, train_config(preset, method, iterations=3), scale.seeds, 600, 20220606)
        for method in ("maml", "sharp_low")
    ]

    def measured(jobs: int) -> list[tuple[float, float, float | None]]:
        rows: dict[int, Measured] = {}
        measure_rows(specs, data, jobs=jobs, spread=True, on_row=rows.__setitem__)
        assert not any(m.failure for m in rows.values())
        return [(rows[i].accuracy, rows[i].ci95, rows[i].seed_std) for i in range(len(specs))]

    one, two = measured(1), measured(2)
    assert one == two and one[0] != one[1]
    runs = seed_runs(specs, data, spread=True)
    here = [
        summarize(spec, {r.seed: run_seed(r) for r in runs if r.row == i}, spread=True)
        for i, spec in enumerate(specs)
    ]
    assert [(m.accuracy, m.ci95, m.seed_std) for m in here] == one


def test_show_prints_rows_with_their_tolerance(stored_text, toy_env, tmp_path, capsys):
    path = tmp_path / "baselines.csv"
    path.write_text(stored_text)
    assert run("show", "--baselines", path, "--scale", "toy") == 0
    out = capsys.readouterr().out
    toy = load_baselines(path)[-1]
    assert TOY_ROW in out and f"{toy.tolerance():.2f}" in out and "paper:" not in out


# ----------------------------------------------------------------------------- real Omniglot


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.skipif(
    not HAS_OMNIGLOT, reason="no Omniglot folder under the data root ($SHARPMAML_DATA or ../shared/data)"
)
def test_the_real_gate_fails_the_committed_maml_row_without_inner_steps(tmp_path, monkeypatch):
    """The committed ci MAML row, re-run on real Omniglot with adaptation switched off (~15 s)."""
    out = tmp_path / "check.csv"
    degrade(monkeypatch)
    row_id = "ci:omniglot-5w1s-maml-lo0-up0"
    assert run("check", "--rows", row_id, "--out", out) == 1
    row = gate_rows(out).loc[row_id]
    assert row["verdict"] == FAIL and row["reason"].startswith("dropped")
    assert row["measured"] < 30  # chance is 20% without adaptation


def test_missing_data_stops_the_gate_unless_ci_asks_to_skip(tmp_path, capsys):
    """Without the data the gate exits 4 naming the folder; with --skip-missing-data (CI) every
    row needing it is SKIPPED with that reason and nothing is trained."""
    empty, out = tmp_path / "no-data", tmp_path / "check.csv"
    empty.mkdir()
    before = DEFAULT_BASELINES.read_bytes()
    assert run("check", "--scale", "ci", "--data-root", empty, "--out", out) == EXIT_USAGE
    assert f"{empty / 'omniglot'}: Omniglot folder not found" in capsys.readouterr().err
    assert not out.exists()
    assert run("check", "--scale", "ci", "--data-root", empty, "--out", out, "--skip-missing-data") == 0
    table = gate_rows(out)
    assert len(table) == 5 and (table["verdict"] == SKIPPED).all()
    assert table["reason"].str.contains("dataset omniglot unavailable").all()
    assert table["measured"].isna().all()
    assert DEFAULT_BASELINES.read_bytes() == before
