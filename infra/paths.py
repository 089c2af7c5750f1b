"""Where files are: the repository root, the stored baselines and the user's results store."""

from __future__ import annotations

import os
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


RESULTS_ENV = "SHARPMAML_RESULTS"


def user_folder(override_env: str, xdg_env: str, home_fallback: str) -> Path:
    """``$override_env`` if set, else ``$xdg_env/sharpmaml`` when that is an absolute path (the
    XDG rule), else ``~/<home_fallback>/sharpmaml``: a per-user folder, never the checkout or
    the installed package."""
    override = os.environ.get(override_env)
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get(xdg_env, "")
    return (Path(xdg) if Path(xdg).is_absolute() else Path.home() / home_fallback) / "sharpmaml"


def results_root() -> Path:
    """The results store the commands write under and the report reads: ``$SHARPMAML_RESULTS``,
    else ``$XDG_DATA_HOME/sharpmaml``, else ``~/.local/share/sharpmaml``."""
    return user_folder(RESULTS_ENV, "XDG_DATA_HOME", ".local/share")


# The store as this process found it (argparse defaults and their --help text).
DEFAULT_RESULTS = results_root()

# The stored accuracy baselines: the checkout's file, also from the wheel that tox installs
# (repo_root looks above .tox). Read by the gate and by the report.
DEFAULT_BASELINES = repo_root() / "realdata" / "baselines" / "baselines.csv"
