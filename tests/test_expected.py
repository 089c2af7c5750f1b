"""Expected verdicts of the theory suites: the stored file, its validation, the comparison and the
deliberate update (synthetic/expected.py; docs/theory.md#expected-verdicts)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from infra.seeding import DEFAULT_SEED
from synthetic.expected import (
    CHANGED,
    DEFAULT_EXPECTED,
    FINDING,
    NEW,
    Expected,
    ExpectedError,
    compare,
    exit_code,
    load_expected,
    parse_expected,
    render_expected,
    summary,
    updated_rows,
    write_update,
)
from tests.doc_anchors import dangling_references

HEADER = "suite,scale,seed,id,expected,reason,section\n"
WHY = "explained"
DOC = "docs/theory.md#finding-flat-basin-not-reached"


def stored(*rows: tuple[str, str], seed: int = 7) -> list[Expected]:
    """Rows of the convergence suite, default scale, ``seed``: (id, expected verdict)."""
    return [
        Expected("convergence", "default", seed, i, v, *((WHY, DOC) if v == "FAIL" else ("", "")))
        for i, v in rows
    ]


def run(*rows: tuple[str, str]) -> pd.DataFrame:
    return pd.DataFrame({"id": [i for i, _ in rows], "verdict": [v for _, v in rows]})


def test_the_stored_file_covers_both_suites_and_explains_every_finding() -> None:
    rows = load_expected(DEFAULT_EXPECTED)
    configs = {r.config for r in rows}
    assert {("convergence", "default", DEFAULT_SEED), ("generalization", "default", DEFAULT_SEED)} <= configs
    fails = [r for r in rows if r.expected == "FAIL"]
    assert fails, "the default runs have known findings"
    for row in fails:
        assert len(row.reason) > 20, f"line {row.line}: {row.id} needs a reason"
        assert dangling_references(row.section) == [], f"line {row.line}: {row.section} is not a docs heading"
    assert DEFAULT_EXPECTED.read_text() == render_expected(rows), "the file is in its canonical form"


def test_outcomes_finding_fail_changed_new_and_missing() -> None:
    expected = stored(
        ("a", "PASS"), ("b", "FAIL"), ("c", "FAIL"), ("d", "PASS"), ("e", "N/A"), ("gone", "PASS")
    )
    result = compare(
        run(("a", "PASS"), ("b", "FAIL"), ("c", "PASS"), ("d", "FAIL"), ("e", "PASS"), ("n", "FAIL")),
        expected,
        "convergence",
        "default",
        7,
    )
    assert result.compared and not result.as_expected
    assert result.table["outcome"].tolist() == ["PASS", FINDING, CHANGED, "FAIL", CHANGED, NEW]
    assert result.table["verdict"].tolist() == ["PASS", "FAIL", "PASS", "FAIL", "PASS", "FAIL"]  # raw kept
    assert result.table["expected_section"].tolist()[:2] == ["", DOC]
    why = dict(line.split(": ", 1) for line in result.differences)
    assert set(why) == {"c", "d", "e", "n", "gone"}
    assert why["c"].startswith("CHANGED, expected FAIL") and "no longer holds" in why["c"]
    assert why["d"] == "FAIL, expected PASS"
    assert why["gone"].startswith("missing")
    assert exit_code(result) == 1
    lines = summary(result, Path("x.csv"))
    assert lines[0].startswith("5 verdicts differ") and any(
        line.strip().startswith("d: FAIL") for line in lines
    )


def test_as_expected_with_findings_exits_0_and_a_restricted_run_ignores_other_ids() -> None:
    expected = stored(("a", "PASS"), ("b", "FAIL"), ("other", "PASS"))
    full = compare(run(("a", "PASS"), ("b", "FAIL")), expected, "convergence", "default", 7, complete=False)
    assert full.as_expected and exit_code(full) == 0
    assert "1 known findings" in summary(full, Path("x.csv"))[0]
    assert exit_code(compare(run(("a", "PASS"), ("b", "FAIL")), expected, "convergence", "default", 7)) == 1


def test_another_seed_or_scale_is_shown_uncompared_and_says_so() -> None:
    expected = stored(("a", "PASS"), ("b", "FAIL"))
    for scale, seed in (("default", 8), ("quick", 7)):
        result = compare(run(("a", "PASS"), ("b", "FAIL")), expected, "convergence", scale, seed)
        assert not result.compared and result.differences == []
        assert result.table["outcome"].tolist() == ["PASS", "FAIL"]  # no FINDING it never stored
        assert result.table["expected"].isna().all()
        lines = summary(result, Path("x.csv"))
        assert "NOT compared" in lines[0] and "convergence default seed 7" in lines[0]
        assert lines[1] == "1 rows FAIL (exit 1): b"
        assert exit_code(result) == 1
    clean = compare(run(("a", "PASS")), expected, "generalization", "default", 7)
    assert not clean.compared and exit_code(clean) == 0


@pytest.mark.parametrize(
    "line, column, message",
    [
        ("convergence,default,7,a,MAYBE,,", "expected", "one of"),
        ("convergence,default,7,a,FAIL,,docs/theory.md#families", "reason", "why this FAIL"),
        ("convergence,default,7,a,FAIL,why,theory.md", "section", "docs/<file>.md#<anchor>"),
        ("convergence,default,7,a,PASS,why,", "reason", "only a FAIL is explained"),
        ("convergence,default,seven,a,PASS,,", "seed", "an integer"),
        ("convergence,default,-1,a,PASS,,", "seed", ">= 0"),
        ("theory,default,7,a,PASS,,", "suite", "one of"),
        ("convergence,default,7,,PASS,,", "id", "a value"),
        ("convergence,default,7,x,PASS,,\nconvergence,default,7,x,INFO,,", "id", "duplicate id; line 2"),
    ],
)
def test_invalid_rows_name_file_line_and_column(line: str, column: str, message: str) -> None:
    with pytest.raises(ExpectedError) as error:
        parse_expected(HEADER + line + "\n", Path("exp.csv"))
    text = str(error.value)
    assert text.startswith("exp.csv, line ") and f"column {column!r}" in text and message in text


def test_a_bad_header_and_a_missing_file_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(ExpectedError, match=r"line 1: unexpected header \(columns out of order\)"):
        parse_expected("scale,suite,seed,id,expected,reason,section\n", Path("exp.csv"))
    with pytest.raises(ExpectedError, match="expected verdicts file not found"):
        load_expected(tmp_path / "none.csv")


def test_update_keeps_reasons_carries_them_over_a_gained_segment_and_lists_the_unexplained() -> None:
    expected = stored(("b", "FAIL"), ("flat/alpha=1", "FAIL"), ("a", "PASS")) + stored(("z", "FAIL"), seed=8)
    rows, notes, unexplained = updated_rows(
        expected,
        run(("a", "FAIL"), ("b", "FAIL"), ("flat/E2/alpha=1", "FAIL"), ("c", "INFO")),
        "convergence",
        "default",
        7,
    )
    by_id = {(r.seed, r.id): r for r in rows}
    assert set(by_id) == {(8, "z"), (7, "a"), (7, "b"), (7, "flat/E2/alpha=1"), (7, "c")}
    assert (by_id[7, "b"].reason, by_id[7, "flat/E2/alpha=1"].section) == (WHY, DOC)
    assert notes == ["flat/E2/alpha=1: reason carried from flat/alpha=1"]
    assert unexplained == ["a"]
    assert by_id[8, "z"] == expected[-1]  # another configuration is left alone


def test_a_restricted_update_replaces_only_the_ids_it_ran(tmp_path: Path) -> None:
    expected = stored(("a", "PASS"), ("b", "FAIL"))
    rows, _, unexplained = updated_rows(
        expected, run(("a", "INFO")), "convergence", "default", 7, complete=False
    )
    assert unexplained == [] and {(r.id, r.expected) for r in rows} == {("a", "INFO"), ("b", "FAIL")}
    path = tmp_path / "exp.csv"
    path.write_text(render_expected(expected))
    diff = write_update(path, rows)
    assert "-convergence,default,7,a,PASS,," in diff and "+convergence,default,7,a,INFO,," in diff
    assert load_expected(path) == rows
    assert write_update(path, rows) == ""
