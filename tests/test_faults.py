"""Fault injection: planted and broken files, read-only outputs, signals, kill -9, two writers.

Each case is small (tiny synthetic data, the ``ci`` preset shrunk to a few iterations) and uses
real subprocesses and signals where the behaviour depends on them.
"""

from __future__ import annotations

import os
import pickle
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from infra.cells import CellCache
from infra.cli import main
from infra.codec import encode
from infra.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, Interrupted
from infra.interrupts import stop_point, stop_requests
from infra.store import atomic_write_bytes
from infra.workers import run_in_workers

ROOT = Path(__file__).resolve().parents[1]


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


def test_an_ignored_signal_stays_ignored_in_a_stop_requests_block(capsys) -> None:
    """A pool worker ignores SIGINT (the terminal sends it to the whole group; the parent then
    stops the workers with SIGTERM), which must stay a first, deferred request for its run."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with stop_requests("saving a checkpoint") as stop:
            os.kill(os.getpid(), signal.SIGINT)
            assert not stop.requested
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop.requested and stop.signal_name == "SIGTERM"
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def sigint_disposition(_task: int) -> bool:
    return signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_pool_workers_leave_ctrl_c_to_the_parent() -> None:
    seen: list[bool | None] = []
    run_in_workers(sigint_disposition, [0], 1, lambda task, result, error, job: seen.append(result))
    assert seen == [True]


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
        (["baselines", "check", "--out", "{ro}/check.csv"], "--out"),
        (["baselines", "update", "--scale", "ci", "--baselines", "{ro}/baselines.csv"], "--baselines"),
        (["report", "--out", "{ro}/report.html"], "--out"),
        (["sweep", "{root}/docs/studies/omniglot-5w1s-cpu.toml", "--out", "{ro}/sweep"], "--out"),
        (["study", "{ro}", "--out", "{ro}/study"], "--out"),
        (
            [
                "study",
                "{ro}",
                "--out",
                "{ro}/../study",
                "--store-baselines",
                "cpu-study",
                "--baselines",
                "{ro}/b.csv",
            ],
            "--baselines",
        ),
    ],
)
def test_a_read_only_output_is_refused_before_any_compute(argv, flag, read_only, capsys, monkeypatch) -> None:
    import realdata.data
    import realdata.sweep.driver
    import realdata.sweep.study
    import reports.build
    import synthetic.suites

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(reports.build, "build_report", lambda *a, **k: pytest.fail("built a report"))
    monkeypatch.setattr(realdata.sweep.driver, "run_sweep", lambda *a, **k: pytest.fail("ran a sweep"))
    monkeypatch.setattr(realdata.sweep.study, "study_tables", lambda *a, **k: pytest.fail("computed a study"))
    monkeypatch.setattr(synthetic.suites, "build_problem", lambda *a, **k: pytest.fail("computed"))
    monkeypatch.setattr(realdata.data, "load_dataset", lambda *a, **k: pytest.fail("loaded data"))
    assert main([a.format(ro=read_only, root=ROOT) for a in argv]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"{flag}: cannot write to {read_only}" in err and "expected a writable" in err


def test_a_suite_whose_results_cannot_be_written_has_printed_them_first(
    tmp_path, capsys, monkeypatch
) -> None:
    import infra.store
    import synthetic.suites
    from tests.test_exit_codes import fake_suite

    def disk_full(frame: object, path: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(synthetic.suites, "run_convergence_suite", fake_suite({"rate.x/a": "PASS"}))
    monkeypatch.setattr(infra.store, "write_table", disk_full)
    assert main(["convergence", "--out", str(tmp_path), "--seed", "9", "--no-progress"]) == EXIT_INTERNAL
    captured = capsys.readouterr()
    assert "rate.x/a" in captured.out and "verdicts: PASS 1" in captured.out
    assert "No space left on device" in captured.err


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


def test_a_truncated_results_file_makes_the_report_exit_4_naming_it_in_a_banner(tmp_path, capsys) -> None:
    from tests import report_fixtures as fx

    root, out = tmp_path / "results", tmp_path / "report.html"
    fx.write_store(root)
    predictions = root / "synthetic" / "predictions.parquet"
    predictions.write_bytes(predictions.read_bytes()[: predictions.stat().st_size // 2])
    argv = ["report", "--results", str(root), "--out", str(out), "--baselines", str(tmp_path / "absent.csv")]
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("could not use synthetic/predictions.parquet: cannot read")
    assert err[-1].startswith("sharpmaml report: error: 1 input file(s) could not be used")
    top = out.read_text(encoding="utf-8").split("<h1>")[0]  # the page is written, with the banner first
    assert 'class="unusable-banner"' in top and "synthetic/predictions.parquet: cannot read" in top


# ----- processes killed or racing while they write ---------------------------------------------


def python(code: str, *args: object, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A Python subprocess running ``code`` (or ``-m module`` when code starts with '-m ') from
    this checkout, one intra-op thread."""
    program = code.split() if code.startswith("-m ") else ["-c", code]
    environ = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, *program, *map(str, args)],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 300) -> None:
    """Until ``path`` exists; fails with the process's output if it ends first."""
    started = time.monotonic()
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() - started < timeout, f"{path} never appeared"
        time.sleep(0.01)


HALF_WRITTEN = """
import sys, time
from pathlib import Path
from infra.store import atomic_writer
path, midway = Path(sys.argv[1]), Path(sys.argv[2])
with atomic_writer(path) as fh:
    fh.write(b"new" * 100_000)
    fh.flush()
    midway.touch()
    time.sleep(120)  # killed here
"""


def test_kill_9_in_the_middle_of_a_write_leaves_the_old_file_whole(tmp_path) -> None:
    target, midway = tmp_path / "table.parquet", tmp_path / "midway"
    atomic_write_bytes(target, b"old content")
    writer = python(HALF_WRITTEN, target, midway)
    wait_for(midway, writer)
    partial = list(tmp_path.glob(".table.parquet.*.tmp"))
    assert len(partial) == 1 and partial[0].stat().st_size == 300_000  # the new bytes were on their way
    writer.kill()
    writer.communicate(timeout=30)
    assert writer.returncode == -signal.SIGKILL
    assert target.read_bytes() == b"old content"
    atomic_write_bytes(target, b"rewritten")  # the leftover temporary file is in nobody's way
    assert target.read_bytes() == b"rewritten"


RACING_WRITER = """
import sys, time
from pathlib import Path
from infra.store import atomic_write_bytes
from infra.workers import run_in_workers
path, go, byte, times = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
while not go.exists():
    time.sleep(0.005)
for _ in range(times):
    atomic_write_bytes(path, bytes([byte]) * 200_000)
"""


def test_two_concurrent_writers_leave_one_whole_file_at_every_moment(tmp_path) -> None:
    target, go = tmp_path / "cells.npz", tmp_path / "go"
    versions = {bytes([b]) * 200_000 for b in (1, 2)}
    atomic_write_bytes(target, bytes([1]) * 200_000)
    writers = [python(RACING_WRITER, target, go, b, 25) for b in (1, 2)]
    go.touch()
    reads = 0
    while any(w.poll() is None for w in writers):
        assert target.read_bytes() in versions  # never a mix, never a short file
        reads += 1
    assert [w.communicate()[1] for w in writers] == ["", ""]
    assert [w.returncode for w in writers] == [0, 0] and reads > 0
    assert target.read_bytes() in versions
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells.npz", "go"]  # no temporary left


# ----- SIGINT and SIGTERM during a real training process -----------------------------------------


@pytest.fixture(scope="module")
def training(tmp_path_factory):
    """Tiny Omniglot-format data, a dataset cache outside the checkout, the ``tiny`` preset, and
    the uninterrupted run every interrupted one is compared with."""
    from infra.threads import cpu_threads
    from tests.fixtures_datasets import write_small_image_omniglot
    from tests.paused_train import TINY_TRAIN, register_tiny

    folder = tmp_path_factory.mktemp("training")
    data = write_small_image_omniglot(folder / "data", drawers=TINY_TRAIN.shots + TINY_TRAIN.queries)
    flags = ["--data-root", str(data), "--device", "cpu", "--no-progress"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SHARPMAML_CACHE", str(folder / "cache"))
        register_tiny()
        whole = folder / "whole"
        command = ["train", "--preset", "tiny", "--method", "sharp_both", *flags]
        with cpu_threads(1):
            assert main([*command, "--out", str(whole)]) == EXIT_OK
        yield {"command": command, "flags": flags, "whole": whole, "cache": str(folder / "cache")}
        from realdata.presets import PRESETS

        PRESETS.pop(TINY_TRAIN.name)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_training_keeps_the_iteration_and_resumes_to_the_uninterrupted_state(
    signum, training, tmp_path
) -> None:
    """The signal lands in the middle of an iteration (after its update, before it is counted):
    the process finishes the iteration, writes last.pt, exits 2 with the resume command; that
    command continues to the uninterrupted run's final state, bit for bit."""
    from infra.threads import cpu_threads
    from realdata.checkpoint import load_checkpoint
    from realdata.train import LAST
    from tests.paused_train import PAUSE_AFTER
    from tests.training_checks import assert_same_training_state

    run, paused, go = tmp_path / "run", tmp_path / "paused", tmp_path / "go"
    name = signal.Signals(signum).name
    process = python(
        "-m tests.paused_train",
        paused,
        go,
        *training["command"],
        "--out",
        run,
        env={"SHARPMAML_CACHE": training["cache"]},
    )
    wait_for(paused, process)
    process.send_signal(signum)
    go.touch()
    _, err = process.communicate(timeout=300)
    assert process.returncode == EXIT_INTERRUPTED, err
    lines = err.strip().splitlines()
    assert f"{name} received: saving a checkpoint after this iteration" in err
    prefix = f"sharpmaml train: interrupted ({name}); {run / LAST} holds the last iteration; continue with: "
    assert lines[-1].startswith(prefix), err
    assert load_checkpoint(run / LAST)["iteration"] == PAUSE_AFTER + 1
    resume = shlex.split(lines[-1].removeprefix(prefix))
    assert resume[:2] == ["sharpmaml", "train"] and "--resume" in resume
    with cpu_threads(1):
        assert main([*resume[1:], *training["flags"]]) == EXIT_OK
    assert_same_training_state(training["whole"], run, process_rng=False)  # "whole" ran in this process
