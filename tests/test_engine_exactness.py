"""Exactness of the engine in float64: finite differences, executors, special cases."""

from __future__ import annotations

import pytest
import torch
from torch.func import grad

from harness.config import METHODS, MetaConfig
from harness.meta import Radii, meta_gradient, plain_meta_gradient
from harness.tasks import TaskBatch
from harness.tree import Params, tree_add, tree_normalized
from tests.engine_fixtures import (
    EXECUTOR_WORKLOADS,
    METHOD_RADII,
    WORKLOADS,
    batch_meta_objective,
    central_difference_gradient,
    relative_error,
)

FD_TOLERANCE = 1e-6
# Every method of the fixtures except the first-order ones, whose meta-gradient drops the
# inner-loop Jacobian on purpose (FO-MAML has its closed-form test below).
EXACT_METHODS = sorted(m for m in METHOD_RADII if not MetaConfig(method=m).first_order)


def test_the_fixtures_give_every_method_of_the_engine_its_radii() -> None:
    assert sorted(METHOD_RADII) == sorted(METHODS)
    assert "fomaml" not in EXACT_METHODS and {"maml", "sharp_both"} <= set(EXACT_METHODS)


def config(method: str, steps: int, executor: str = "loop", **extra) -> MetaConfig:
    return MetaConfig(
        method=method, inner_steps=steps, inner_lr=0.3, executor=executor, **METHOD_RADII[method], **extra
    )


@pytest.mark.parametrize("workload", sorted(WORKLOADS))
@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("method", EXACT_METHODS)
def test_meta_gradient_matches_finite_differences(workload: str, steps: int, method: str) -> None:
    """Each exact method's meta-gradient is the gradient of its own meta-objective.

    MAML and _low: d/dtheta of the batch meta-loss (through eps_m, as the authors' code).
    _up and _both: the gradient of the same objective taken at theta + eps, eps from pass 1.
    """
    loss, params, tasks = WORKLOADS[workload]()
    cfg = config(method, steps)
    result = meta_gradient(loss, params, tasks, cfg)
    point = params
    if cfg.uses_upper_perturbation:
        first = plain_meta_gradient(loss, params, tasks, cfg)
        point = tree_add(params, tree_normalized(first.grad, cfg.alpha_up, cfg.eps))
    reference = central_difference_gradient(lambda p: batch_meta_objective(loss, p, tasks, cfg), point)
    assert relative_error(result.grad, reference) <= FD_TOLERANCE


@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_stop_gradient_lower_perturbation_matches_frozen_eps_objective(workload: str) -> None:
    """diff_through_perturbation=False is SAM's rule: eps_m is a constant of theta."""
    loss, params, tasks = WORKLOADS[workload]()
    cfg = config("sharp_low", 1, diff_through_perturbation=False)
    result = meta_gradient(loss, params, tasks, cfg)

    def frozen_objective(p: Params) -> torch.Tensor:
        values = []
        for i in range(tasks.num_tasks):
            support, query = tasks.task(i)
            eps = tree_normalized(grad(loss)(params, support), cfg.alpha_low, cfg.eps)
            adapted = tree_add(p, grad(loss)(tree_add(p, eps), support), -cfg.inner_lr)
            values.append(loss(adapted, query))
        return torch.stack(values).mean()

    reference = central_difference_gradient(frozen_objective, params)
    assert relative_error(result.grad, reference) <= FD_TOLERANCE
    differentiated = meta_gradient(loss, params, tasks, config("sharp_low", 1))
    assert relative_error(result.grad, differentiated.grad) > 1e-4, "the two rules must differ"


@pytest.mark.parametrize("workload", sorted(EXECUTOR_WORKLOADS))
@pytest.mark.parametrize("method", sorted(METHOD_RADII))
@pytest.mark.parametrize("chunk_size", [None, 2])
def test_loop_and_vmap_executors_agree(workload: str, method: str, chunk_size: int | None) -> None:
    """Includes BatchNorm with batch statistics: the vmap trap must not bite our engine."""
    loss, params, tasks = EXECUTOR_WORKLOADS[workload]()
    loop = meta_gradient(loss, params, tasks, config(method, 3, "loop"))
    vmapped = meta_gradient(loss, params, tasks, config(method, 3, "vmap", chunk_size=chunk_size))
    assert relative_error(vmapped.grad, loop.grad) <= 1e-10
    assert abs(float(vmapped.loss - loop.loss)) <= 1e-10 * abs(float(loop.loss))


@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_zero_radius_sharp_methods_equal_maml(workload: str) -> None:
    loss, params, tasks = WORKLOADS[workload]()
    maml = meta_gradient(loss, params, tasks, MetaConfig("maml", inner_steps=3, inner_lr=0.3))
    up = meta_gradient(loss, params, tasks, MetaConfig("sharp_up", inner_steps=3, inner_lr=0.3, alpha_up=0.0))
    low = meta_gradient(
        loss, params, tasks, MetaConfig("sharp_low", inner_steps=3, inner_lr=0.3, alpha_low=0.0)
    )
    for name in params:
        assert torch.equal(up.grad[name], maml.grad[name])
    # _low with alpha_low = 0 takes the same values, but its graph has the (zero) eps_m
    # branch, so autograd may sum the same terms in another order: equal to rounding.
    assert relative_error(low.grad, maml.grad) <= 1e-14
    assert float(low.loss) == float(maml.loss)


@pytest.mark.parametrize("steps", [1, 3])
def test_fomaml_equals_closed_form_on_quadratic_tasks(steps: int) -> None:
    """FO-MAML's meta-gradient is grad L_query at the adapted point, no Jacobian."""
    g = torch.Generator().manual_seed(1)
    d, m, beta = 5, 4, 0.2
    q, _ = torch.linalg.qr(torch.randn(m, d, d, generator=g, dtype=torch.float64))
    a = q @ torch.diag_embed(torch.rand(m, d, generator=g, dtype=torch.float64) + 0.5) @ q.transpose(1, 2)
    c_support = torch.randn(m, d, generator=g, dtype=torch.float64)
    c_query = torch.randn(m, d, generator=g, dtype=torch.float64)

    def quadratic(params: Params, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        mat, centre = batch
        diff = params["theta"] - centre
        return 0.5 * diff @ mat @ diff

    theta = torch.randn(d, generator=g, dtype=torch.float64)
    tasks = TaskBatch((a, c_support), (a, c_query))
    result = meta_gradient(
        quadratic, {"theta": theta}, tasks, MetaConfig("fomaml", inner_steps=steps, inner_lr=beta)
    )
    expected = torch.zeros(d, dtype=torch.float64)
    for i in range(m):
        adapted = theta.clone()
        for _ in range(steps):
            adapted = adapted - beta * a[i] @ (adapted - c_support[i])
        expected += a[i] @ (adapted - c_query[i]) / m
    torch.testing.assert_close(result.grad["theta"], expected, rtol=1e-13, atol=0)
    maml = meta_gradient(
        quadratic, {"theta": theta}, tasks, MetaConfig("maml", inner_steps=steps, inner_lr=beta)
    )
    assert relative_error(maml.grad, result.grad) > 1e-3, "second-order terms must matter here"


def test_radii_override_can_be_batched_by_vmap() -> None:
    """A grid of radii in one vmapped call equals one call per radius."""
    loss, params, tasks = WORKLOADS["mlp"]()
    cfg = config("sharp_both", 2)
    alphas = torch.tensor([0.0, 0.02, 0.1], dtype=torch.float64)

    def at_radius(alpha: torch.Tensor) -> Params:
        return meta_gradient(loss, params, tasks, cfg, Radii(alpha, 2 * alpha)).grad

    batched = torch.func.vmap(at_radius)(alphas)
    for i, alpha in enumerate(alphas.tolist()):
        single = meta_gradient(loss, params, tasks, cfg.replace(alpha_low=alpha, alpha_up=2 * alpha)).grad
        assert relative_error({k: v[i] for k, v in batched.items()}, single) <= 1e-12


@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_second_order_weight_selects_the_method_per_call_bit_for_bit(workload: str) -> None:
    """``Radii.second_order``: a float 0 gives FO-MAML's meta-gradient, and a vmapped tensor of
    weights (1, 0) gives MAML's and FO-MAML's exactly, lane by lane (the rate check's layout)."""
    loss, params, tasks = WORKLOADS[workload]()
    maml_cfg, fo_cfg = config("maml", 2), config("fomaml", 2)
    maml = meta_gradient(loss, params, tasks, maml_cfg).grad
    fo = meta_gradient(loss, params, tasks, fo_cfg).grad
    dropped = meta_gradient(loss, params, tasks, maml_cfg, Radii(0.0, 0.0, 0.0)).grad
    assert all(torch.equal(dropped[k], fo[k]) for k in params)

    def with_weight(weight: torch.Tensor) -> Params:
        return meta_gradient(loss, params, tasks, maml_cfg, Radii(0.0, 0.0, weight)).grad

    batched = torch.func.vmap(with_weight)(torch.tensor([1.0, 0.0], dtype=torch.float64))
    for lane, expected in enumerate((maml, fo)):
        for k in params:
            torch.testing.assert_close(batched[k][lane], expected[k], rtol=1e-14, atol=1e-15)
    assert relative_error(maml, fo) > 1e-6, "the workload must tell the two methods apart"
