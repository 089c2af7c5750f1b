"""Where the project's own files are: the repository root and the stored baselines."""

from __future__ import annotations

from pathlib import Path

PROJECT_NAME = "sharp-maml-bench"


def _is_project_root(folder: Path) -> bool:
    pyproject = folder / "pyproject.toml"
    return pyproject.is_file() and f'name = "{PROJECT_NAME}"' in pyproject.read_text("utf-8")


def source_tree() -> Path | None:
    """The checkout the running code was imported from, or None for an installed wheel."""
    folder = Path(__file__).resolve().parents[1]
    return folder if _is_project_root(folder) else None


def repo_root() -> Path:
    """The repository root: the nearest folder holding this project's pyproject.toml above the
    package (editable install, or a wheel inside the repo's .tox), else above the working
    directory; failing both, the folder above the ``infra`` package."""
    package = Path(__file__).resolve()
    for start in (package.parent, Path.cwd().resolve()):
        for folder in (start, *start.parents):
            if _is_project_root(folder):
                return folder
    return package.parents[1]


# The results store the suites write under and the report reads (relative to the working directory).
DEFAULT_RESULTS = Path("results")

# The stored accuracy baselines: the checkout's file, also from the wheel that tox installs
# (repo_root looks above .tox). Read by the gate and by the report.
DEFAULT_BASELINES = repo_root() / "realdata" / "baselines" / "baselines.csv"
