"""The torch device a command runs on, from the user's choice or what the machine has."""

from __future__ import annotations

import torch

from harness.config import ConfigError


def resolve_device(name: str | None) -> torch.device:
    """``None`` -> cuda if available, else cpu; an unusable device is a ConfigError."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"device: expected cpu, cuda or cuda:N, got {name!r}") from exc
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device: expected cpu, cuda or cuda:N, got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} requested but CUDA is not available; expected cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(
            f"device: {name!r} requested; expected cuda:0 to cuda:{torch.cuda.device_count() - 1}"
        )
    return device
