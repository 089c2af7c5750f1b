"""Sweeps (spec, manifest, lock, local and submitit executors, resume) and the study's statistics.

End-to-end tests run real worker processes on tiny generated Omniglot-format data (all 1,623
characters, two 28x28 random drawings each) with a 4-filter Conv4; one sweep into a shared
folder serves several tests, and every resumed run is compared with that uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from infra.cli import main
from infra.errors import EXIT_INTERRUPTED, EXIT_USAGE, UsageError
from infra.verdicts import BETTER, NOT_DETECTED, WORSE
from realdata.presets import train_config
from realdata.stats import comparison_verdict, paired_difference, seed_mean_ci, t_quantile
from realdata.sweep.driver import require_data
from realdata.sweep.manifest import DONE, INTERRUPTED, Manifest, SweepLockedError, read_manifest, sweep_lock
from realdata.sweep.spec import SpecError, load_spec
from realdata.sweep.study import baseline_rows, study_tables
from tests.fixtures_datasets import write_small_image_omniglot

ROOT = Path(__file__).resolve().parents[1]
VARIANT = """
[variants.low_head]
method = "sharp_low"
inner_params = "head"
"""
TINY_SPEC = """
[sweep]
preset = "ci"
methods = {methods}
radii = [0.05]
seeds = {seeds}
iterations = {iterations}
[preset]
filters = 4
meta_batch = 2
queries = 1
test_inner_steps = 1
val_every = {val_every}
val_episodes = 4
log_every = 2
[evaluation]
episodes = 600
[data]
root = "{root}"
"""


def write_spec(
    folder: Path,
    data: Path,
    *,
    methods=("maml", "sharp_low"),
    seeds=(0, 1),
    iterations=3,
    val_every=3,
    extra="",
) -> Path:
    path = folder / "spec.toml"
    text = TINY_SPEC.format(
        methods=list(methods), seeds=list(seeds), iterations=iterations, val_every=val_every, root=data
    )
    path.write_text(text.replace("'", '"') + extra)
    return path


# ----------------------------------------------------------------------------- statistics


def test_t_quantiles_match_the_table():
    assert t_quantile(0.975, 3) == pytest.approx(3.182446, abs=1e-6)
    assert t_quantile(0.8, 3) == pytest.approx(0.978472, abs=1e-6)
    assert t_quantile(0.975, 1000) == pytest.approx(1.962339, abs=1e-6)


def test_paired_difference_by_hand():
    # d = (2, 2, -1, 4): mean 1.75, sd sqrt(12.75 / 3) = 2.0616, se = sd / 2 = 1.030776
    d = paired_difference([80, 82, 79, 85], [78, 80, 80, 81])
    assert d.mean == pytest.approx(1.75)
    assert d.sd == pytest.approx(math.sqrt(4.25))
    assert d.ci95 == pytest.approx(3.182446 * 1.030776, rel=1e-5)
    assert d.mdd == pytest.approx((3.182446 + 0.978472) * 1.030776, rel=1e-5)
    assert comparison_verdict(d) == NOT_DETECTED


def test_paired_verdicts_follow_the_ci_and_agree_with_the_paired_t_test():
    from scipy.stats import ttest_rel

    base = np.array([70.0, 75.0, 72.0, 78.0, 74.0])
    for shift, verdict in ((1.0, BETTER), (-1.0, WORSE)):
        other = base + shift + np.array([0.1, -0.1, 0.2, 0.0, -0.2])
        d = paired_difference(other, base)
        assert comparison_verdict(d) == verdict
        assert ttest_rel(other, base).pvalue < 0.05
    noisy = base + np.array([2.0, -2.0, 1.0, -1.5, 0.3])
    assert comparison_verdict(paired_difference(noisy, base)) == NOT_DETECTED
    assert ttest_rel(noisy, base).pvalue > 0.05


def test_seed_mean_ci_uses_student_t():
    ci = seed_mean_ci([97.1, 96.4, 97.9, 96.8])
    assert ci.mean == pytest.approx(97.05)
    assert ci.ci95 == pytest.approx(3.182446 * 0.635085 / 2, rel=1e-5)
    assert math.isnan(seed_mean_ci([90.0]).ci95)


def test_gradient_evaluations_per_method():
    counts = {m: train_config("ci", m).meta_config().gradient_evaluations for m in ("maml", "fomaml")}
    counts |= {
        m: train_config("ci", m).meta_config().gradient_evaluations
        for m in ("sharp_low", "sharp_up", "sharp_both")
    }
    assert counts == {"maml": 2, "fomaml": 2, "sharp_low": 3, "sharp_up": 4, "sharp_both": 6}
    five_steps = train_config("mini-5w1s", "sharp_both").meta_config()
    assert five_steps.gradient_evaluations == 2 * (2 * 5 + 1)
    reused = train_config("ci", "sharp_up", overrides={"ascent_every": 5}).meta_config()
    assert reused.gradient_evaluations == pytest.approx(2 * (1 + 1 / 5))  # pass 1 every 5th step


# ----------------------------------------------------------------------------- spec


def test_spec_expands_seed_major_with_maml_at_equal_compute(tmp_path):
    path = write_spec(tmp_path, tmp_path, iterations=10)
    assert [t.run_id for t in load_spec(path).tasks(tmp_path)][:2] == [
        "ci-maml-lo0-up0-s0",
        "ci-sharp_low-lo0.05-up0-s0",
    ]
    text = path.read_text().replace("iterations = 10", "iterations = 10\nequal_compute = true")
    text = text.replace('["maml", "sharp_low"]', '["maml", "sharp_both"]')
    path.write_text(text.replace("episodes = 600", "episodes = 600\ncurve_every = 4"))
    tasks = {t.run_id: t for t in load_spec(path).tasks(tmp_path)}
    maml = tasks["ci-maml-lo0-up0-s0"]
    assert maml.train_config.preset.iterations == 30  # 10 x (6 gradients of sharp_both / 2 of MAML)
    assert maml.points == (4, 8, 10, 12, 16, 20, 24, 28, 30) and maml.final_points == (10, 30)
    assert tasks["ci-sharp_both-lo0.05-up0.05-s1"].points == (4, 8, 10)


def test_variants_run_beside_their_parent_on_the_same_seeds(tmp_path):
    extra = VARIANT + '[variants.up_k5]\nmethod = "sharp_up"\nascent_every = 5\nradii = [0.01]\n'
    path = write_spec(tmp_path, tmp_path, methods=("maml", "sharp_low", "sharp_up"), extra=extra)
    path.write_text(path.read_text().replace("radii = [0.05]", "radii = [0.05, 0.01]"))
    spec = load_spec(path)
    assert [v.label for v in spec.variants] == ["low_head", "up_k5"]
    tasks = spec.tasks(tmp_path)
    ids = [t.run_id for t in tasks]
    assert ids[:8] == [
        "ci-maml-lo0-up0-s0",
        "ci-sharp_low-lo0.05-up0-s0",
        "ci-sharp_low-lo0.01-up0-s0",
        "ci-sharp_up-lo0-up0.05-s0",
        "ci-sharp_up-lo0-up0.01-s0",
        "ci+low_head-sharp_low-lo0.05-up0-s0",
        "ci+low_head-sharp_low-lo0.01-up0-s0",
        "ci+up_k5-sharp_up-lo0-up0.01-s0",  # only the radius it asks for
    ]
    assert len(ids) == 16 and ids[8] == "ci-maml-lo0-up0-s1"
    by_id = {t.run_id: t for t in tasks}
    head = by_id["ci+low_head-sharp_low-lo0.05-up0-s1"]
    assert head.variant == "low_head" and head.run_dir.endswith("runs/ci+low_head-sharp_low-lo0.05-up0-s1")
    assert head.train_config.preset.inner_params == "head" and head.train_config.seed == 1
    parent = by_id["ci-sharp_low-lo0.05-up0-s1"]
    assert parent.variant == "" and parent.train_config.preset.inner_params == "all"
    assert head.train_config.hash() != parent.train_config.hash()
    assert by_id["ci+up_k5-sharp_up-lo0-up0.01-s0"].train_config.meta_config().ascent_every == 5


@pytest.mark.parametrize(
    "variant, expected",
    [
        ('[variants.v]\nmethod = "sharp_low"\nascent_evry = 5', "variants.v.ascent_evry: unknown key"),
        ('[variants.v]\nmethod = "sharp_up"\nascent_every = 5', "variants.v.method: expected the method"),
        ('[variants.maml]\nmethod = "maml"\ninner_params = "head"', "variants.maml: expected a label"),
        ('[variants.v]\nmethod = "sharp_low"', "variants.v: sets no engine option"),
        ('[variants.v]\nmethod = "sharp_low"\nascent_every = 2', "variants.v: invalid engine option"),
        ('[variants.v]\nmethod = "sharp_low"\ninner_params = "body"', "variants.v: invalid engine option"),
        (
            '[variants.v]\nmethod = "sharp_low"\nlower_fraction = 0.5\nradii = [0.1]',
            "variants.v.radii: [0.1] not among sharp_low's radii",
        ),
        ("variants = 3", "[variants]: expected a table"),
    ],
)
def test_bad_variant_exits_4_naming_file_and_key(tmp_path, capsys, variant, expected):
    spec = write_spec(tmp_path, tmp_path)
    text = spec.read_text()
    spec.write_text(variant + "\n" + text if variant.startswith("variants =") else text + variant + "\n")
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert str(spec) in err and expected in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "edit, expected",
    [
        (('preset = "ci"', 'preset = "nope"'), "sweep.preset: unknown preset 'nope'"),
        (("seeds = [0, 1]", "seeds = [0, 0]"), "sweep.seeds: expected distinct values"),
        (("radii = [0.05]", "radii = [-1]"), "sweep.radii: expected a non-empty list of radii > 0"),
        (("filters = 4", "filterz = 4"), "preset.filterz: unknown key"),
        (("episodes = 600", "episodes = 10"), "evaluation.episodes: expected an integer >= 600"),
        (("iterations = 3", 'iterations = "3"'), "sweep.iterations: expected int"),
        (("[data]", "[datum]"), "[datum]: unknown section"),
        (
            ('methods = ["maml", "sharp_low"]', 'methods = ["reptile"]'),
            "sweep.methods: expected distinct names",
        ),
    ],
)
def test_bad_spec_exits_4_naming_file_and_key(tmp_path, capsys, edit, expected):
    spec = write_spec(tmp_path, tmp_path)
    text = spec.read_text()
    assert edit[0] in text
    spec.write_text(text.replace(*edit))
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert str(spec) in err and expected in err
    assert not (tmp_path / "out").exists()


def test_missing_spec_and_unreadable_toml(tmp_path):
    with pytest.raises(SpecError, match="sweep spec not found"):
        load_spec(tmp_path / "none.toml")
    (tmp_path / "bad.toml").write_text("[sweep\n")
    with pytest.raises(SpecError, match="not a readable TOML file"):
        load_spec(tmp_path / "bad.toml")


def test_equal_compute_needs_maml(tmp_path):
    spec = write_spec(tmp_path, tmp_path, methods=("sharp_low",), extra="")
    spec.write_text(spec.read_text().replace("iterations = 3", "iterations = 3\nequal_compute = true"))
    with pytest.raises(SpecError, match="sweep.equal_compute: needs 'maml'"):
        load_spec(spec)


def test_a_second_sweep_into_a_locked_folder_is_refused(tmp_path, capsys, monkeypatch):
    import realdata.sweep.driver

    monkeypatch.setattr(realdata.sweep.driver, "require_data", lambda *a, **k: None)  # no data here
    spec = write_spec(tmp_path, tmp_path)
    out = tmp_path / "out"
    with sweep_lock(out):
        with pytest.raises(SweepLockedError, match=f"another sweep \\(pid {os.getpid()}\\)"):
            with sweep_lock(out):
                pass
        assert main(["sweep", str(spec), "--out", str(out)]) == EXIT_USAGE
        assert "another sweep" in capsys.readouterr().err
    with sweep_lock(out):  # released
        pass


# ----------------------------------------------------------------------------- data check


@pytest.fixture
def no_run(monkeypatch):
    """Any run started fails the test: the data check must stop the sweep before run_sweep."""
    import realdata.sweep.driver

    monkeypatch.setattr(realdata.sweep.driver, "run_sweep", lambda *a, **k: pytest.fail("ran a sweep"))


@pytest.mark.parametrize("executor", [[], ["--executor", "slurm", "--cluster", "local"]])
def test_a_sweep_without_its_data_exits_4_before_any_run_keeping_the_manifest(
    tmp_path, capsys, no_run, executor
):
    missing = tmp_path / "no-data"
    spec = write_spec(tmp_path, missing)
    out = tmp_path / "out"
    Manifest.open(out, load_spec(spec).tasks(out))  # an earlier call's manifest, runs pending
    stored, files = (out / "manifest.parquet").read_bytes(), sorted(out.rglob("*"))
    assert main(["sweep", str(spec), "--out", str(out), "--no-progress", *executor]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert (
        f"sweep {spec}: dataset omniglot of preset 'ci' is not available under the data root "
        f"{missing} ([data] root in {spec}); no run was started. {missing / 'omniglot'}: Omniglot "
        "folder not found" in err
    )
    assert (
        'with --data-root PATH, with root = "PATH" under [data] in the spec, or with $SHARPMAML_DATA' in err
    )
    assert (out / "manifest.parquet").read_bytes() == stored and sorted(out.rglob("*")) == files


def test_the_data_error_names_where_the_root_came_from(tmp_path, capsys, no_run, monkeypatch):
    import realdata.datasets.locate

    spec = write_spec(tmp_path, tmp_path / "spec-root")
    unrooted = tmp_path / "unrooted.toml"  # no [data] root: $SHARPMAML_DATA, else the default
    unrooted.write_text(spec.read_text().split("[data]")[0])
    clone = tmp_path / "clone"  # a checkout without ../shared/data next to it
    monkeypatch.setattr(realdata.datasets.locate, "repo_root", lambda: clone)
    monkeypatch.delenv("SHARPMAML_DATA", raising=False)
    cases = [
        (spec, ["--data-root", str(tmp_path / "flag-root")], f"{tmp_path / 'flag-root'} (--data-root)"),
        (unrooted, [], f"{tmp_path / 'shared' / 'data'} (the default: $SHARPMAML_DATA is unset)"),
    ]
    for path, flags, expected in cases:
        assert main(["sweep", str(path), "--out", str(tmp_path / "out"), *flags]) == EXIT_USAGE
        assert f"under the data root {expected}; no run was started" in capsys.readouterr().err
    monkeypatch.setenv("SHARPMAML_DATA", str(tmp_path / "env-root"))
    assert main(["sweep", str(unrooted), "--out", str(tmp_path / "out")]) == EXIT_USAGE
    assert f"under the data root {tmp_path / 'env-root'} ($SHARPMAML_DATA)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_slurm_finds_the_data_files_without_reading_them_local_reads_them(tmp_path, monkeypatch):
    import realdata.data

    root = tmp_path / "data"
    (root / "omniglot").mkdir(parents=True)
    for name in ("images_background.npz", "images_evaluation.npz"):
        (root / "omniglot" / name).write_bytes(b"")  # the names the jobs look for; not npz files
    spec = load_spec(write_spec(tmp_path, root))
    with pytest.raises(UsageError, match="images_background.npz: not a readable npz file"):
        require_data(spec, "test", read=True)  # the local executor: loaded as its workers will
    monkeypatch.setattr(realdata.data, "load_dataset", lambda *a, **k: pytest.fail("read the data"))
    require_data(spec, "test", read=False)  # the submitting machine: found by name, nothing read
    (root / "omniglot" / "images_evaluation.npz").unlink()
    with pytest.raises(UsageError, match="no Omniglot 'images_evaluation' found"):
        require_data(spec, "test", read=False)


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Tiny Omniglot-format data and a cache outside the checkout, for this process and workers."""
    folder = tmp_path_factory.mktemp("sweepdata")
    data = write_small_image_omniglot(folder / "data")
    old = os.environ.get("SHARPMAML_CACHE")
    os.environ["SHARPMAML_CACHE"] = str(folder / "cache")
    yield {"data": data, "folder": folder}
    if old is None:
        os.environ.pop("SHARPMAML_CACHE", None)
    else:
        os.environ["SHARPMAML_CACHE"] = old


@pytest.fixture(scope="module")
def local_sweep(env):
    """maml, sharp_low and its head-only variant x seeds 0, 1 on the local pool, uninterrupted."""
    folder = env["folder"] / "local"
    folder.mkdir()
    spec = write_spec(folder, env["data"], extra=VARIANT)
    out = folder / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--jobs", "2", "--no-progress", "--summary"]) == 0
    return {"spec": spec, "out": out, "manifest": read_manifest(out).set_index("run_id")}


def _accuracies(out: Path) -> dict[str, float]:
    return read_manifest(out).set_index("run_id")["final_accuracy"].to_dict()


@pytest.mark.slow
def test_local_sweep_runs_every_run_and_records_it(local_sweep):
    m = local_sweep["manifest"]
    assert sorted(m.index) == [
        "ci+low_head-sharp_low-lo0.05-up0-s0",
        "ci+low_head-sharp_low-lo0.05-up0-s1",
        "ci-maml-lo0-up0-s0",
        "ci-maml-lo0-up0-s1",
        "ci-sharp_low-lo0.05-up0-s0",
        "ci-sharp_low-lo0.05-up0-s1",
    ]
    assert m["variant"].tolist().count("low_head") == 2 and m["variant"].tolist().count("") == 4
    assert (m["status"] == DONE).all() and (m["attempts"] == 1).all()
    assert m["job_id"].str.startswith("local:").all()
    assert m["final_accuracy"].between(0, 100).all() and (m["wall_s"] > 0).all()
    evals = pd.read_parquet(Path(m.loc["ci-sharp_low-lo0.05-up0-s0", "run_dir"]) / "evaluations.parquet")
    assert sorted(evals["eval_inner_loop"]) == ["plain", "same"] and set(evals["iterations"]) == {3}
    assert evals["n_episodes"].eq(600).all() and evals["test_seed"].nunique() == 1


@pytest.mark.slow
def test_rerunning_a_finished_sweep_skips_every_run(local_sweep, capsys):
    out = local_sweep["out"]
    before = (out / "manifest.parquet").stat().st_mtime_ns
    assert main(["sweep", str(local_sweep["spec"]), "--out", str(out), "--no-progress"]) == 0
    m = read_manifest(out)
    assert (m["attempts"] == 1).all()  # nothing started again
    assert "6 done" in capsys.readouterr().out
    assert (out / "manifest.parquet").stat().st_mtime_ns >= before


@pytest.mark.slow
def test_study_tables_pair_each_setting_with_maml(local_sweep):
    study = local_sweep["out"] / "study"
    paired = pd.read_parquet(study / "paired.parquet")
    assert set(paired["eval_inner_loop"]) == {"same", "plain"}
    row = paired[(paired["eval_inner_loop"] == "same") & (paired["variant"] == "")].iloc[0]
    m = local_sweep["manifest"]
    own = [m.loc[f"ci-sharp_low-lo0.05-up0-s{s}", "final_accuracy"] for s in (0, 1)]
    maml = [m.loc[f"ci-maml-lo0-up0-s{s}", "final_accuracy"] for s in (0, 1)]
    expected = paired_difference(own, maml)
    assert row["diff"] == pytest.approx(expected.mean) and row["diff_ci95"] == pytest.approx(expected.ci95)
    assert row["verdict"] == comparison_verdict(expected) and row["grad_ratio"] == pytest.approx(1.5)
    assert row["time_ratio"] > 0
    assert row["parent_verdict"] != row["parent_verdict"]  # NaN: a plain method has no parent
    loops = pd.read_parquet(study / "inner_loops.parquet")
    assert list(loops["method"]) == ["sharp_low", "sharp_low"]
    assert list(loops["variant"]) == ["", "low_head"]
    curves = pd.read_parquet(study / "curves.parquet")
    assert set(curves["split"]) == {"test", "val"}
    test = curves[(curves["split"] == "test") & (curves["method"] == "maml")].iloc[0]
    assert test["grad_evals"] == 3 * 2 * 2  # iterations x gradients per task x tasks per batch
    assert test["mean"] == pytest.approx(np.mean(maml))


@pytest.mark.slow
def test_study_pairs_a_variant_with_maml_and_with_its_parent(local_sweep):
    study = local_sweep["out"] / "study"
    paired = pd.read_parquet(study / "paired.parquet")
    rows = paired[paired["variant"] == "low_head"]
    assert sorted(rows["eval_inner_loop"]) == ["plain", "same"]
    row = rows[rows["eval_inner_loop"] == "same"].iloc[0]
    m = local_sweep["manifest"]
    own = [m.loc[f"ci+low_head-sharp_low-lo0.05-up0-s{s}", "final_accuracy"] for s in (0, 1)]
    maml = [m.loc[f"ci-maml-lo0-up0-s{s}", "final_accuracy"] for s in (0, 1)]
    parent = [m.loc[f"ci-sharp_low-lo0.05-up0-s{s}", "final_accuracy"] for s in (0, 1)]
    vs_maml, vs_parent = paired_difference(own, maml), paired_difference(own, parent)
    assert (row["method"], row["alpha_low"], row["accuracy"]) == (
        "sharp_low",
        0.05,
        pytest.approx(np.mean(own)),
    )
    assert row["diff"] == pytest.approx(vs_maml.mean) and row["verdict"] == comparison_verdict(vs_maml)
    assert row["parent_accuracy"] == pytest.approx(np.mean(parent))
    assert row["parent_diff"] == pytest.approx(vs_parent.mean)
    assert row["parent_diff_ci95"] == pytest.approx(vs_parent.ci95)
    assert row["parent_verdict"] == comparison_verdict(vs_parent) and row["parent_n_pairs"] == 2
    seconds = m.groupby("variant")["train_s_per_iteration"]
    head_s = m.loc[[f"ci+low_head-sharp_low-lo0.05-up0-s{s}" for s in (0, 1)], "train_s_per_iteration"].mean()
    parent_s = m.loc[[f"ci-sharp_low-lo0.05-up0-s{s}" for s in (0, 1)], "train_s_per_iteration"].mean()
    maml_s = m.loc[[f"ci-maml-lo0-up0-s{s}" for s in (0, 1)], "train_s_per_iteration"].mean()
    assert seconds.ngroups == 2
    assert row["parent_time_ratio"] == pytest.approx(head_s / parent_s)
    assert row["time_ratio"] == pytest.approx(head_s / maml_s) and row["grad_ratio"] == pytest.approx(1.5)
    acc = pd.read_parquet(study / "accuracy.parquet")
    assert set(zip(acc["method"], acc["variant"])) == {
        ("maml", ""),
        ("sharp_low", ""),
        ("sharp_low", "low_head"),
    }
    stored = baseline_rows(local_sweep["out"], study_tables(local_sweep["out"]), "tiny", "same")
    assert [r.row_id for r in stored] == [
        "tiny:omniglot-5w1s-maml-lo0-up0",
        "tiny:omniglot-5w1s-sharp_low-lo0.05-up0",
    ]
    assert stored[1].accuracy == pytest.approx(np.mean(parent))  # the plain method's runs only


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 600) -> None:
    started = time.monotonic()
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() - started < timeout
        time.sleep(0.1)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "infra", *args]


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["local", "slurm"])
def test_a_killed_sweep_resumes_from_last_pt_to_the_same_numbers(env, local_sweep, tmp_path, executor):
    """SIGTERM while a run is being evaluated (its last.pt written); the rerun continues it
    from last.pt (no training repeated) and ends with the uninterrupted sweep's accuracy."""
    spec = write_spec(tmp_path, env["data"], methods=("maml",), seeds=(0,))
    out = tmp_path / "out"
    flags = ["--no-progress"] + (
        ["--executor", "slurm", "--cluster", "local", "--cpus-per-job", "1"]
        if executor == "slurm"
        else ["--jobs", "1"]
    )
    cmd = _cli("sweep", str(spec), "--out", str(out), *flags)
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(cmd, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_dir = out / "runs" / "ci-maml-lo0-up0-s0"
    _wait_for(run_dir / "metrics.parquet", process)  # written right after last.pt
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == EXIT_INTERRUPTED, err
    assert "resume with: sharpmaml sweep" in err
    assert read_manifest(out)["status"].tolist() == [INTERRUPTED]
    assert subprocess.run(cmd, env=environ, capture_output=True, text=True).returncode == 0
    m = read_manifest(out).set_index("run_id")
    assert m["status"].tolist() == [DONE] and m["attempts"].tolist() == [2]
    if executor == "slurm":
        assert m["job_id"].iloc[0].isdigit()  # submitit's job id (the local controller's pid)
    assert m["final_accuracy"].iloc[0] == local_sweep["manifest"].loc["ci-maml-lo0-up0-s0", "final_accuracy"]
    train_rows = pd.read_parquet(run_dir / "metrics.parquet").query("split == 'train'")
    assert train_rows["iteration"].is_unique


@pytest.mark.slow
def test_submitit_requeues_a_timed_out_job_which_resumes_from_its_checkpoint(env, local_sweep, tmp_path):
    """The scheduler's time-limit signal (USR2, what submitit's local controller and SLURM send)
    reaches the job after its last.pt: submitit checkpoints the run and requeues it; the
    requeued job continues from last.pt to the same accuracy as the uninterrupted run."""
    from realdata.sweep.executors import SubmititExecutor
    from realdata.sweep.spec import SlurmOptions

    spec = load_spec(write_spec(tmp_path, env["data"], methods=("maml",), seeds=(0,)))
    executor = SubmititExecutor(tmp_path / "jobs", SlurmOptions(cluster="local", cpus_per_job=1))
    task = spec.tasks(tmp_path)[0]
    job = executor.submit([dataclasses.replace(task, threads=1)])[0]
    run_dir = Path(task.run_dir)
    deadline = time.monotonic() + 600
    while not (run_dir / "metrics.parquet").exists():
        assert not job.done() and time.monotonic() < deadline
        time.sleep(0.05)
    children = Path(f"/proc/{job._process.pid}/task/{job._process.pid}/children").read_text().split()
    for pid in children:  # what the local controller does at the time limit
        os.kill(int(pid), signal.SIGUSR2)
    outcome = job.result()
    assert outcome.status == DONE
    log = Path(job.paths.stderr).read_text() + Path(job.paths.stdout).read_text()
    assert "requeue" in log.lower() or "checkpoint" in log.lower()
    assert pd.read_parquet(run_dir / "metrics.parquet").query("split == 'train'")["iteration"].is_unique
    assert outcome.final_accuracy == local_sweep["manifest"].loc["ci-maml-lo0-up0-s0", "final_accuracy"]


@pytest.mark.slow
def test_the_report_shows_the_study_section(local_sweep, tmp_path):
    from reports.build import build_report

    results = tmp_path / "results"
    assert main(["study", str(local_sweep["out"]), "--out", str(results / "realdata" / "study")]) == 0
    html = build_report(results).html
    assert "Paired study: Sharp-MAML vs MAML" in html
    assert "fig-study-curves" in html and "fig-study-compute" in html and "fig-study-cost" in html
    assert "Sharp-MAML_low + low_head (alpha 0.05)" in html  # the variant, apart from its parent
    assert "Paired difference to MAML (inner loop &#39;plain&#39;)" in html


def test_the_report_says_how_to_make_the_study_when_absent(tmp_path):
    from reports.build import build_report

    html = build_report(tmp_path / "results").html
    assert "sharpmaml study DIR --out results/realdata/study" in html
