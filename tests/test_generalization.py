"""Generalization track: bound formulas against hand computation, the measurements against exact
values, the suite end to end (quick grid), a planted wrong bound, and the command's contract."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from harness.meta import plain_meta_gradient
from infra.cli import main
from infra.errors import EXIT_USAGE
from infra.verdicts import FAIL, PASS, VACUOUS
from synthetic.generalization import bounds, estimates, suite
from synthetic.generalization.cells import training_tasks
from synthetic.generalization.training import seed_slice, stack_tasks, train_lanes
from synthetic.methods import method_config
from synthetic.problems.base import build_problem

# ----- kl divergence and its inversion -------------------------------------------------------


def test_kl_bernoulli_known_values() -> None:
    assert bounds.kl_bernoulli(0.3, 0.3) == pytest.approx(0.0, abs=1e-15)
    assert bounds.kl_bernoulli(0.0, 0.2) == pytest.approx(-math.log(0.8), rel=1e-14)
    assert bounds.kl_bernoulli(1.0, 0.2) == pytest.approx(-math.log(0.2), rel=1e-14)
    # 0.5 log(0.5/0.6) + 0.5 log(0.5/0.4)
    assert bounds.kl_bernoulli(0.5, 0.6) == pytest.approx(0.5 * math.log(25 / 24), rel=1e-14)


@pytest.mark.parametrize("c", [1e-4, 0.01, 0.5, 3.0])
def test_kl_inverse_at_q_zero_is_one_minus_exp(c: float) -> None:
    # kl(0 || p) = -log(1 - p) = c  <=>  p = 1 - exp(-c)
    assert bounds.kl_inverse_upper(0.0, c) == pytest.approx(1 - math.exp(-c), abs=1e-9)


def test_kl_inverse_known_values_and_edges() -> None:
    assert bounds.kl_inverse_upper(0.5, 0.5 * math.log(25 / 24)) == pytest.approx(0.6, abs=1e-9)
    assert bounds.kl_inverse_upper(0.3, 0.0) == pytest.approx(0.3, abs=1e-9)
    assert bounds.kl_inverse_upper(1.0, 0.7) == 1.0
    with pytest.raises(ValueError, match="kl inverse"):
        bounds.kl_inverse_upper(1.2, 0.1)
    with pytest.raises(ValueError, match="kl inverse"):
        bounds.kl_inverse_upper(0.2, -0.1)


def test_kl_inverse_is_the_largest_root() -> None:
    rng = np.random.default_rng(0)
    q, c = rng.uniform(0.01, 0.9, 200), rng.uniform(1e-4, 2.0, 200)
    p = bounds.kl_inverse_upper(q, c)
    assert np.all(p >= q)
    inside = p < 1 - 1e-6
    assert np.allclose(bounds.kl_bernoulli(q[inside], p[inside]), c[inside], rtol=1e-8, atol=1e-12)
    assert np.all(bounds.kl_bernoulli(q[inside], p[inside] + 1e-9) > c[inside])


# ----- bound formulas against hand computation ----------------------------------------------


def test_foret_rhs_against_hand_computation() -> None:
    # |theta| = 2, rho = 0.5, M = 100, k = 10, delta = 0.05:
    # sqrt(log 100 / 10) = 0.678614; 16 (1.678614)^2 = 45.08392; 10 log(46.08392) = 38.30462;
    # 4 log(2000) = 30.40361; sqrt(68.70823 / 99) = 0.833080
    complexity = bounds.foret_complexity(2.0, 0.5, 100, 10, 0.05)
    assert complexity == pytest.approx(0.833080, rel=1e-5)
    exact = math.sqrt(
        (10 * math.log(1 + 16 * (1 + math.sqrt(math.log(100) / 10)) ** 2) + 4 * math.log(2000)) / 99
    )
    assert complexity == pytest.approx(exact, rel=1e-14)
    assert bounds.foret_rhs(0.31, 2.0, 0.5, 100, 10, 0.05) == pytest.approx(0.31 + exact, rel=1e-14)
    assert bounds.foret_sigma(0.5, 100, 10) == pytest.approx(0.5 / (math.sqrt(10) + math.sqrt(math.log(100))))


def test_foret_complexity_falls_like_inverse_sqrt_M() -> None:
    M = np.array([1e2, 1e3, 1e4, 1e5, 1e6])
    c = bounds.foret_complexity(3.0, 0.2, M, 10, 0.05)
    numerator = 10 * np.log1p(225 * (1 + np.sqrt(np.log(M) / 10)) ** 2) + 4 * np.log(M / 0.05)
    assert np.allclose(c * np.sqrt(M - 1), np.sqrt(numerator), rtol=1e-14)
    slope = np.polyfit(np.log(M), np.log(c), 1)[0]
    assert -0.5 < slope < -0.45  # the log factors only flatten M^(-1/2) slightly


def test_gaussian_kl_and_pac_bayes_union_term_by_hand() -> None:
    # KL(N(mu, 0.25 I_10) || N(0, I_10)), |mu| = 3: (10 * 0.25 + 9 - 10 + 10 log 4) / 2
    kl = bounds.gaussian_kl(3.0, 0.5, 1.0, 10)
    assert kl == pytest.approx(0.5 * (2.5 - 1 + 10 * math.log(4)), rel=1e-14)
    # union over 9 priors, M = 400, delta = 0.025: log(2 * 20 * 9 / 0.025) = log(14400)
    budget = bounds.pac_bayes_kl_complexity(kl, 400, 0.025, 9)
    assert budget == pytest.approx((kl + math.log(14400)) / 400, rel=1e-14)


def test_pac_bayes_kl_rhs_takes_the_best_prior_of_the_grid() -> None:
    priors = 2.0 ** (np.arange(-4, 5) / 2)
    rhs, best = bounds.pac_bayes_kl_rhs(0.3, 3.0, 0.5, priors, 400, 10, 0.025)
    brute = [
        bounds.kl_inverse_upper(
            0.3, (bounds.gaussian_kl(3.0, 0.5, p, 10) + math.log(2 * 20 * 9 / 0.025)) / 400
        )
        for p in priors
    ]
    assert rhs == pytest.approx(min(brute), abs=1e-12) and int(best) == int(np.argmin(brute))
    assert bounds.kl_bernoulli(0.3, rhs) == pytest.approx(
        (bounds.gaussian_kl(3.0, 0.5, priors[best], 10) + math.log(14400)) / 400, rel=1e-8
    )


def test_pac_bayes_bound_splits_delta_between_monte_carlo_and_priors() -> None:
    priors, sigmas = np.array([0.5, 1.0, 2.0]), np.array([0.1, 0.3])
    estimates_ = np.array([0.30, 0.32])
    out = bounds.pac_bayes_bound(estimates_, 5000, 3.0, sigmas, priors, 400, 10, 0.05)
    upper = bounds.kl_inverse_upper(estimates_, math.log(2 * 2 / 0.05) / 5000)  # delta/2 over 2 scales
    per_sigma = [bounds.pac_bayes_kl_rhs(u, 3.0, s, priors, 400, 10, 0.025)[0] for u, s in zip(upper, sigmas)]
    assert out["rhs"] == pytest.approx(min(per_sigma), abs=1e-12)
    assert out["gibbs_upper"] == pytest.approx(upper[int(out["sigma_index"])], abs=1e-12)


def test_vacuous_means_at_least_one() -> None:
    assert bounds.is_vacuous(np.array([1.7, 1.0, 0.999])).tolist() == [True, True, False]


# ----- measurements ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def l2():
    return build_problem("L2", seed=4, verify=False)


def test_maml_lane_is_maml_exactly(l2) -> None:
    """alpha_up = 0 in the Sharp-MAML_up lanes is plain full-batch MAML."""
    tasks = training_tasks(l2, 4, 5, 0, 25)
    theta = train_lanes(
        l2.loss,
        method_config(l2, "sharp_up"),
        stack_tasks([tasks]),
        torch.tensor([0.0, 0.3]),
        l2.init_params["theta"],
        30.0,
        5,
    )
    reference = l2.init_params["theta"]
    for _ in range(5):
        reference = (
            reference
            - 30.0
            * plain_meta_gradient(
                l2.loss, {"theta": reference}, tasks, l2.meta_config.replace(executor="vmap")
            ).grad["theta"]
        )
    assert torch.allclose(theta[0, 0], reference, rtol=1e-12, atol=1e-15)
    assert not torch.allclose(theta[0, 1], reference, rtol=1e-6)


def test_training_sets_are_nested_in_M(l2) -> None:
    small, large = training_tasks(l2, 4, 2, 1, 25), training_tasks(l2, 4, 2, 1, 75)
    assert torch.equal(small.support["x"], large.support["x"][:25])
    assert torch.equal(small.query["y"], large.query["y"][:25])


def test_risks_noise_free_equals_clean_and_max_in_ball_is_a_valid_lower_estimate(l2) -> None:
    tasks = stack_tasks([training_tasks(l2, 4, 5, s, 25) for s in range(2)])
    offset = torch.randn(2, 3, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    theta = l2.task_distribution.w_bar.expand(2, 3, -1) + 0.3 * offset
    clean = estimates.task_risks(l2, theta, tasks, per_seed=True)
    noise = torch.randn(2, 4, 25, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    noisy = estimates.noisy_task_risks(
        l2, theta, torch.zeros(2, 3, dtype=torch.float64), noise, tasks, per_seed=True
    )
    assert torch.equal(noisy, clean[:, :, None, :].expand_as(noisy))
    ball = estimates.max_in_ball(
        l2, theta, tasks, torch.tensor([0.1, 1.0]), 2, 4, torch.Generator().manual_seed(2)
    )
    risk = clean.mean(-1)
    assert torch.all(ball >= risk[..., None] - 1e-15) and torch.all(ball <= 1)
    assert torch.all(ball[..., 1] > risk)  # a radius of 1 at |theta| ~ 3 flips some points


def test_top_hessian_eigenvalue_is_exact_on_quadratic_tasks() -> None:
    q1 = build_problem("Q1", seed=2, verify=False)
    theta = torch.stack([q1.init_params["theta"], q1.quadratic.theta_star])[None]
    tasks = stack_tasks([q1.tasks])
    top, residual = estimates.top_hessian_eigenvalues(q1, theta, tasks, torch.Generator().manual_seed(0))
    exact = float(torch.linalg.eigvalsh(q1.quadratic.hessian).max())
    assert torch.allclose(top, torch.full_like(top, exact), rtol=1e-10)
    assert float(residual.max()) < 1e-10


def test_top_hessian_eigenvalue_of_e2_is_the_closed_form_curvature() -> None:
    e2 = build_problem("E2", seed=1, verify=False, grid_points=2001)
    z = torch.tensor([[[0.0], [0.3], [2.0]]], dtype=torch.float64)
    top, _ = estimates.top_hessian_eigenvalues(
        e2, z, stack_tasks([e2.tasks]), torch.Generator().manual_seed(0)
    )
    assert torch.allclose(top[0], e2.two_basins.model.meta_1d(z[0, :, 0])[2], rtol=1e-10)
    assert seed_slice(stack_tasks([e2.tasks]), 0).num_tasks == e2.num_tasks


# ----- the suite and its command ----------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("generalization")
    code = main(["generalization", "--quick", "--out", str(out), "--seed", "3", "--no-progress"])
    return code, out


@pytest.mark.slow
def test_quick_suite_end_to_end(quick_run) -> None:
    code, out = quick_run
    predictions = pd.read_parquet(out / "predictions.parquet")
    assert code == (1 if (predictions["verdict"] == FAIL).any() else 0)
    assert pd.read_csv(out / "predictions.csv")["id"].tolist() == predictions["id"].tolist()
    ids = set(predictions["id"])
    assert {
        "gen.foret/M=25",
        "gen.pac_bayes_kl/M=100",
        "gen.premise/foret_sigma",
        "gen.complexity_rate",
        "gen.gap_slope/m_tr=2",
        "gen.gap_vs_m_tr",
        "gen.sharpness/alpha=0.5",
        "gen.hessian/L2/alpha=0.1",
        "gen.hessian/E2/alpha=0.3",
        "gen.pac_bayes_kl.gibbs",
    } <= ids
    verdicts = predictions.set_index("id")["verdict"]
    assert verdicts["gen.foret/M=25"] == VACUOUS  # a vacuous bound is never a PASS
    assert verdicts["gen.complexity_rate"] == PASS
    assert {"git_sha", "versions", "device", "seed", "config_hash"} <= set(predictions.columns)

    runs = pd.read_parquet(out / "runs.parquet")
    grid = suite.GENERALIZATION_GRIDS["quick"]
    l2_runs = len(grid.tasks) * len(grid.samples) * grid.n_seeds * (1 + len(grid.alphas))
    assert (runs["family"] == "L2").sum() == l2_runs
    assert (runs["family"] == "E2").sum() == grid.n_seeds * (1 + len(grid.e2_alphas))
    l2 = runs[runs["family"] == "L2"]
    assert (l2["status"] == "ok").all()
    assert l2[["true_risk", "train_risk", "foret_rhs", "pac_bayes_kl_rhs", "hessian_top"]].notna().all().all()
    assert ((l2["true_risk_se"] > 0) & (l2["true_risk_se"] < 0.01)).all()
    assert (l2["gap"] == l2["true_risk"] - l2["train_risk"]).all()
    assert (l2.loc[l2["foret_vacuous"].astype(bool), "foret_rhs"] >= 1).all()
    assert runs["config_hash"].nunique() == len(runs)
    assert sorted(l2["seed_index"].unique()) == list(range(grid.n_seeds)) and (runs["seed"] == 3).all()
    summary = pd.read_parquet(out / "predictions.parquet").set_index("id").loc["gen.gap_vs_m_tr", "details"]
    assert "nan" not in summary  # the seed-level SEs are defined
    sharpness = pd.read_parquet(out / "sharpness.parquet")
    assert len(sharpness) == l2_runs * len(grid.alphas)
    gaps = pd.read_parquet(out / "gaps.parquet")
    assert (gaps["seeds"] == grid.n_seeds).all() and "gap_se" in gaps.columns


@pytest.mark.slow
def test_rerun_reads_the_cell_cache(quick_run) -> None:
    code, out = quick_run
    first = pd.read_parquet(out / "runs.parquet")
    assert main(["generalization", "--quick", "--out", str(out), "--seed", "3", "--no-progress"]) == code
    second = pd.read_parquet(out / "runs.parquet")
    numeric = ["train_risk", "true_risk", "foret_rhs", "pac_bayes_kl_rhs", "hessian_top"]
    pd.testing.assert_frame_equal(first[numeric], second[numeric], check_exact=True)


def _kl_inverse_lower(q, c, tol=bounds.KL_INVERSE_TOL):
    """The wrong root: inf {p <= q: kl(q || p) <= c}, a classic inversion bug."""
    q, c = np.broadcast_arrays(np.asarray(q, float), np.asarray(c, float))
    low, high = np.zeros_like(q), q.copy()
    while np.any(high - low > tol):
        mid = 0.5 * (low + high)
        inside = bounds.kl_bernoulli(q, mid) <= c
        low, high = np.where(inside, low, mid), np.where(inside, mid, high)
    return low


def test_a_wrong_bound_fails_the_suite(monkeypatch, tmp_path) -> None:
    """The PAC-Bayes-kl bound inverted on the wrong side of q must produce FAIL rows and exit 1."""
    tiny = dataclasses.replace(
        suite.GENERALIZATION_GRIDS["quick"], tasks=(25,), samples=(2,), n_seeds=3, e2_steps=20
    )
    monkeypatch.setitem(suite.GENERALIZATION_GRIDS, "quick", tiny)
    monkeypatch.setattr(bounds, "kl_inverse_upper", _kl_inverse_lower)
    code = main(["generalization", "--quick", "--out", str(tmp_path), "--no-progress"])
    verdicts = pd.read_parquet(tmp_path / "predictions.parquet").set_index("id")["verdict"]
    assert code == 1
    assert verdicts["gen.pac_bayes_kl/M=25"] == FAIL and verdicts["gen.pac_bayes_kl.gibbs"] == FAIL


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seed", "-1"], "seed (--seed): expected an integer >= 0, got -1"),
        (["--out", "{file}"], "--out: expected a folder"),
    ],
)
def test_bad_input_exits_4_before_any_compute(argv, message, capsys, tmp_path) -> None:
    target = tmp_path / "file"
    target.write_text("keep me")
    argv = [a.format(file=target) for a in argv]
    assert main(["generalization", "--out", str(tmp_path / "r"), *argv]) == EXIT_USAGE
    assert message in capsys.readouterr().err
    assert target.read_text() == "keep me" and not (tmp_path / "r").exists()


def test_quick_with_full_is_a_usage_error(capsys) -> None:
    assert main(["generalization", "--quick", "--full"]) == EXIT_USAGE
    assert "not allowed with" in capsys.readouterr().err
