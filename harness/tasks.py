"""A batch of tasks: support and query batches stacked along a leading task dimension."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils import _pytree as pytree

from harness.config import ConfigError


@dataclass(frozen=True)
class TaskBatch:
    """Support (lower level, D_m) and query (upper level, D'_m) data of B tasks.

    Each of ``support`` and ``query`` is any pytree of tensors (a tensor, tuple or dict) whose
    leaves all have the task index as their first dimension. The engine never looks inside:
    it only slices task i and hands the slice to the user's ``loss(params, batch)``.
    """

    support: Any
    query: Any

    def __post_init__(self) -> None:
        _ = self.num_tasks  # the property validates the shapes

    @property
    def num_tasks(self) -> int:
        """B, the number of tasks (checked to agree across every leaf)."""
        sizes: dict[str, int] = {}
        for part in ("support", "query"):
            leaves, _ = pytree.tree_flatten(getattr(self, part))
            if not leaves:
                raise ConfigError(f"{part}: expected at least one tensor, got an empty batch")
            for i, leaf in enumerate(leaves):
                if not isinstance(leaf, torch.Tensor) or leaf.dim() == 0:
                    raise ConfigError(
                        f"{part}[leaf {i}]: expected a tensor with a leading task dimension, "
                        f"got {type(leaf).__name__} of shape {getattr(leaf, 'shape', None)}"
                    )
                sizes[f"{part}[leaf {i}]"] = leaf.shape[0]
        if len(set(sizes.values())) != 1:
            listing = ", ".join(f"{k}: {v}" for k, v in sizes.items())
            raise ConfigError(
                "task batch: every support and query tensor must have the same number of tasks "
                f"in its first dimension; got {listing}"
            )
        return next(iter(sizes.values()))

    def task(self, i: int) -> tuple[Any, Any]:
        """(support, query) of task i."""
        take = lambda x: x[i]  # noqa: E731
        return pytree.tree_map(take, self.support), pytree.tree_map(take, self.query)

    def select(self, index: torch.Tensor | slice) -> TaskBatch:
        """The sub-batch of the given tasks."""
        take = lambda x: x[index]  # noqa: E731
        return TaskBatch(pytree.tree_map(take, self.support), pytree.tree_map(take, self.query))

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> TaskBatch:
        """Move every leaf; floating leaves are cast to dtype when given."""

        def move(x: torch.Tensor) -> torch.Tensor:
            if dtype is not None and x.is_floating_point():
                return x.to(device=device, dtype=dtype)
            return x.to(device=device)

        return TaskBatch(pytree.tree_map(move, self.support), pytree.tree_map(move, self.query))
