"""CUDA float32 precision control: TF32 off by default for exact meta-gradients.

cuDNN allows TF32 convolutions by default; on an H200 that made a float32 Conv4
meta-gradient 48% off a float64 reference (0.1% with TF32 off). The engine therefore runs
each meta-gradient inside ``float32_precision(allow_tf32=False)`` unless told otherwise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

_HAS_PRECISION_API = hasattr(torch.backends.cuda.matmul, "fp32_precision") and hasattr(
    torch.backends.cudnn, "conv"
)


def _snapshot() -> tuple:
    if _HAS_PRECISION_API:
        return (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision)
    return (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)


def _apply(state: tuple) -> None:
    if _HAS_PRECISION_API:
        torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = state
    else:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = state


def _state_for(allow_tf32: bool) -> tuple:
    if _HAS_PRECISION_API:
        mode = "tf32" if allow_tf32 else "ieee"
        return (mode, mode)
    return (allow_tf32, allow_tf32)


@contextlib.contextmanager
def float32_precision(device: torch.device, allow_tf32: bool) -> Iterator[None]:
    """Within the block, CUDA matmuls and convolutions use TF32 only if allow_tf32.

    A no-op off CUDA. The previous global setting is restored on exit.
    """
    if device.type != "cuda":
        yield
        return
    saved = _snapshot()
    _apply(_state_for(allow_tf32))
    try:
        yield
    finally:
        _apply(saved)


def tf32_enabled() -> bool:
    """Whether TF32 is currently allowed for CUDA convolutions: the global setting that
    ``float32_precision`` changes inside its block and restores on exit."""
    state = _snapshot()
    return state[1] == "tf32" if _HAS_PRECISION_API else bool(state[1])
