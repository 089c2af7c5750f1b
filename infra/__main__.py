"""``python -m infra`` runs the ``sharpmaml`` command."""

import sys

from infra.cli import run

if __name__ == "__main__":  # not when a spawned worker process re-imports the main module
    sys.exit(run())
