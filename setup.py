"""Build hook only (everything else is in pyproject.toml): stamp the git sha of the checkout a
wheel is built from into the package, ``infra/build_stamp.json``, so an installed copy outside
any checkout (a tox env in another work folder) still records which code made its results."""

import json
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from infra.provenance import BUILD_STAMP, checkout_sha  # noqa: E402 - needs ROOT on the path


class BuildPyWithStamp(build_py):
    """build_py, then the stamp next to the built ``infra`` package (when built from git)."""

    def run(self) -> None:
        super().run()
        sha = checkout_sha(ROOT)
        if sha:
            stamp = Path(self.build_lib) / "infra" / BUILD_STAMP.name
            stamp.write_text(json.dumps({"git_sha": sha}), encoding="utf-8")


setup(cmdclass={"build_py": BuildPyWithStamp})
