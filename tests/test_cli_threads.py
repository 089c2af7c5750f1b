"""``--threads`` of train, evaluate and the baselines gate: the measured CPU default, an explicit
count, torch's own restored afterwards, and bad values refused before any compute."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import realdata.evaluate
import realdata.train
from harness.config import ConfigError
from infra.cli import main
from infra.errors import EXIT_OK, EXIT_USAGE
from infra.paths import DEFAULT_BASELINES
from infra.threads import DEFAULT_CPU_THREADS, MAX_THREADS, threads_for
from realdata.baselines.commands import _with_threads
from realdata.baselines.format import load_baselines
from realdata.baselines.measure import measured_device, row_spec
from realdata.baselines.scales import BASELINE_SCALES
from realdata.train import TrainResult


def test_threads_for_defaults_to_the_measured_cpu_count_and_leaves_gpus_alone():
    assert threads_for(None, "cpu") == DEFAULT_CPU_THREADS == 1
    assert threads_for(None, "cuda") is None
    assert threads_for(3, "cpu") == 3 and threads_for(2, "cuda") == 2
    for bad in (0, -1, MAX_THREADS + 1):
        with pytest.raises(ConfigError, match="threads: expected an integer"):
            threads_for(bad, "cpu")


@pytest.fixture
def torch_threads():
    """torch's thread count before the test, restored after it whatever happens."""
    before = torch.get_num_threads()
    torch.set_num_threads(3)  # neither the default nor an asked count: a pin must show
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(("flag", "expected"), [([], DEFAULT_CPU_THREADS), (["--threads", "2"], 2)])
def test_train_runs_under_the_pinned_thread_count(flag, expected, torch_threads, monkeypatch, tmp_path):
    seen = []

    def fake_train(config, run_dir, **kwargs):
        seen.append(torch.get_num_threads())
        return TrainResult(tmp_path, "completed", 1, 0.5, 1, 0.0, 1)

    monkeypatch.setattr(realdata.train, "train", fake_train)
    argv = ["train", "--preset", "ci", "--method", "maml", "--device", "cpu", "--out", str(tmp_path), *flag]
    assert main(argv) == EXIT_OK
    assert seen == [expected] and torch.get_num_threads() == 3


@pytest.mark.parametrize(("flag", "expected"), [([], DEFAULT_CPU_THREADS), (["--threads", "2"], 2)])
def test_evaluate_runs_under_the_pinned_thread_count(flag, expected, torch_threads, monkeypatch, tmp_path):
    seen = []

    def fake_evaluate(*args, show, **kwargs):
        seen.append(torch.get_num_threads())
        show({})
        return SimpleNamespace(row={})

    monkeypatch.setattr(realdata.evaluate, "evaluate_checkpoint", fake_evaluate)
    monkeypatch.setattr(realdata.evaluate, "format_row", lambda row: "accuracy")
    argv = ["evaluate", str(tmp_path / "best.pt"), "--device", "cpu", "--out", str(tmp_path / "e.csv"), *flag]
    assert main(argv) == EXIT_OK
    assert seen == [expected] and torch.get_num_threads() == 3


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--preset", "ci", "--method", "maml", "--device", "cpu", "--threads", "0"],
        ["evaluate", "best.pt", "--device", "cpu", "--threads", "-1"],
        ["evaluate", "best.pt", "--episodes-from", "eps", "--device", "cpu", "--threads", "0"],
        ["baselines", "check", "--scale", "ci", "--threads", "0"],
        ["baselines", "update", "--scale", "ci", "--dry-run", "--threads", str(MAX_THREADS + 1)],
    ],
)
def test_bad_threads_exit_4_naming_the_flag_before_any_compute(argv, capsys, monkeypatch, tmp_path):
    def never(*args, **kwargs):
        raise AssertionError("computed despite a bad --threads")

    monkeypatch.setattr(realdata.train, "train", never)
    monkeypatch.setattr(realdata.evaluate, "evaluate_checkpoint", never)
    monkeypatch.delenv("CI", raising=False)  # update is refused in CI before --threads is read
    monkeypatch.chdir(tmp_path)
    assert main(argv) == EXIT_USAGE
    assert "threads (--threads): expected an integer" in capsys.readouterr().err


def test_baselines_threads_replace_the_scales_count_and_the_device_column_says_so():
    stored = next(r for r in load_baselines(DEFAULT_BASELINES) if r.scale == "ci" and not r.is_reference)
    spec = row_spec(stored, DEFAULT_BASELINES)
    assert _with_threads([spec], None) == [spec]
    (two,) = _with_threads([spec], 2)
    assert (
        two.scale.threads == 2
        and two.config == spec.config
        and spec.scale.threads == BASELINE_SCALES["ci"].threads
    )
    assert measured_device(two.scale).endswith(", 2 threads")
    assert measured_device(spec.scale).endswith(", 1 thread")
