"""``python -m harness`` runs the ``sharpmaml`` command."""

import sys

from harness.cli import main

sys.exit(main())
