"""The findings summary's reasons: an N/A line names what its families lack, a line mixing judged
and N/A rows says both, several reasons of one finding shorten to the first, and the self-check
line is named as such."""

from __future__ import annotations

import pandas as pd

from infra.verdicts import FAIL, NOT_APPLICABLE, PASS
from reports.build import SELF_CHECK_STATEMENT, build_report
from reports.findings import NOT_APPLICABLE_ANCHOR, prediction_findings
from tests import report_fixtures as fx
from tests.test_report import parse

QUADRATIC = "a quadratic F's exact Hessian, minimiser and top eigenvector (QuadraticObjective)"
SECTION = "docs/theory.md#finding-rate-slope-pre-asymptotic-on-l2-and-h1"
THEORY = "theory-finding-rate-slope-pre-asymptotic-on-l2-and-h1"  # its anchor in the report
R1_NA = "R1 needs a globally L_bar-smooth objective; the lower-perturbed objective is not. The slope check is kept."


def row(id_: str, verdict: str, details: str = "", **more) -> dict:
    return {
        "id": id_,
        "prediction": f"statement of {id_.split('/')[0]}",
        "verdict": verdict,
        "details": details,
        **more,
    }


def findings(rows: list[dict]) -> dict[str, object]:
    lines = prediction_findings(
        pd.DataFrame(rows),
        "synthetic",
        lambda i: "a",
        {THEORY: "Finding F", NOT_APPLICABLE_ANCHOR: "Verdict N/A"},
    )
    return {f.claim: f for f in lines}


def test_an_all_na_line_names_the_capability_its_families_lack() -> None:
    lines = findings(
        [
            row(
                f"bias/{family}",
                NOT_APPLICABLE,
                f"needs quadratic ({QUADRATIC}), which {family} does not provide",
            )
            for family in ("E2", "H1", "L2")
        ]
        + [
            row(
                "rate/E2",
                NOT_APPLICABLE,
                "needs sigma2 (the constant sigma2 in closed form), which E2 does not provide",
            )
        ]
    )
    assert lines["bias"].reason == f"not applicable: E2, H1, L2 lack quadratic ({QUADRATIC})"
    assert lines["rate"].reason == "not applicable: E2 lacks sigma2 (the constant sigma2 in closed form)"
    assert lines["bias"].statement == "the bias check on a family it cannot run on"
    assert lines["bias"].settings == "E2, H1, L2" and lines["bias"].word == NOT_APPLICABLE
    assert lines["bias"].theory == "theory-verdict-na"  # the statement of what N/A means


def test_a_line_with_judged_and_na_rows_gives_both_and_the_judged_statement() -> None:
    lines = findings(
        [
            row("rate.bound/maml/B8", PASS, predicted=0.3, measured=0.07),
            row("rate.bound/sharp_low:sqrt/B8", NOT_APPLICABLE, R1_NA, prediction="check on family"),
            row("rate.bound/sharp_both:sqrt/B8", NOT_APPLICABLE, R1_NA, prediction="check on family"),
        ]
    )
    line = lines["rate.bound"]
    assert line.word == PASS and line.statement == "statement of rate.bound"  # not the N/A rows' text
    assert line.reason == (
        "measured 0.07, predicted 0.3; 2 of 3 rows N/A: R1 needs a globally L_bar-smooth objective; "
        "the lower-perturbed objective is not."
    )


def test_several_reasons_of_one_finding_shorten_to_the_first() -> None:
    reasons = [
        "horizon too short on H1 (slope -0.06); R1 holds",
        "horizon too short on L2 (slope -0.19); R1 holds",
    ]
    lines = findings(
        [
            row(
                f"rate.slope/{f}/maml",
                FAIL,
                outcome="FINDING",
                expected_reason=r,
                expected_section=SECTION,
            )
            for f, r in zip(("H1", "L2"), reasons)
        ]
    )
    (line,) = lines.values()
    assert line.reason == "horizon too short on H1 (slope -0.06) (and 1 related reason: see the statement)"
    assert line.statement == "Finding F" and line.theory == THEORY


def test_the_self_check_line_is_named_as_such(tmp_path) -> None:
    root = tmp_path / "results"
    baselines = fx.write_store(root, generalization=False, realdata=False)
    records = parse(build_report(root, baselines).html).table("Findings").records()
    smooth = next(r for r in records if r["table"] == "smooth")
    assert smooth["claim"] == SELF_CHECK_STATEMENT
