"""Fault injection: planted and broken files, read-only outputs, signals, kill -9, two writers.

Each case is small (tiny synthetic data, the ``ci`` preset shrunk to a few iterations) and uses
real subprocesses and signals where the behaviour depends on them.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from infra.cells import CellCache
from infra.codec import encode


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
