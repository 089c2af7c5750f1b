"""Conv4, the few-shot backbone of MAML and Sharp-MAML, as a pure function of a parameter dict.

Each block: 3x3 convolution (padding 1), BatchNorm with batch statistics (also at test time,
as MAML does), ReLU, 2x2 max-pool; then a linear head. A smooth variant (softplus,
average pooling) exists for finite-difference tests. BatchNorm is written from primitive
ops (mean, variance, affine), which keeps vmap-over-tasks meta-gradients exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from harness.config import ConfigError, require_int
from harness.tree import Params

BN_EPS = 1e-5
# ReLU and max-pool are the backbone's; the smooth pair exists for finite-difference tests,
# because an inner gradient of a ReLU net jumps at kinks, and so does the meta-objective.
ACTIVATIONS = {"relu": F.relu, "softplus": F.softplus}
POOLINGS = {"max": F.max_pool2d, "avg": F.avg_pool2d}


@dataclass(frozen=True)
class Conv4Spec:
    """Shape of the backbone: input channels and side, filters per block, blocks, classes."""

    in_channels: int = 1
    image_size: int = 28
    filters: int = 64
    blocks: int = 4
    num_classes: int = 5
    activation: str = "relu"
    pooling: str = "max"

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"activation: expected one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling: expected one of {sorted(POOLINGS)}, got {self.pooling!r}")
        for name in ("in_channels", "image_size", "filters", "blocks", "num_classes"):
            require_int(getattr(self, name), name, minimum=1)
        if self.feature_side < 1:
            raise ConfigError(
                f"image_size: {self.image_size} is too small for {self.blocks} pooling blocks; "
                f"expected at least {2**self.blocks}"
            )

    @property
    def feature_side(self) -> int:
        """Spatial side after the pooling blocks (floor division by 2 per block)."""
        side = self.image_size
        for _ in range(self.blocks):
            side //= 2
        return side

    @property
    def feature_dim(self) -> int:
        return self.filters * self.feature_side**2


def batch_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """BatchNorm over (N, H, W) with batch statistics and no running averages."""
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
    x_hat = (x - mean) / torch.sqrt(var + BN_EPS)
    return x_hat * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)


def conv4_forward(params: Params, x: torch.Tensor, spec: Conv4Spec) -> torch.Tensor:
    """Logits of a batch of images x (N, C, H, W)."""
    h = x
    for i in range(spec.blocks):
        h = F.conv2d(h, params[f"conv{i}.weight"], params[f"conv{i}.bias"], padding=1)
        h = batch_norm(h, params[f"bn{i}.weight"], params[f"bn{i}.bias"])
        h = POOLINGS[spec.pooling](ACTIVATIONS[spec.activation](h), 2)
    return F.linear(h.flatten(1), params["head.weight"], params["head.bias"])


def conv4_init(spec: Conv4Spec, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> Params:
    """Parameters drawn like torch's defaults (Kaiming-uniform bounds), from an explicit generator."""

    def uniform(shape: tuple[int, ...], fan_in: int) -> torch.Tensor:
        bound = 1.0 / math.sqrt(fan_in)
        return (torch.rand(shape, generator=generator, dtype=dtype) * 2 - 1) * bound

    params: Params = {}
    cin = spec.in_channels
    for i in range(spec.blocks):
        fan_in = cin * 9
        params[f"conv{i}.weight"] = uniform((spec.filters, cin, 3, 3), fan_in)
        params[f"conv{i}.bias"] = uniform((spec.filters,), fan_in)
        params[f"bn{i}.weight"] = torch.ones(spec.filters, dtype=dtype)
        params[f"bn{i}.bias"] = torch.zeros(spec.filters, dtype=dtype)
        cin = spec.filters
    params["head.weight"] = uniform((spec.num_classes, spec.feature_dim), spec.feature_dim)
    params["head.bias"] = uniform((spec.num_classes,), spec.feature_dim)
    return params


class Conv4Loss:
    """``loss(params, (x, y))``: mean cross-entropy of Conv4 logits, the engine's task loss."""

    def __init__(self, spec: Conv4Spec) -> None:
        self.spec = spec

    def __call__(self, params: Params, batch: Any) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(conv4_forward(params, x, self.spec), y)

    def logits(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        return conv4_forward(params, x, self.spec)
