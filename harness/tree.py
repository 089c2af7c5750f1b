"""Arithmetic on parameter dicts (name -> tensor), the pytree the engine works on."""

from __future__ import annotations

from collections.abc import Callable

import torch

Params = dict[str, torch.Tensor]


def tree_add(a: Params, b: Params, scale: float | torch.Tensor = 1.0) -> Params:
    """a + scale * b, leaf by leaf."""
    return {k: a[k] + scale * b[k] for k in a}


def tree_add_on(a: Params, b: Params, scale: float | torch.Tensor = 1.0) -> Params:
    """a + scale * b on the leaves b has (a subset of a's); a's other leaves unchanged."""
    return {k: a[k] + scale * b[k] if k in b else a[k] for k in a}


def tree_scale(a: Params, scale: float | torch.Tensor) -> Params:
    """scale * a, leaf by leaf."""
    return {k: scale * v for k, v in a.items()}


def tree_norm(a: Params) -> torch.Tensor:
    """Global Euclidean norm over all leaves (the norm SAM normalises by)."""
    return torch.sqrt(sum((v * v).sum() for v in a.values()))


def tree_normalized(a: Params, radius: float | torch.Tensor, eps: float) -> Params:
    """radius * a / (||a|| + eps): the normalised ascent direction of SAM."""
    return tree_scale(a, radius / (tree_norm(a) + eps))


def tree_detach(a: Params) -> Params:
    """Cut every leaf from the graph (also inside torch.func transforms)."""
    return {k: v.detach() for k, v in a.items()}


def tree_map(fn: Callable[[torch.Tensor], torch.Tensor], a: Params) -> Params:
    """Apply fn to every leaf."""
    return {k: fn(v) for k, v in a.items()}
