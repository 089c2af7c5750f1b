"""Stored values (infra.codec): exact round trips of what the suites' cells return, and refusal
of anything that is not such a value (never unpickled)."""

from __future__ import annotations

import dataclasses
import io
import math
import pickle

import numpy as np
import pytest
import torch

import synthetic.problems  # noqa: F401 - registers the families
from infra.codec import STRUCTURE, UnreadableValue, decode, encode, stored_value
from synthetic.checks.common import filled, lanes
from synthetic.methods import method_config
from synthetic.problems.base import build_problem
from synthetic.runs import LaneResults, run_lanes


def same(a, b) -> bool:
    """Equal in type and bits, recursively (NaN equals NaN, -0.0 differs from 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray | np.generic):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, float):
        return np.float64(a).tobytes() == np.float64(b).tobytes()
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    return a == b


@stored_value
@dataclasses.dataclass(frozen=True)
class Pair:
    left: np.ndarray
    right: tuple[float, ...]


@dataclasses.dataclass
class Unregistered:
    x: int


def test_every_supported_kind_round_trips_bit_exactly() -> None:
    rng = np.random.default_rng(0)
    value = {
        "none": None,
        "flags": [True, False],
        "ints": [0, -3, 2**70],
        "floats": [0.1, -0.0, math.nan, math.inf, -math.inf, 5e-324, 1.0],
        "text": "ü-ñ/∂",
        "tuple": (1, "a", 2.5),
        "float64": rng.standard_normal((3, 4)),
        "float32": rng.standard_normal(5).astype(np.float32),
        "ints64": np.arange(6, dtype=np.int64).reshape(2, 3),
        "bools": np.array([True, False, True]),
        "strings": np.array(["flat", "sharp"]),
        "zero_d": np.array(2.5),
        "scalars": [np.float64(math.nan), np.int32(7), np.bool_(True)],
        "special": np.array([math.nan, -0.0, math.inf, 5e-324]),
        "noncontiguous": rng.standard_normal((4, 4))[:, ::2],
        "dataclass": Pair(np.array([1.0, 2.0]), (0.5, -0.0)),
        "nested": {"rows": [{"M": 5, "risk": 0.25, "status": "ok"}], "empty": [], "d": {}},
    }
    assert same(decode(encode(value)), value)
    assert not same(decode(encode({"x": 0.0})), {"x": -0.0})  # the comparison can fail


def test_a_real_rate_cell_round_trips_bit_exactly() -> None:
    problem = build_problem("Q1", seed=0)
    result = run_lanes(
        problem,
        method_config(problem, "sharp_up"),
        lanes([0.01, 0.02, 1e3]),  # the last lane diverges: NaN curve entries, diverged True
        filled(3, 0.0),
        lanes([0.0, 0.1, 0.1]),
        np.array([4, 8, 8]),
        2,
        torch.Generator().manual_seed(0),
    )
    assert isinstance(result, LaneResults) and result.diverged.any()
    back = decode(encode(result))
    assert isinstance(back, LaneResults) and same(back, result)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.array([{"a": 1}], dtype=object), "dtype object"),
        (Unregistered(1), "register the dataclass"),
        ({1: "x"}, "keys must be str"),
        (torch.zeros(2), "type Tensor"),
        ({1.5, 2.5}, "type set"),
    ],
)
def test_values_that_would_need_pickle_are_refused_when_written(value, message) -> None:
    with pytest.raises(TypeError, match=message):
        encode(value)


def rewritten(data: bytes, old: str, new: str) -> bytes:
    """``data`` with ``old`` replaced by ``new`` in its structure document (a valid archive)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    text = arrays[STRUCTURE].tobytes().decode()
    assert old in text
    arrays[STRUCTURE] = np.frombuffer(text.replace(old, new).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "data",
    [
        pickle.dumps([1.0, {"a": 2}]),  # harmless, and would load fine if unpickled
        encode({"x": np.arange(1000.0)})[:300],
        b"",
        rewritten(encode([1, 2]), "sharpmaml-stored-value", "other-format"),
        rewritten(encode([1, 2]), '"version": 1', '"version": 9'),
        rewritten(encode({"x": np.zeros(2)}), '"a0"', '"a7"'),
    ],
    ids=["pickle", "truncated", "empty", "foreign-format", "future-version", "missing-array"],
)
def test_anything_else_is_unreadable_never_unpickled(data) -> None:
    with pytest.raises(UnreadableValue):
        decode(data)


def test_a_dataclass_name_outside_the_registry_is_refused() -> None:
    forged = rewritten(encode(Pair(np.zeros(1), ())), "test_codec.Pair", "os.system")
    with pytest.raises(UnreadableValue, match="not a registered stored type"):
        decode(forged)
