"""Every random draw comes from a seed derived from one global seed and a name path.

``derive_seed(global_seed, "rate", "Q1", "maml", 3)`` is stable across runs, machines and
Python hash seeds (it hashes the path with sha256), and different paths give independent
streams.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DEFAULT_SEED = 20220606  # arXiv 2206.03996


def derive_seed(global_seed: int, *path: object) -> int:
    """A 63-bit seed for the named purpose, derived from the global seed."""
    text = "/".join([str(int(global_seed)), *map(str, path)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def generator(global_seed: int, *path: object, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch.Generator seeded with ``derive_seed(global_seed, *path)``."""
    import torch

    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(global_seed, *path))
    return g
