"""The one exception every dataset reader raises for missing, malformed or unsafe data."""

from __future__ import annotations

from infra.errors import UsageError


class DatasetError(UsageError):
    """Data is missing or malformed.

    The message names the file or folder, what was expected there, and (where it helps) where
    to put the data.
    """
