"""The results store: atomic writes, formats, permissions."""

from __future__ import annotations

import os
import stat

import pandas as pd
import pytest

from infra.store import StoreError, atomic_write_bytes, read_table, write_table


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
