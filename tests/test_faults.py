"""Fault injection: planted and broken files, read-only outputs, signals, kill -9, two writers.

Each case is small (tiny synthetic data, the ``ci`` preset shrunk to a few iterations) and uses
real subprocesses and signals where the behaviour depends on them.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess

import numpy as np
import pytest

from infra.cells import CellCache
from infra.cli import main
from infra.codec import encode
from infra.errors import EXIT_USAGE, Interrupted
from infra.interrupts import stop_point, stop_requests


class RunsCommand:
    """Unpickling this runs a shell command: what a planted cell would do under plain pickle."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def planted_cache(tmp_path, capsys, data: bytes) -> tuple[list[int], str]:
    """Plant ``data`` as the cell file a suite would read (and at the old pickle name), run the
    cell; (the computations made, stderr)."""
    cache = CellCache(tmp_path / "cells", False, None, seed=0)
    path = cache.path("rate/maml/B1", {"k": 1})
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    path.with_suffix(".pkl").write_bytes(data)
    calls: list[int] = []
    value = cache("rate/maml/B1", {"k": 1}, lambda: calls.append(1) or {"v": np.arange(3.0)})
    assert np.array_equal(value["v"], np.arange(3.0))
    return calls, capsys.readouterr().err


def test_a_planted_pickle_cell_runs_nothing_and_is_recomputed(tmp_path, capsys) -> None:
    marker = tmp_path / "pwned"
    calls, err = planted_cache(tmp_path, capsys, pickle.dumps(RunsCommand(f"touch {marker}")))
    assert not marker.exists()
    assert calls == [1]
    assert len(err.strip().splitlines()) == 1 and "recomputing" in err and "rate/maml/B1" in err


def test_a_planted_npz_with_a_pickled_array_runs_nothing(tmp_path, capsys) -> None:
    marker = tmp_path / "pwned"
    payload = np.empty(1, dtype=object)
    payload[0] = RunsCommand(f"touch {marker}")
    forged = tmp_path / "forged.npz"
    np.savez(forged, __structure__=np.frombuffer(b"{}", dtype=np.uint8), a0=payload)
    calls, err = planted_cache(tmp_path, capsys, forged.read_bytes())
    assert not marker.exists()
    assert calls == [1] and "recomputing" in err


@pytest.mark.parametrize("cut", [0, 10, 200])
def test_a_truncated_cell_is_recomputed_with_one_warning_then_reused(tmp_path, capsys, cut) -> None:
    good = encode({"v": np.arange(3.0)})
    calls, err = planted_cache(tmp_path, capsys, good[:cut])
    assert calls == [1] and len(err.strip().splitlines()) == 1
    cache = CellCache(tmp_path / "cells", False, None, seed=0)
    again = cache("rate/maml/B1", {"k": 1}, lambda: pytest.fail("the rewritten cell was not reused"))
    assert np.array_equal(again["v"], np.arange(3.0))
    assert capsys.readouterr().err == ""


def test_a_signal_in_a_stop_requests_block_waits_for_the_next_stop_point(capsys) -> None:
    with stop_requests("finishing the current cell") as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested  # noted, not raised where it landed
        with pytest.raises(Interrupted) as raised:
            stop_point()
    assert raised.value.signal_name == "SIGTERM"
    assert "SIGTERM received: finishing the current cell" in capsys.readouterr().err
    with stop_requests("x"), pytest.raises(Interrupted):  # a second signal stops at once
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)


def test_a_cell_cache_stops_after_storing_the_current_cell(tmp_path) -> None:
    cache = CellCache(tmp_path, False, None, seed=0)

    def interrupted_cell() -> int:
        os.kill(os.getpid(), signal.SIGINT)
        return 7

    with stop_requests("finishing the current cell"), pytest.raises(Interrupted):
        cache("a", {}, interrupted_cell)
    assert cache("a", {}, lambda: pytest.fail("the finished cell was not kept")) == 7


@pytest.fixture
def read_only(tmp_path):
    """A folder nobody can write into, root included (chmod, then chattr +i where root)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = (
        os.geteuid() == 0
        and subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
    )
    if os.geteuid() == 0 and not immutable:
        pytest.skip("running as root without chattr: no folder is read-only")
    yield folder
    if immutable:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o755)


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["convergence", "--quick", "--out", "{ro}/suite"], "--out"),
        (["generalization", "--quick", "--out", "{ro}/suite"], "--out"),
        (["train", "--preset", "ci", "--method", "maml", "--out", "{ro}/run"], "run_dir (--out)"),
        (["evaluate", "missing.pt", "--out", "{ro}/rows.parquet"], "results (--out)"),
    ],
)
def test_a_read_only_output_is_refused_before_any_compute(argv, flag, read_only, capsys, monkeypatch) -> None:
    import realdata.data
    import synthetic.suites

    monkeypatch.setattr(synthetic.suites, "build_problem", lambda *a, **k: pytest.fail("computed"))
    monkeypatch.setattr(realdata.data, "load_dataset", lambda *a, **k: pytest.fail("loaded data"))
    assert main([a.format(ro=read_only) for a in argv]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"{flag}: cannot write to {read_only}" in err and "expected a writable" in err


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "the file is empty"),
        (None, "truncated or corrupt"),
        (b"hello world" * 10, "truncated or corrupt"),
        (pickle.dumps([1]), "refused unread"),
    ],
)
def test_a_broken_checkpoint_gets_one_honest_line(content, reason, tmp_path) -> None:
    import torch

    from realdata.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    path = tmp_path / "last.pt"
    if content is None:
        save_checkpoint(path, {"params": {"w": torch.zeros(1000)}})
        content = path.read_bytes()[:500]
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(path)
    message = str(raised.value)
    assert reason in message and "\n" not in message
    assert "weights_only" not in message and "()" not in message


def test_a_checkpoint_holding_code_is_refused_unrun(tmp_path) -> None:
    import torch

    from realdata.checkpoint import CheckpointError, load_checkpoint

    marker = tmp_path / "pwned"
    path = tmp_path / "last.pt"
    torch.save({"x": RunsCommand(f"touch {marker}")}, path)
    with pytest.raises(CheckpointError, match="refused unread"):
        load_checkpoint(path)
    assert not marker.exists()
