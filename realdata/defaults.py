"""The real-data track's default locations and sizes, importable without torch (the CLI's
``--help`` and flag checks read them before any heavy module loads)."""

from __future__ import annotations

from infra.paths import DEFAULT_RESULTS

SWEEPS_ROOT = DEFAULT_RESULTS / "realdata" / "sweeps"
RUNS_ROOT = DEFAULT_RESULTS / "realdata" / "runs"
RESULTS_TABLE = DEFAULT_RESULTS / "realdata" / "evaluations.parquet"
EPISODES_ROOT = DEFAULT_RESULTS / "realdata" / "episodes"  # tables of `evaluate --episodes-from`
EVAL_BATCH = 25  # test episodes adapted at a time
MAX_EVAL_BATCH = 1000  # a batch of 1000 Mini-ImageNet episodes already needs ~7 GB
MIN_TEST_EPISODES = 600
DEFAULT_TEST_EPISODES = 1000
# Test-time inner loop of a run unless it says otherwise: plain gradient steps. Measured in the
# CPU study (docs/realdata.md, "The CPU study"): on the same checkpoints and test episodes, plain
# steps scored higher than adapting with the lower perturbation ("same") for every setting that
# has one (Sharp-MAML_low and _both, 4 seeds, paired 95% CIs above 0).
DEFAULT_EVAL_INNER_LOOP = "plain"
MAX_TEST_EPISODES = 100_000  # 100x the paper's protocol; the episode index alone is 64 MB
MAX_ITERATIONS = 10_000_000  # 166x the paper's 60000; over a week even on a GPU
CHECKPOINT_MINUTES = 10.0  # wall time between checkpoints, besides every val_every iterations
