"""``python -m infra`` runs the ``sharpmaml`` command."""

import sys

from infra.cli import main

sys.exit(main())
