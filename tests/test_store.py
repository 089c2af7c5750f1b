"""The results store: atomic writes, formats, permissions."""

from __future__ import annotations

import os
import stat

import pandas as pd
import pytest
import torch

from infra.store import StoreError, atomic_write_bytes, parse_table, read_table, write_table
from realdata.datasets.cache import ClassImages, load_splits, save_splits


def test_tables_round_trip_in_both_formats(tmp_path) -> None:
    frame = pd.DataFrame({"id": ["a", "b"], "value": [1.5, -2.0]})
    for suffix in (".parquet", ".csv"):
        path = write_table(frame, tmp_path / f"t{suffix}")
        pd.testing.assert_frame_equal(read_table(path), frame)
    with pytest.raises(StoreError, match=r"\.json: unsupported table format; expected \.parquet or \.csv"):
        write_table(frame, tmp_path / "t.json")


def test_atomic_write_leaves_no_temporary_and_honours_the_umask(tmp_path) -> None:
    old = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "sub" / "report.html", b"<html></html>")
    finally:
        os.umask(old)
    written = tmp_path / "sub" / "report.html"
    assert written.read_bytes() == b"<html></html>"
    assert stat.S_IMODE(written.stat().st_mode) == 0o640
    assert [p.name for p in written.parent.iterdir()] == ["report.html"]


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch) -> None:
    target = tmp_path / "keep.csv"
    target.write_bytes(b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.csv"]


def test_one_suffix_based_reader_for_every_table_format(tmp_path) -> None:
    doc = b'{"device": "cpu", "rows": [{"case": "a", "ms": 1.5}, {"case": "b", "ms": 2.0}]}'
    (tmp_path / "speed.json").write_bytes(doc)
    expected = pd.DataFrame({"device": ["cpu", "cpu"], "case": ["a", "b"], "ms": [1.5, 2.0]})
    pd.testing.assert_frame_equal(read_table(tmp_path / "speed.json"), expected)
    pd.testing.assert_frame_equal(parse_table(doc, ".json"), expected)
    with pytest.raises(
        StoreError, match=r"unsupported table format '\.txt'; expected one of \.parquet, \.csv"
    ):
        parse_table(b"a,b\n", ".txt")


def test_the_dataset_cache_is_written_by_the_store_and_honours_the_umask(tmp_path) -> None:
    split = ClassImages(torch.zeros(2, 3, 1, 4, 4, dtype=torch.uint8), ("x", "y"))
    old = os.umask(0o027)
    try:
        save_splits(tmp_path / "cache" / "omniglot-key.npz", {"train": split})
    finally:
        os.umask(old)
    written = tmp_path / "cache" / "omniglot-key.npz"
    assert stat.S_IMODE(written.stat().st_mode) == 0o640
    assert [p.name for p in written.parent.iterdir()] == ["omniglot-key.npz"]
    assert load_splits(written)["train"].class_ids == ("x", "y")
