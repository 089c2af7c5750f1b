"""The real-data outcome in the report's summary: the paired study's result when a study exists
(difference vs MAML with its paired 95% CI and verdict, the preset, seeds, iterations and inner
loop), else a plain 'no paired comparison yet' with the measured numbers and their seeds and
iterations."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

import pandas as pd

from infra.store import write_table
from reports.build import build_report
from reports.outcome import outcome_lines
from tests import report_fixtures as fx
from tests.test_report import parse


def paired_study() -> pd.DataFrame:
    """A study's paired table (the columns `sharpmaml study` writes), two inner loops."""
    rows = []
    for loop in ("same", "plain"):
        for method, lo, up, diff, ci, verdict, eqc, eqc_ci, eqc_verdict in (
            ("sharp_both", 0.05, 0.05, -2.34, 8.06, "NOT DETECTED", -21.39, 4.87, "WORSE"),
            ("fomaml", 0.0, 0.0, -10.81, 1.92, "WORSE", -29.86, 5.17, "WORSE"),
            ("sharp_low", 0.05, 0.0, 4.5 if loop == "plain" else 1.2, 1.0, "BETTER", -15.0, 3.0, "WORSE"),
        ):
            rows.append(
                {
                    "preset": "ci",
                    "method": method,
                    "alpha_low": lo,
                    "alpha_up": up,
                    "eval_inner_loop": loop,
                    "iterations": 50,
                    "accuracy": 60.0 + diff,
                    "maml_accuracy": 60.0,
                    "diff": diff,
                    "diff_ci95": ci,
                    "n_pairs": 4,
                    "mdd": 2.8 * ci,
                    "verdict": verdict,
                    "grad_ratio": 3.0,
                    "time_ratio": 1.9,
                    "maml_equal_compute_iterations": 150,
                    "eqc_diff": eqc,
                    "eqc_diff_ci95": eqc_ci,
                    "eqc_verdict": eqc_verdict,
                }
            )
    return pd.DataFrame(rows)


def summary_lines(root: Path, baselines: Path) -> list[str]:
    html = build_report(root, baselines).html
    summary = html[html.index('<section id="summary"') : html.index("</section>")]
    return [unescape(p) for p in re.findall(r"<p>(Real data[^<]*)</p>", summary)]


def test_the_paired_study_is_the_headline(tmp_path) -> None:
    root = tmp_path / "results"
    baselines = fx.write_store(root)
    write_table(paired_study(), root / "realdata" / "study" / "paired.parquet")
    (line,) = summary_lines(root, baselines)  # the study replaces the unpaired measured line
    assert line.startswith(
        "Real data, paired study (realdata/study; preset ci; 4 training seeds per setting; 50 iterations; "
        "test-time inner loop 'same'): accuracy minus MAML's on the same seeds, in points, 95% CI: "
    )
    # grouped by verdict, decided ones first; the first inner loop only (sharp_low +1.20, not +4.50)
    assert line.split(": ", 2)[2].startswith(
        "BETTER: Sharp-MAML_low (alpha 0.05) +1.20 ± 1.00; WORSE: FO-MAML -10.81 ± 1.92; "
        "NOT DETECTED: Sharp-MAML_both (alpha 0.05) -2.34 ± 8.06. "
    )
    assert "+4.50" not in line and "unpaired" not in line
    assert line.endswith(
        "At equal compute (MAML trained 150 iterations): WORSE: FO-MAML -29.86 ± 5.17, "
        "Sharp-MAML_low (alpha 0.05) -15.00 ± 3.00, Sharp-MAML_both (alpha 0.05) -21.39 ± 4.87."
    )


def test_a_sweeps_own_study_folder_is_read_too_and_each_file_is_listed_once(tmp_path) -> None:
    root = tmp_path / "results"
    baselines = fx.write_store(root)
    write_table(paired_study(), root / "realdata" / "sweeps" / "cpu" / "study" / "paired.parquet")
    write_table(paired_study(), root / "realdata" / "study" / "paired.parquet")
    lines = summary_lines(root, baselines)
    assert [line.split(";")[0] for line in lines] == [
        "Real data, paired study (realdata/study",
        "Real data, paired study (realdata/sweeps/cpu/study",
    ]
    files = parse(build_report(root, baselines).html).table("Results files read").column("file")
    assert files.count("realdata/study/paired.parquet") == 1  # read by two sections, listed once


def test_the_real_data_line_comes_before_the_findings_table(tmp_path) -> None:
    root = tmp_path / "results"
    html = build_report(root, fx.write_store(root)).html
    assert html.index("<p>Real data, omniglot 5-way 1-shot") < html.index(
        "<caption>Findings: one line per claim"
    )


def test_without_a_study_the_headline_says_so_with_seeds_and_iterations(tmp_path) -> None:
    root = tmp_path / "results"
    baselines = fx.write_store(root)
    (line,) = summary_lines(root, baselines)
    maml = [acc for m, _, _, _, acc, _ in fx.EVALUATIONS if m == "maml"]
    assert line.startswith("Real data, omniglot 5-way 1-shot (preset ci, test-time inner loop 'same'): ")
    assert "no paired comparison yet for Sharp-MAML_both (alpha 0.05) (fewer than 2 training seeds" in line
    assert f"MAML {sum(maml) / 2:.2f} ± " in line and "(2 seeds, 300 iterations)" in line
    assert "Sharp-MAML_both (alpha 0.05) 91.00 ± 0.80% (1 seed, 300 iterations)" in line
    assert "unpaired difference (CIs combined in quadrature): Sharp-MAML_both (alpha 0.05) +" in line


def test_measured_runs_sharing_seeds_give_a_paired_line() -> None:
    rows = [
        {
            "method": m,
            "alpha_low": a,
            "alpha_up": a,
            "accuracy": acc,
            "ci95": 1.0,
            "seeds": 3,
            "iterations": "80",
            "per_seed": dict(zip("012", per_seed)),
            "preset": "ci",
            "eval_inner_loop": "",
            "dataset": "omniglot",
            "ways": 5,
            "shots": 1,
        }
        for m, a, acc, per_seed in (
            ("maml", 0.0, 90.0, (90, 90.5, 89.5)),
            ("sharp_both", 0.05, 91.0, (91, 92, 90)),
        )
    ]
    (line,) = outcome_lines(pd.DataFrame(rows), {})
    assert line == (
        "Real data, omniglot 5-way 1-shot (preset ci): Sharp-MAML_both (alpha 0.05) minus MAML "
        "+1.00 ± 1.24 (paired over 3 seeds) points."
    )


def test_nothing_measured_says_what_to_run() -> None:
    assert outcome_lines(pd.DataFrame(), {}) == [
        "Real data: no measured accuracy and no paired study yet (sharpmaml sweep SPEC, then sharpmaml study DIR)."
    ]
