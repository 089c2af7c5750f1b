"""The meta-learning engine: pure functions on parameter dicts, built on torch.func.

A task supplies ``loss(params, batch) -> scalar``; the engine never knows whether that loss
is a synthetic quadratic or a CNN. Every method of the project (MAML, FO-MAML,
Sharp-MAML low/up/both) is the same three functions with different settings:

- ``inner_gradient``: the lower-level step direction of one task, with the optional SAM
  ascent of radius alpha_low (gradient taken at the perturbed point, step applied at the
  unperturbed one; docs/theory.md#the-algorithm).
- ``task_meta_loss``: adapt on the support batch, evaluate the adapted parameters on the
  query batch. Its torch.func gradient is the per-task meta-gradient.
- ``meta_gradient``: the batch-mean meta-gradient through an executor, with the optional
  two-pass upper perturbation of radius alpha_up.

The cheaper-variant candidates are settings of the same functions: the inner loop may adapt
only the head (``cfg.inner_params``), the lower perturbation may touch only some tensors
(``cfg.lower_tensors``), and pass 1 of the upper perturbation may be skipped by reusing an
earlier direction (``ascent`` of ``meta_gradient``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch.func import grad, grad_and_value, vmap

from harness.config import HEAD_PREFIX, ConfigError, MetaConfig
from harness.precision import float32_precision
from harness.tasks import TaskBatch
from harness.tree import Params, tree_add, tree_add_on, tree_detach, tree_map, tree_normalized

LossFn = Callable[[Params, Any], torch.Tensor]
Radius = float | torch.Tensor


class Radii(NamedTuple):
    """Perturbation radii for one call; tensors allowed, so vmap can batch over radii.

    ``None`` passed to the engine means the radii of the config. Which perturbations are
    active is always decided by the config's method.

    ``second_order`` is the weight of the inner loop's Jacobian in the meta-gradient, per call:
    1 keeps it (the config's method), 0 drops it (FO-MAML's meta-gradient, as
    ``cfg.first_order``). As a tensor of 0s and 1s it lets one batched run hold second- and
    first-order lanes; each lane's values are exactly those of its own method, since
    w g + (1 - w) stop_grad(g) is g bit for bit when w is 0 or 1. Other values are no method.
    """

    alpha_low: Radius
    alpha_up: Radius
    second_order: float | torch.Tensor = 1.0

    @classmethod
    def of(cls, cfg: MetaConfig, radii: Radii | None) -> Radii:
        return radii if radii is not None else cls(cfg.alpha_low, cfg.alpha_up)


@dataclass(frozen=True)
class MetaStep:
    """Result of one outer step: the meta-gradient to apply at theta and the meta-loss.

    ``loss`` is the batch-mean meta-loss at theta (pass 1); for the two-pass methods
    ``perturbed_loss`` is the meta-loss at theta + eps (pass 2), else None. ``ascent`` is the
    pass-1 meta-gradient whose direction gave eps (None without upper perturbation), kept to
    be reused (``cfg.ascent_every``). A step that reused it ran no pass 1: its ``loss`` is
    then the meta-loss at theta + eps, the only point it evaluated.
    """

    grad: Params
    loss: torch.Tensor
    perturbed_loss: torch.Tensor | None = None
    ascent: Params | None = None


def adapted_names(params: Params, cfg: MetaConfig) -> tuple[str, ...]:
    """The parameters the inner loop adapts: all, or those named ``head.*`` (ANIL)."""
    if cfg.inner_params == "all":
        return tuple(params)
    names = tuple(k for k in params if k.startswith(HEAD_PREFIX))
    if not names:
        raise ConfigError(
            f"inner_params: 'head' adapts the parameters named {HEAD_PREFIX}*; the model has none "
            f"(its parameters: {list(params)}); expected inner_params 'all' or a model with a head"
        )
    return names


def perturbed_names(adapted: tuple[str, ...], cfg: MetaConfig) -> tuple[str, ...]:
    """The adapted tensors the lower perturbation touches, in the parameters' order."""
    if cfg.lower_tensors is None:
        return adapted
    unknown = sorted(set(cfg.lower_tensors) - set(adapted))
    if unknown:
        raise ConfigError(
            f"lower_tensors: {unknown} are not adapted by the inner loop; expected names among {list(adapted)}"
        )
    return tuple(k for k in adapted if k in cfg.lower_tensors)


def inner_gradient(
    loss: LossFn, params: Params, support: Any, cfg: MetaConfig, radii: Radii | None = None
) -> Params:
    """Direction of one inner step of one task (before scaling by -inner_lr), over the adapted
    parameters only (``adapted_names``; the others enter the loss unchanged).

    Plain methods: grad L(theta; D_m). Lower-perturbed methods: eps_m = alpha_low g/(|g|+eps),
    then grad L(theta + eps_m; D_m), with g and eps_m restricted to the perturbed tensors
    (``perturbed_names``: all adapted ones unless ``cfg.lower_tensors``).
    ``cfg.diff_through_perturbation`` decides whether eps_m carries its graph into the
    meta-gradient; ``cfg.first_order`` (or a ``second_order`` weight of 0 in ``radii``) drops
    the graph of the whole direction.
    """
    names = adapted_names(params, cfg)

    def adapted_loss(adapted: Params, batch: Any) -> torch.Tensor:
        return loss({**params, **adapted}, batch)

    adapted = {k: params[k] for k in names}
    settings = Radii.of(cfg, radii)
    g = grad(adapted_loss)(adapted, support)
    if cfg.uses_lower_perturbation:
        direction = {k: g[k] for k in perturbed_names(names, cfg)}
        direction = direction if cfg.diff_through_perturbation else tree_detach(direction)
        eps = tree_normalized(direction, settings.alpha_low, cfg.eps)
        g = grad(adapted_loss)(tree_add_on(adapted, eps), support)
    if cfg.first_order:
        return tree_detach(g)
    weight = settings.second_order
    if isinstance(weight, torch.Tensor):
        g = {k: weight * v + (1 - weight) * v.detach() for k, v in g.items()}
    elif weight != 1:
        g = tree_detach(g)
    return g


def adapt(loss: LossFn, params: Params, support: Any, cfg: MetaConfig, radii: Radii | None = None) -> Params:
    """theta_m after ``cfg.inner_steps`` inner steps on the support batch (the parameters the
    inner loop does not adapt are returned unchanged)."""
    for _ in range(cfg.inner_steps):
        step = inner_gradient(loss, params, support, cfg, radii)
        params = tree_add_on(params, step, -cfg.inner_lr)
    return params


def task_meta_loss(
    loss: LossFn,
    params: Params,
    support: Any,
    query: Any,
    cfg: MetaConfig,
    radii: Radii | None = None,
) -> torch.Tensor:
    """L(theta_m(theta); D'_m): the meta-objective of one task."""
    return loss(adapt(loss, params, support, cfg, radii), query)


def task_meta_grad_fn(
    loss: LossFn, cfg: MetaConfig, radii: Radii | None = None
) -> Callable[..., tuple[Params, torch.Tensor]]:
    """(params, support, query) -> (meta-gradient, meta-loss) of one task.

    The single per-task function both executors run. The outer gradient is taken inside
    torch.func, which keeps second-order meta-gradients exact under vmap also with BatchNorm
    batch statistics (an outer ordinary-autograd gradient over a vmapped torch.func.grad is
    not, see tests/test_engine_exactness.py).
    """

    def meta_objective(params: Params, support: Any, query: Any) -> torch.Tensor:
        return task_meta_loss(loss, params, support, query, cfg, radii)

    return grad_and_value(meta_objective)


def resolve_executor(cfg: MetaConfig, device: torch.device) -> str:
    """``auto`` -> vmap on CUDA, loop elsewhere."""
    if cfg.executor != "auto":
        return cfg.executor
    return "vmap" if device.type == "cuda" else "loop"


def loop_executor(
    loss: LossFn, params: Params, tasks: TaskBatch, cfg: MetaConfig, radii: Radii | None = None
) -> MetaStep:
    """Batch-mean meta-gradient, one task at a time (exact; memory of a single task)."""
    per_task = task_meta_grad_fn(loss, cfg, radii)
    n = tasks.num_tasks
    total_grad, total_loss = per_task(params, *tasks.task(0))
    for i in range(1, n):
        g, value = per_task(params, *tasks.task(i))
        total_grad, total_loss = tree_add(total_grad, g), total_loss + value
    return MetaStep(grad=tree_map(lambda v: v / n, total_grad), loss=total_loss / n)


def vmap_executor(
    loss: LossFn, params: Params, tasks: TaskBatch, cfg: MetaConfig, radii: Radii | None = None
) -> MetaStep:
    """Batch-mean meta-gradient with torch.func.vmap over tasks (chunked if cfg.chunk_size)."""
    per_task = vmap(task_meta_grad_fn(loss, cfg, radii), in_dims=(None, 0, 0), chunk_size=cfg.chunk_size)
    grads, values = per_task(params, tasks.support, tasks.query)
    return MetaStep(grad=tree_map(lambda v: v.mean(0), grads), loss=values.mean())


EXECUTOR_FUNCTIONS = {"loop": loop_executor, "vmap": vmap_executor}


def plain_meta_gradient(
    loss: LossFn, params: Params, tasks: TaskBatch, cfg: MetaConfig, radii: Radii | None = None
) -> MetaStep:
    """Batch-mean meta-gradient at params, no upper perturbation (pass 1 of SAM)."""
    params = tree_detach(params)
    device = next(iter(params.values())).device
    executor = EXECUTOR_FUNCTIONS[resolve_executor(cfg, device)]
    with float32_precision(device, cfg.allow_tf32):
        return executor(loss, params, tasks, cfg, radii)


def meta_gradient(
    loss: LossFn,
    params: Params,
    tasks: TaskBatch,
    cfg: MetaConfig,
    radii: Radii | None = None,
    ascent: Params | None = None,
) -> MetaStep:
    """The meta-gradient a method applies at theta, and the meta-loss.

    MAML / FO-MAML / Sharp-MAML_low: the batch-mean meta-gradient. Sharp-MAML_up/_both: the
    two-pass SAM step on the same task batch: eps = alpha_up * g/(|g| + eps) from pass 1
    (a constant), then the meta-gradient recomputed at theta + eps (the lower perturbation
    recomputed there too), to be applied at theta. ``radii`` overrides the config's radii
    (tensors allowed, e.g. batched by vmap over a grid of radii). ``ascent``: a pass-1
    meta-gradient of an earlier step (``MetaStep.ascent``) whose direction is reused, and
    pass 1 skipped (``cfg.ascent_every`` > 1); ignored without upper perturbation.
    """
    if not cfg.uses_upper_perturbation:
        return plain_meta_gradient(loss, params, tasks, cfg, radii)
    first = None if ascent is not None else plain_meta_gradient(loss, params, tasks, cfg, radii)
    ascent = first.grad if first is not None else ascent
    eps = tree_normalized(ascent, Radii.of(cfg, radii).alpha_up, cfg.eps)
    second = plain_meta_gradient(loss, tree_add(tree_detach(params), eps), tasks, cfg, radii)
    loss_at_theta = first.loss if first is not None else second.loss
    return MetaStep(grad=second.grad, loss=loss_at_theta, perturbed_loss=second.loss, ascent=ascent)
