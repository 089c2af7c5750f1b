"""The exit-code contract (infra/errors.py) for every command, in cheap ways.

0 as expected / done, 1 differs from what is stored, 2 interrupted (one line, no traceback),
3 internal error (one line naming the stage, the traceback in a log file whose path is
printed), 4 usage error. A stage is made to raise by monkeypatching what the command calls;
nothing here trains or runs a suite for real.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

import infra.provenance
import realdata.baselines.measure
import realdata.evaluate
import realdata.train
import reports.build
import synthetic.generalization.suite
import synthetic.suites
from infra.cli import main
from infra.errors import EXIT_DIFFERS, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from realdata.baselines.format import Measured, render_baselines
from synthetic.expected import Expected, load_expected, render_expected
from synthetic.problems.base import FAMILIES
from tests.test_baselines import TOY_ROW, toy_patches


@pytest.fixture(autouse=True)
def logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "logs"
    monkeypatch.setenv("SHARPMAML_LOGS", str(folder))
    monkeypatch.delenv("CI", raising=False)
    return folder


def boom(*args: object, **kwargs: object) -> None:
    raise RuntimeError("planted bug")


def interrupt(*args: object, **kwargs: object) -> None:
    raise KeyboardInterrupt


def assert_internal(err: str, command: str, stage: str, logs: Path) -> None:
    """One line naming the stage and the error, and the log file holding the traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    match = re.fullmatch(
        rf"sharpmaml {command}: internal error in (.+): RuntimeError: planted bug \(traceback in (.+)\)",
        lines[0],
    )
    assert match, lines[0]
    assert match.group(1) == stage
    log = Path(match.group(2))
    assert log.parent == logs and "Traceback" in log.read_text() and "planted bug" in log.read_text()


def assert_interrupted(err: str, command: str, hint: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"sharpmaml {command}: interrupted (SIGINT); ") and hint in lines[0]


def assert_usage(err: str, command: str, text: str) -> None:
    assert err.startswith(f"sharpmaml {command}: error: ") and text in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["info"],
        ["convergence"],
        ["generalization"],
        ["train"],
        ["evaluate"],
        ["report"],
        ["baselines", "check"],
    ],
)
def test_every_help_states_the_contract(argv, capsys):
    assert main([*argv, "--help"]) == EXIT_OK
    text = " ".join(capsys.readouterr().out.split())
    assert "exit codes:" in text and "0 " in text and "4 usage error" in text


# ----- info -----------------------------------------------------------------------------------


def test_info(monkeypatch, capsys, logs):
    assert main(["info"]) == EXIT_OK
    assert "methods:" in capsys.readouterr().out
    assert main(["info", "--verbose"]) == EXIT_USAGE
    assert_usage(capsys.readouterr().err, "info", "unrecognized arguments: --verbose")
    monkeypatch.setattr(infra.provenance, "provenance", boom)
    assert main(["info"]) == EXIT_INTERNAL
    assert_internal(capsys.readouterr().err, "info", "info: provenance", logs)
    monkeypatch.setattr(infra.provenance, "provenance", interrupt)
    assert main(["info"]) == EXIT_INTERRUPTED
    assert_interrupted(capsys.readouterr().err, "info", "nothing was written")


# ----- the theory suites ------------------------------------------------------------------------

SUITES = {
    "convergence": (synthetic.suites, "run_convergence_suite"),
    "generalization": (synthetic.generalization.suite, "run_generalization_suite"),
}


def fake_suite(verdicts: dict[str, str]) -> Callable[..., pd.DataFrame]:
    """A suite that computes nothing and returns one row per (id, verdict)."""

    def suite(
        scale: str, out: Path, seed: int, fresh: bool, progress: bool, **selection: Any
    ) -> pd.DataFrame:
        rows = [
            {"id": i, "source": "derived here", "predicted": 1.0, "measured": 1.0, "ratio": 1.0, "verdict": v}
            for i, v in verdicts.items()
        ]
        return pd.DataFrame(rows).assign(seed=seed, scale=scale)

    return suite


def expected_file(tmp_path: Path, suite: str, rows: dict[str, str]) -> Path:
    path = tmp_path / "expected.csv"
    path.write_text(
        render_expected(
            Expected(
                suite,
                "default",
                5,
                i,
                v,
                *(("a known finding", "docs/theory.md#families") if v == "FAIL" else ()),
            )
            for i, v in rows.items()
        )
    )
    return path


@pytest.mark.parametrize("suite", SUITES)
def test_theory_suites_0_as_expected_1_differs_and_the_last_lines_say_why(
    suite, tmp_path, monkeypatch, capsys
):
    module, name = SUITES[suite]
    path = expected_file(tmp_path, suite, {"a": "PASS", "known": "FAIL", "b": "INFO"})
    argv = [suite, "--seed", "5", "--out", str(tmp_path / "out"), "--expected", str(path), "--no-progress"]
    monkeypatch.setattr(module, name, fake_suite({"a": "PASS", "known": "FAIL", "b": "INFO"}))
    assert main(argv) == EXIT_OK
    out = capsys.readouterr().out
    assert re.search(r"known .* FINDING", out) and "verdicts: FINDING 1, INFO 1, PASS 1" in out
    assert out.strip().splitlines()[-1].startswith("every verdict as expected")
    stored = pd.read_parquet(tmp_path / "out" / "predictions.parquet")
    assert stored.set_index("id")["outcome"].to_dict() == {"a": "PASS", "known": "FINDING", "b": "INFO"}
    assert stored.set_index("id")["verdict"]["known"] == "FAIL"  # the raw verdict is kept

    monkeypatch.setattr(module, name, fake_suite({"a": "FAIL", "known": "PASS", "b": "INFO"}))
    assert main(argv) == EXIT_DIFFERS
    last = capsys.readouterr().out.strip().splitlines()[-4:]
    assert last[0].startswith("2 verdicts differ")
    assert last[1].strip() == "a: FAIL, expected PASS"
    assert (
        last[2].strip().startswith("known: CHANGED, expected FAIL (a known finding, docs/theory.md#families)")
    )

    assert main([*argv[:2], "6", *argv[3:]]) == EXIT_DIFFERS  # another seed: uncompared, any FAIL counts
    last = capsys.readouterr().out.strip().splitlines()[-2:]
    assert "NOT compared" in last[0] and last[1] == "1 rows FAIL (exit 1): a"


@pytest.mark.parametrize("suite", SUITES)
def test_theory_suites_2_interrupted_keeps_cells_3_names_the_stage_4_usage(
    suite, tmp_path, monkeypatch, capsys, logs
):
    module, name = SUITES[suite]
    path = expected_file(tmp_path, suite, {"a": "PASS"})
    out = tmp_path / "out"
    argv = [suite, "--seed", "5", "--out", str(out), "--expected", str(path), "--no-progress"]
    monkeypatch.setattr(module, name, interrupt)
    assert main(argv) == EXIT_INTERRUPTED
    assert_interrupted(capsys.readouterr().err, suite, f"kept in {out}/cells; run the same command again")
    monkeypatch.setattr(module, name, boom)
    assert main(argv) == EXIT_INTERNAL
    assert_internal(capsys.readouterr().err, suite, f"{suite} suite (scale default, seed 5)", logs)

    monkeypatch.setattr(module, name, pytest.fail)  # no compute before a usage error
    assert main([*argv, "--seed", "-1"]) == EXIT_USAGE
    assert_usage(capsys.readouterr().err, suite, "seed (--seed): expected an integer >= 0, got -1")
    path.write_text(path.read_text() + f"{suite},default,5,x,MAYBE,,\n")
    assert main(argv) == EXIT_USAGE
    assert_usage(capsys.readouterr().err, suite, f"{path}, line 3, column 'expected': expected one of")
    monkeypatch.setenv("CI", "true")
    assert main([*argv, "--update-expected"]) == EXIT_USAGE
    assert_usage(capsys.readouterr().err, suite, "refusing to update expected verdicts where CI is set")
    assert main([suite, "--quick", "--full"]) == EXIT_USAGE


def test_a_family_that_raises_exits_3_naming_the_family(tmp_path, monkeypatch, capsys, logs):
    monkeypatch.setitem(FAMILIES, "Q1", boom)
    path = expected_file(tmp_path, "convergence", {"a": "PASS"})
    argv = [
        "convergence",
        "--out",
        str(tmp_path / "out"),
        "--no-progress",
        "--seed",
        "5",
        "--expected",
        str(path),
    ]
    assert main(argv) == EXIT_INTERNAL
    assert_internal(capsys.readouterr().err, "convergence", "family Q1 (build, seed 5)", logs)


def test_update_expected_prints_the_diff_keeps_reasons_and_refuses_an_unexplained_fail(
    tmp_path, monkeypatch, capsys
):
    path = expected_file(tmp_path, "convergence", {"a": "PASS", "known": "FAIL"})
    argv = [
        "convergence",
        "--seed",
        "5",
        "--out",
        str(tmp_path / "out"),
        "--expected",
        str(path),
        "--no-progress",
    ]
    monkeypatch.setattr(synthetic.suites, "run_convergence_suite", fake_suite({"a": "INFO", "known": "FAIL"}))
    assert main([*argv, "--update-expected"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "-convergence,default,5,a,PASS,," in out and "+convergence,default,5,a,INFO,," in out
    assert {(r.id, r.expected, r.reason) for r in load_expected(path)} == {
        ("a", "INFO", ""),
        ("known", "FAIL", "a known finding"),
    }
    assert main(argv) == EXIT_OK
    capsys.readouterr()

    before = path.read_text()
    monkeypatch.setattr(synthetic.suites, "run_convergence_suite", fake_suite({"a": "FAIL", "known": "FAIL"}))
    assert main([*argv, "--update-expected"]) == EXIT_DIFFERS
    out = capsys.readouterr().out
    assert (
        "1 FAIL rows have no reason yet" in out
        and "convergence,default,5,a,FAIL,WHY,docs/theory.md#<section>" in out
    )
    assert path.read_text() == before


# ----- train and evaluate -------------------------------------------------------------------------

TRAIN = ["train", "--preset", "ci", "--method", "maml", "--iterations", "2", "--no-progress"]


def fake_train(status: str) -> Callable[..., SimpleNamespace]:
    def train(config, out, **kwargs):
        return SimpleNamespace(
            status=status,
            iteration=2,
            elapsed_s=0.0,
            best_val_accuracy=0.5,
            best_iteration=2,
            run_dir=Path("runs/x"),
            best_checkpoint=Path("runs/x/best.pt"),
            checkpoint_iteration=2,
            last_checkpoint=Path("runs/x/last.pt"),
        )

    return train


def test_train(monkeypatch, capsys, logs):
    monkeypatch.setattr(realdata.train, "train", fake_train("done"))
    assert main(TRAIN) == EXIT_OK
    assert "evaluate with: sharpmaml evaluate runs/x/best.pt" in capsys.readouterr().out
    monkeypatch.setattr(realdata.train, "train", fake_train("diverged"))
    assert main(TRAIN) == EXIT_DIFFERS
    assert "the meta-loss became non-finite" in capsys.readouterr().out.strip().splitlines()[-1]
    monkeypatch.setattr(realdata.train, "train", boom)
    assert main(TRAIN) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert_internal(err, "train", re.search(r"in (train run \S+):", err).group(1), logs)
    assert "train run ci-maml" in err
    monkeypatch.setattr(realdata.train, "train", interrupt)
    assert main(TRAIN) == EXIT_INTERRUPTED
    assert_interrupted(capsys.readouterr().err, "train", "no checkpoint was written yet")
    monkeypatch.setattr(realdata.train, "train", pytest.fail)
    assert main([*TRAIN, "--alpha-up", "0.1"]) == EXIT_USAGE
    assert_usage(capsys.readouterr().err, "train", "alpha_up (--alpha-up)")


def test_evaluate(tmp_path, monkeypatch, capsys, logs):
    checkpoint, table = tmp_path / "best.pt", tmp_path / "evaluations.csv"
    argv = ["evaluate", str(checkpoint), "--out", str(table)]

    def fake_evaluate(*args, show, **kwargs):
        show({})
        return SimpleNamespace(row={})

    monkeypatch.setattr(realdata.evaluate, "evaluate_checkpoint", fake_evaluate)
    monkeypatch.setattr(realdata.evaluate, "format_row", lambda row: "accuracy 50.00 %")
    assert main(argv) == EXIT_OK
    assert capsys.readouterr().out.startswith("accuracy 50.00 %")
    monkeypatch.setattr(realdata.evaluate, "evaluate_checkpoint", boom)
    assert main(argv) == EXIT_INTERNAL
    assert_internal(capsys.readouterr().err, "evaluate", f"evaluate {checkpoint}", logs)
    monkeypatch.setattr(realdata.evaluate, "evaluate_checkpoint", interrupt)
    assert main(argv) == EXIT_INTERRUPTED
    assert_interrupted(capsys.readouterr().err, "evaluate", f"no row appended to {table}")
    monkeypatch.setattr(realdata.evaluate, "evaluate_checkpoint", pytest.fail)
    assert main([*argv, "--episodes", "many"]) == EXIT_USAGE
    assert_usage(capsys.readouterr().err, "evaluate", "--episodes: invalid int value")


def test_evaluate_reports_a_missing_checkpoint_as_usage(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "none.pt"), "--out", str(tmp_path / "e.csv")]) == EXIT_USAGE
    assert_usage(capsys.readouterr().err, "evaluate", str(tmp_path / "none.pt"))


# ----- report -------------------------------------------------------------------------------------


def test_report(tmp_path, monkeypatch, capsys, logs):
    results, html = tmp_path / "results", tmp_path / "report.html"
    results.mkdir()
    argv = [
        "report",
        "--results",
        str(results),
        "--out",
        str(html),
        "--baselines",
        str(tmp_path / "none.csv"),
    ]
    monkeypatch.setattr(
        reports.build, "build_report", lambda results, baselines: reports.build.Report("<html></html>", [])
    )
    assert main(argv) == EXIT_OK and html.read_text() == "<html></html>"
    monkeypatch.setattr(reports.build, "build_report", boom)
    assert main(argv) == EXIT_INTERNAL
    assert_internal(capsys.readouterr().err, "report", f"report from {results}", logs)
    monkeypatch.setattr(reports.build, "build_report", interrupt)
    assert main(argv) == EXIT_INTERRUPTED
    assert_interrupted(capsys.readouterr().err, "report", "no report written")
    assert main(["report", "--results", str(html)]) == EXIT_USAGE
    assert_usage(capsys.readouterr().err, "report", "expected a results folder")


# ----- baselines ----------------------------------------------------------------------------------


def fake_measure(accuracy: float) -> Callable[..., None]:
    """measure_rows giving every row ``accuracy`` (no training)."""

    def measure_rows(specs, data_root, *, jobs, on_row, spread: bool = False, action: str = "") -> None:
        for i in range(len(specs)):
            on_row(i, Measured(accuracy, 1.0, 0.5, (0, 1), (0, 1, 2), 600, "hash", "cpu", 0.0))

    return measure_rows


real_measure_rows = realdata.baselines.measure.measure_rows


@pytest.fixture
def toy_baselines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A baselines file with the toy row stored at 50 % (measure faked: no training)."""
    path = tmp_path / "baselines.csv"
    path.write_text(render_baselines([]))
    with toy_patches():
        monkeypatch.setattr(realdata.baselines.measure, "measure_rows", fake_measure(50.0))
        assert main(["baselines", "update", "--scale", "toy", "--baselines", str(path)]) == EXIT_OK
        yield path


def test_baselines(toy_baselines, tmp_path, monkeypatch, capsys, logs):
    argv = [
        "baselines",
        "check",
        "--rows",
        TOY_ROW,
        "--baselines",
        str(toy_baselines),
        "--out",
        str(tmp_path / "c.csv"),
    ]
    assert main(argv) == EXIT_OK
    monkeypatch.setattr(realdata.baselines.measure, "measure_rows", fake_measure(40.0))
    assert main(argv) == EXIT_DIFFERS
    assert f"{TOY_ROW}: FAIL" in capsys.readouterr().out
    monkeypatch.setattr(realdata.baselines.measure, "measure_rows", real_measure_rows)
    monkeypatch.setattr(realdata.baselines.measure, "run_seed", boom)  # raised in a (forked) worker
    assert main(argv) == EXIT_INTERNAL
    assert_internal(capsys.readouterr().err, "baselines", f"baselines check, row {TOY_ROW}", logs)
    monkeypatch.setattr(realdata.baselines.measure, "measure_rows", interrupt)
    assert main(argv) == EXIT_INTERRUPTED
    assert_interrupted(capsys.readouterr().err, "baselines", f"no gate table written to {tmp_path / 'c.csv'}")
    before = toy_baselines.read_text()
    assert (
        main(["baselines", "update", "--scale", "toy", "--baselines", str(toy_baselines)]) == EXIT_INTERRUPTED
    )
    assert_interrupted(capsys.readouterr().err, "baselines", f"{toy_baselines} left as it is")
    assert toy_baselines.read_text() == before
    assert main([*argv, "--rows", "toy:nothing"]) == EXIT_USAGE
    assert main(["baselines", "show", "--baselines", str(tmp_path / "none.csv")]) == EXIT_USAGE
    assert_usage(capsys.readouterr().err.splitlines()[-1], "baselines", "baselines file not found")
