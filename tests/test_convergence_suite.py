"""The convergence suite end to end on the quick grid, theory formulas, and its CLI contract."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from infra.cli import main
from infra.errors import EXIT_USAGE
from infra.verdicts import FAIL, Prediction
from synthetic import theory
from synthetic.suites import CONVERGENCE_GRIDS


def test_r1_r2_r3_against_hand_computed_values() -> None:
    # R1: 4*1/(0.1*100) + 2*0.25*0.01 + 4*0.5*0.1*(2/4 + 0.25*0.01) = 0.4 + 0.005 + 0.1005
    assert theory.r1_bound(1.0, 0.1, 100, 0.5, 0.1, 2.0, 4) == pytest.approx(0.5055, rel=1e-12)
    with pytest.raises(ValueError, match="eta"):
        theory.r1_bound(1.0, 1.0, 100, 0.5, 0.1, 2.0, 4)
    # R2: 1 * 0.25 * 0.1 / (2 - 0.5)
    assert theory.r2_cycle_gradient_norm(1.0, 0.5, 0.1) == pytest.approx(0.025 / 1.5, rel=1e-12)
    # R3: 2 * 0.3 * 0.1 * 1 * 1.3
    assert theory.r3_bias_bound(0.3, 0.1, 1.0) == pytest.approx(0.078, rel=1e-12)
    assert theory.loglog_slope([1, 10, 100], [1, 0.1, 0.01]) == pytest.approx(-1.0)
    assert theory.rate_radius(10000, "quarter") == pytest.approx(0.05)
    assert theory.rate_step_size(100, 0.5) == pytest.approx(0.05)
    assert math.isnan(
        Prediction(
            id="x", prediction="", source="", predicted=None, measured=1.0, tolerance="", verdict="N/A"
        ).ratio
        or math.nan
    )


def test_bootstrap_slope_ci_is_the_resample_by_resample_fit_in_one_pass() -> None:
    """The vectorised bootstrap draws the same resamples as one draw per resample and fits each
    by least squares (np.polyfit), leaving out resamples with a non-positive mean."""
    x = np.array([1.0, 3.0, 10.0, 30.0])
    rows = np.random.default_rng(0).normal(0.4, 1.0, (7, 4))  # some resample means <= 0
    stream = np.random.default_rng(11)
    slopes = []
    for _ in range(500):
        mean = rows[stream.integers(0, 7, 7)].mean(axis=0)
        if np.all(mean > 0):
            slopes.append(np.polyfit(np.log(x), np.log(mean), 1)[0])
    assert 0 < len(slopes) < 500
    expected = np.quantile(slopes, [0.025, 0.975])
    got = theory.bootstrap_slope_ci(x, rows, np.random.default_rng(11), n_boot=500)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    power_law = np.array([[1.0], [2.0], [5.0]]) * x**-0.5
    np.testing.assert_allclose(theory.bootstrap_slope_ci(x, power_law, np.random.default_rng(1)), -0.5)
    assert all(math.isnan(v) for v in theory.bootstrap_slope_ci(x, -power_law, np.random.default_rng(1)))
    np.testing.assert_allclose(
        theory.loglog_slopes(x, rows[:3] ** 2), [np.polyfit(np.log(x), np.log(r**2), 1)[0] for r in rows[:3]]
    )


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("conv")
    families = ["--family", "Q1", "--family", "E2", "--family", "H1"]
    code = main(
        [
            "convergence",
            "--quick",
            "--out",
            str(out),
            "--seed",
            "3",
            "--no-progress",
            "--jobs",
            "2",
            *families,
        ]
    )
    return code, out


@pytest.mark.slow
def test_quick_suite_end_to_end(quick_run, capsys) -> None:
    code, out = quick_run
    predictions = pd.read_parquet(out / "predictions.parquet")
    assert code == (1 if (predictions["verdict"] == FAIL).any() else 0)
    assert {
        "rate.bound/Q1/maml/B8",
        "floor/Q1/eta=4/alpha=0.1",
        "bias.shift_slope/Q1",
        "fo.floor/Q1/deterministic",
        "rate.slope/H1/maml/B8",  # the new family gets the rate rows without any list naming it
        "rate.bound/H1/sharp_up:sqrt/B8",
    } <= set(predictions["id"])
    floor = predictions.set_index("id").loc["floor/Q1/eta=4/alpha=0.1"]
    assert floor["verdict"] == "PASS" and abs(floor["ratio"] - 1) < 1e-6
    runs = pd.read_parquet(out / "runs.parquet")
    assert {"git_sha", "versions", "device", "seed", "config_hash", "status"} <= set(runs.columns)
    rate_runs = runs[runs["check"] == "rate"]
    grid = CONVERGENCE_GRIDS["quick"].rate
    for family in ("Q1", "H1"):  # seeds x T x (maml, fo, 3 sharp x 2 schedules), one run per B
        of_family = rate_runs[rate_runs["family"] == family]
        assert len(of_family) == grid.n_seeds * len(grid.horizons) * (2 + 3 * 2)
        assert sorted(of_family["T"].unique()) == list(grid.horizons) and of_family["run_id"].nunique() == 1
    assert set(rate_runs["status"]) == {"ok"}
    assert pd.read_parquet(out / "curves.parquet")["grad_norm2"].notna().any()


@pytest.mark.slow
def test_flat_findings_on_e2(quick_run) -> None:
    """E2: the robust minimiser switches basins near 0.10, one-step Sharp-MAML_up does not
    follow it (FAIL rows are findings) and stalls at theta_sharp + alpha, off stationarity."""
    _, out = quick_run
    rows = pd.read_parquet(out / "predictions.parquet").set_index("id")
    switch = rows.loc["flat.switch_radius/E2"]
    assert switch["verdict"] == "PASS" and 0.07 <= switch["measured"] <= 0.13
    assert rows.loc["flat.follows_robust/E2/alpha=0.05", "verdict"] == "PASS"
    assert rows.loc["flat.follows_robust/E2/alpha=0.3", "verdict"] == FAIL
    assert rows.loc["flat.follows_robust/E2/alpha=0.3", "measured"] == 0.0
    stall = rows.loc["flat.stall/E2/alpha=0.3"]
    assert stall["verdict"] == "PASS" and abs(stall["measured"] - stall["predicted"]) < 1e-6
    constants = pd.read_parquet(out / "constants.parquet")
    theta_sharp = constants.query("family == 'E2' and constant == 'theta_sharp'")["value"].item()
    assert stall["predicted"] == pytest.approx(theta_sharp + 0.3, abs=1e-12)
    runs = pd.read_parquet(out / "runs.parquet").query("check == 'flat' and alpha == 0.3")
    assert (runs["grad_norm2_end"] > 1e-6).all() and (runs["curvature_end"] < 0).all()


@pytest.mark.slow
def test_rerun_is_bit_identical_and_resumes_from_cells(quick_run, tmp_path) -> None:
    _, out = quick_run
    first = pd.read_parquet(out / "runs.parquet")
    families = ["--family", "Q1", "--family", "E2", "--family", "H1"]
    argv = ["convergence", "--quick", "--out", str(tmp_path), "--seed", "3", "--no-progress", "--fresh"]
    main([*argv, "--jobs", "1", *families])  # one process: the same numbers as two
    second = pd.read_parquet(tmp_path / "runs.parquet")
    numeric = ["grad_norm2_avg", "grad_norm2_min", "final_grad_norm", "shift", "gap2", "z_end"]
    pd.testing.assert_frame_equal(first[numeric], second[numeric], check_exact=True)
    columns = ["id", "predicted", "measured", "verdict", "details"]
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "predictions.parquet")[columns],
        pd.read_parquet(tmp_path / "predictions.parquet")[columns],
        check_exact=True,
    )


@pytest.mark.slow
def test_checks_a_family_cannot_run_are_one_na_row_naming_what_it_lacks(quick_run) -> None:
    _, out = quick_run
    rows = pd.read_parquet(out / "predictions.parquet").set_index("id")
    na = rows[rows["verdict"] == "N/A"]
    assert "quadratic" in na.loc["floor/H1", "details"] and "two_basins" in na.loc["flat/Q1", "details"]
    assert "sigma2" in na.loc["rate/E2", "details"] and "L_bar" not in na.loc["rate/E2", "details"]
    assert not any(i.startswith("rate.") and "/E2/" in i for i in rows.index)
    assert [i for i in na.index if i.startswith("floor/")] == ["floor/E2", "floor/H1"]


def test_a_wrong_prediction_fails_the_gate_naming_its_rows(monkeypatch, tmp_path, capsys) -> None:
    """A deliberately wrong R2 formula: its rows FAIL where the expected verdicts (stored for the
    quick run at the default seed) say PASS, so a run of Q1 alone exits 1 and its last lines name
    them; Q1's known findings stay FINDING."""
    from synthetic.checks import floor

    monkeypatch.setattr(
        floor, "r2_cycle_gradient_norm", lambda eta, l1, a: 1.1 * eta * l1**2 * a / (2 - eta * l1)
    )
    argv = ["convergence", "--quick", "--out", str(tmp_path), "--no-progress", "--family", "Q1"]
    code = main(argv)
    predictions = pd.read_parquet(tmp_path / "predictions.parquet").set_index("id")
    assert code == 1
    assert set(predictions.index.str.split("/").str[1]) == {"Q1"}
    wrong = predictions[predictions.index.str.startswith("floor/")]
    assert len(wrong) and (wrong["verdict"] == FAIL).all() and (wrong["outcome"] == FAIL).all()
    assert (predictions.loc[~predictions.index.str.startswith("floor/"), "outcome"] != FAIL).all()
    assert (predictions.loc[predictions["verdict"] == FAIL, "outcome"].drop(wrong.index) == "FINDING").all()
    out = capsys.readouterr().out.strip().splitlines()
    start = next(i for i, line in enumerate(out) if " verdicts differ from " in line)
    differ = [line.strip() for line in out[start + 1 : -1]]
    assert sorted(differ) == sorted(f"{i}: FAIL, expected PASS" for i in wrong.index)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seed", "-1"], "seed (--seed): expected an integer >= 0, got -1"),
        (["--quick", "--full"], "not allowed with"),
        (["--family", "Q9"], "--family: unknown family 'Q9'; expected one of ['E2', 'H1', 'L2', 'Q1']"),
        (["--jobs", "0"], "jobs (--jobs): expected an integer >= 1, got 0"),
    ],
)
def test_bad_flags_exit_4(argv, message, capsys, tmp_path) -> None:
    assert main(["convergence", "--out", str(tmp_path / "r"), *argv]) == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_out_that_is_a_file_is_rejected(tmp_path, capsys) -> None:
    target = tmp_path / "file"
    target.write_text("keep me")
    assert main(["convergence", "--out", str(target)]) == EXIT_USAGE
    assert "--out: expected a folder" in capsys.readouterr().err
    assert target.read_text() == "keep me"


def test_prediction_rejects_unknown_verdict() -> None:
    with pytest.raises(ValueError, match="verdict"):
        Prediction(
            id="x", prediction="", source="", predicted=1.0, measured=1.0, tolerance="", verdict="MAYBE"
        )


def test_cell_cache_reuses_only_the_same_seed_and_code(tmp_path, monkeypatch) -> None:
    from infra import cells

    calls = []

    def compute(value):
        return lambda: calls.append(value) or value

    key = {"check": "x", "grid": [1, 2]}
    assert cells.CellCache(tmp_path, False, None, seed=1)("x/cell", key, compute(1)) == 1
    assert cells.CellCache(tmp_path, False, None, seed=1)("x/cell", key, compute(2)) == 1  # resumed
    assert cells.CellCache(tmp_path, False, None, seed=2)("x/cell", key, compute(3)) == 3  # other seed
    assert cells.CellCache(tmp_path, True, None, seed=1)("x/cell", key, compute(4)) == 4  # --fresh
    monkeypatch.setattr(cells, "code_fingerprint", lambda: "edited")
    assert cells.CellCache(tmp_path, False, None, seed=1)("x/cell", key, compute(5)) == 5  # other code
    assert calls == [1, 3, 4, 5]


def test_code_fingerprint_covers_untracked_source_files_but_not_results(tmp_path) -> None:
    """An edited, not-yet-added module changes the cell key; a results file in the tree and an
    uncommitted doc edit do not."""
    import subprocess

    from infra.provenance import code_fingerprint

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "core.py").write_text("A = 1\n")
    (tmp_path / "notes.md").write_text("# notes\n")
    git("add", "core.py", "notes.md")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    clean = code_fingerprint(tmp_path)
    assert len(clean) == 40  # HEAD's sha alone
    (tmp_path / "cells").mkdir()
    (tmp_path / "cells" / "rate-1.pkl").write_bytes(b"results")
    assert code_fingerprint(tmp_path) == clean
    (tmp_path / "notes.md").write_text("# notes, edited\n")
    assert code_fingerprint(tmp_path) == clean  # a doc edit keeps every cached cell
    family = tmp_path / "new_family.py"
    family.write_text("L = 1.0\n")
    first = code_fingerprint(tmp_path)
    assert first.startswith(clean + "-")
    family.write_text("L = 0.5\n")
    edited = code_fingerprint(tmp_path)
    assert edited != first
    (tmp_path / "core.py").write_text("A = 2\n")
    assert code_fingerprint(tmp_path) not in (clean, first, edited)


def test_a_family_that_raises_exits_3_naming_it(monkeypatch, tmp_path, capsys) -> None:
    from infra.errors import EXIT_INTERNAL
    from synthetic.problems import h1_pseudo_huber

    monkeypatch.setattr(
        h1_pseudo_huber, "pseudo_huber_loss", lambda params, batch: params["theta"].sum() * math.nan
    )
    code = main(["convergence", "--quick", "--out", str(tmp_path), "--no-progress", "--family", "H1"])
    assert code == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "family H1 (build, seed 20220606)" in err and "problem family H1: task loss at theta0" in err
