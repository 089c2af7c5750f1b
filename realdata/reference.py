"""The authors' way of computing a meta-gradient, kept as a reference for the engine.

``reference_meta_gradient`` follows the authors' code (pytorch-maml style): one task at a time,
plain autograd, ``create_graph=True`` in every inner step, the task losses summed and
differentiated once; Sharp-MAML's lower perturbation keeps its graph and the upper one is a
second full pass at theta + eps. Tests check in float64 that the engine computes the same
meta-gradient; ``benchmarks/realdata_speed.py`` times both on the ``Case`` workloads below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from harness.config import MetaConfig
from harness.meta import LossFn
from harness.tasks import TaskBatch
from harness.tree import Params, tree_norm
from realdata.models import Conv4Loss, Conv4Spec, conv4_init


@dataclass(frozen=True)
class Case:
    """One benchmark setting: data shape, model width, task batch, inner loop."""

    name: str
    channels: int
    image_size: int
    filters: int
    tasks: int
    ways: int = 5
    shots: int = 1
    queries: int = 15
    inner_steps: int = 5
    inner_lr: float = 0.1
    alpha: float = 0.05


def meta_config(case: Case, method: str, executor: str, allow_tf32: bool = False) -> MetaConfig:
    """The engine's config of a case: second order, both radii = case.alpha for sharp_both."""
    alpha = case.alpha if method == "sharp_both" else 0.0
    return MetaConfig(
        method=method,
        inner_steps=case.inner_steps,
        inner_lr=case.inner_lr,
        alpha_low=alpha,
        alpha_up=alpha,
        executor=executor,
        allow_tf32=allow_tf32,
    )


def make_workload(
    case: Case, device: torch.device, dtype: torch.dtype
) -> tuple[Conv4Loss, Params, TaskBatch]:
    """Conv4 loss, initial parameters and a random task batch (labels grouped by class).

    Values are drawn in float32 and then cast, so every dtype holds the same numbers.
    """
    spec = Conv4Spec(
        in_channels=case.channels, image_size=case.image_size, filters=case.filters, num_classes=case.ways
    )
    g = torch.Generator().manual_seed(0)
    params = {k: v.to(device, dtype) for k, v in conv4_init(spec, g).items()}

    def part(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = case.ways * per_class
        x = torch.rand(case.tasks, n, case.channels, case.image_size, case.image_size, generator=g)
        y = torch.arange(case.ways).repeat_interleave(per_class).expand(case.tasks, n)
        return x.to(device, dtype), y.contiguous().to(device)

    return Conv4Loss(spec), params, TaskBatch(part(case.shots), part(case.queries))


def reference_meta_gradient(loss: LossFn, params: Params, tasks: TaskBatch, cfg: MetaConfig) -> Params:
    """The authors' way: per-task autograd loop, create_graph=True, SAM as a second pass."""

    def adapted_loss(theta: Params, support: Any, query: Any) -> torch.Tensor:
        fast = theta
        for _ in range(cfg.inner_steps):
            names = list(fast)
            grads = torch.autograd.grad(loss(fast, support), [fast[n] for n in names], create_graph=True)
            if cfg.uses_lower_perturbation:
                norm = torch.sqrt(sum((g * g).sum() for g in grads))
                perturbed = {n: fast[n] + cfg.alpha_low * g / (norm + cfg.eps) for n, g in zip(names, grads)}
                grads = torch.autograd.grad(
                    loss(perturbed, support), [perturbed[n] for n in names], create_graph=True
                )
            fast = {n: fast[n] - cfg.inner_lr * g for n, g in zip(names, grads)}
        return loss(fast, query)

    def one_pass(point: Params) -> Params:
        theta = {k: v.detach().clone().requires_grad_(True) for k, v in point.items()}
        total = sum(adapted_loss(theta, *tasks.task(i)) for i in range(tasks.num_tasks))
        grads = torch.autograd.grad(total / tasks.num_tasks, list(theta.values()))
        return dict(zip(theta, grads))

    grad = one_pass(params)
    if cfg.uses_upper_perturbation:
        scale = cfg.alpha_up / (tree_norm(grad) + cfg.eps)
        grad = one_pass({k: v + scale * grad[k] for k, v in params.items()})
    return grad


def relative_error(a: Params, b: Params) -> float:
    """||a - b|| / ||b|| over all leaves (b is the reference), in float64."""
    diff = {k: a[k].double() - b[k].double() for k in b}
    return float(tree_norm(diff) / tree_norm({k: v.double() for k, v in b.items()}))
