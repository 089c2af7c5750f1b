"""The real-data track's default locations and sizes, importable without torch (the CLI's
``--help`` and flag checks read them before any heavy module loads)."""

from __future__ import annotations

from pathlib import Path

RUNS_ROOT = Path("results/realdata/runs")
RESULTS_TABLE = Path("results/realdata/evaluations.parquet")
EVAL_BATCH = 25  # test episodes adapted at a time
MIN_TEST_EPISODES = 600
DEFAULT_TEST_EPISODES = 1000
