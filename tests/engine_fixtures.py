"""Small float64 workloads (loss, parameters, task batch) for the engine's exactness tests."""

from __future__ import annotations

import torch

from harness.config import MetaConfig
from harness.meta import task_meta_loss
from harness.tasks import TaskBatch
from harness.tree import Params
from realdata.models import Conv4Loss, Conv4Spec, conv4_init

DTYPE = torch.float64
METHOD_RADII = {
    "maml": {},
    "fomaml": {},
    "sharp_low": {"alpha_low": 0.05},
    "sharp_up": {"alpha_up": 0.05},
    "sharp_both": {"alpha_low": 0.05, "alpha_up": 0.05},
}


def mlp_loss(params: Params, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy of a 4-6-3 tanh MLP."""
    x, y = batch
    h = torch.tanh(x @ params["w1"] + params["b1"])
    return torch.nn.functional.cross_entropy(h @ params["w2"] + params["b2"], y)


def mlp_workload(seed: int = 0, num_tasks: int = 3) -> tuple:
    g = torch.Generator().manual_seed(seed)
    params = {
        "w1": torch.randn(4, 6, generator=g, dtype=DTYPE) * 0.7,
        "b1": torch.randn(6, generator=g, dtype=DTYPE) * 0.1,
        "w2": torch.randn(6, 3, generator=g, dtype=DTYPE) * 0.7,
        "b2": torch.randn(3, generator=g, dtype=DTYPE) * 0.1,
    }
    tasks = TaskBatch(
        (
            torch.randn(num_tasks, 6, 4, generator=g, dtype=DTYPE),
            torch.randint(0, 3, (num_tasks, 6), generator=g),
        ),
        (
            torch.randn(num_tasks, 9, 4, generator=g, dtype=DTYPE),
            torch.randint(0, 3, (num_tasks, 9), generator=g),
        ),
    )
    return mlp_loss, params, tasks


def conv_bn_workload(seed: int = 0, num_tasks: int = 3, smooth: bool = True) -> tuple:
    """Two Conv4 blocks (3 filters, 8x8 inputs) with batch-statistics BatchNorm.

    smooth=True swaps ReLU/max-pool for softplus/avg-pool: finite differences need a
    meta-objective without jumps (the inner gradient of a ReLU net jumps at kinks).
    """
    spec = Conv4Spec(
        in_channels=1,
        image_size=8,
        filters=3,
        blocks=2,
        num_classes=3,
        activation="softplus" if smooth else "relu",
        pooling="avg" if smooth else "max",
    )
    g = torch.Generator().manual_seed(seed)
    params = conv4_init(spec, g, DTYPE)
    for i in range(spec.blocks):  # move BN affine away from (1, 0) so its gradients are generic
        params[f"bn{i}.weight"] = params[f"bn{i}.weight"] + 0.2 * torch.randn(
            spec.filters, generator=g, dtype=DTYPE
        )
        params[f"bn{i}.bias"] = params[f"bn{i}.bias"] + 0.2 * torch.randn(
            spec.filters, generator=g, dtype=DTYPE
        )
    tasks = TaskBatch(
        (
            torch.randn(num_tasks, 6, 1, 8, 8, generator=g, dtype=DTYPE),
            torch.randint(0, 3, (num_tasks, 6), generator=g),
        ),
        (
            torch.randn(num_tasks, 9, 1, 8, 8, generator=g, dtype=DTYPE),
            torch.randint(0, 3, (num_tasks, 9), generator=g),
        ),
    )
    return Conv4Loss(spec), params, tasks


WORKLOADS = {"mlp": mlp_workload, "conv_bn": conv_bn_workload}
EXECUTOR_WORKLOADS = {**WORKLOADS, "conv4_relu_maxpool": lambda: conv_bn_workload(smooth=False)}


def batch_meta_objective(loss, params: Params, tasks: TaskBatch, cfg: MetaConfig) -> torch.Tensor:
    """Mean over tasks of the per-task meta-loss, computed task by task."""
    values = [task_meta_loss(loss, params, *tasks.task(i), cfg) for i in range(tasks.num_tasks)]
    return torch.stack(values).mean()


def central_difference_gradient(fn, params: Params, h: float = 1e-6) -> Params:
    """Central finite differences of a scalar function of a parameter dict, every coordinate."""
    out: Params = {}
    with torch.no_grad():
        for name, value in params.items():
            flat = torch.zeros(value.numel(), dtype=value.dtype)
            for j in range(value.numel()):
                bump = torch.zeros(value.numel(), dtype=value.dtype)
                bump[j] = h
                shifted = lambda sign: {**params, name: value + sign * bump.view_as(value)}  # noqa: E731
                flat[j] = (fn(shifted(1.0)) - fn(shifted(-1.0))) / (2 * h)
            out[name] = flat.view_as(value)
    return out


def relative_error(a: Params, b: Params) -> float:
    """||a - b|| / ||b|| over all leaves."""
    num = sum(((a[k] - b[k]) ** 2).sum() for k in b)
    den = sum((b[k] ** 2).sum() for k in b)
    return float(torch.sqrt(num / den))
