"""Configuration errors, the task batch contract, the learner and the TF32 guard."""

from __future__ import annotations

import pytest
import torch

from harness.config import ConfigError, MetaConfig
from harness.learner import MetaLearner, sgd
from harness.meta import meta_gradient
from harness.precision import float32_precision, tf32_enabled
from harness.tasks import TaskBatch
from tests.engine_fixtures import mlp_workload


@pytest.mark.parametrize(
    ("kwargs", "field", "expected"),
    [
        ({"method": "sharp_up", "alpha_up": -0.1}, "alpha_up", "radius >= 0"),
        ({"method": "sharp_low", "alpha_low": -1.0}, "alpha_low", "radius >= 0"),
        ({"inner_steps": 0}, "inner_steps", "integer >= 1"),
        ({"inner_steps": 2.5}, "inner_steps", "integer >= 1"),
        ({"method": "reptile"}, "method", "expected one of"),
        ({"inner_lr": 0.0}, "inner_lr", "> 0"),
        ({"inner_lr": float("nan")}, "inner_lr", "finite number"),
        ({"method": "maml", "alpha_up": 0.1}, "alpha_up", "expected alpha_up = 0"),
        ({"method": "sharp_up", "alpha_low": 0.1}, "alpha_low", "expected alpha_low = 0"),
        ({"executor": "threads"}, "executor", "expected one of"),
        ({"chunk_size": 0}, "chunk_size", "integer >= 1"),
        ({"first_order": "yes"}, "first_order", "True or False"),
    ],
)
def test_bad_configuration_names_field_and_expectation(kwargs: dict, field: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        MetaConfig(**kwargs)
    assert str(info.value).startswith(f"{field}:")
    assert expected in str(info.value)


def test_fomaml_implies_first_order_and_replace_revalidates() -> None:
    assert MetaConfig("fomaml").first_order is True
    cfg = MetaConfig("sharp_up", alpha_up=0.1)
    assert cfg.replace(alpha_up=0.05).alpha_up == 0.05
    with pytest.raises(ConfigError, match="alpha_up"):
        cfg.replace(alpha_up=-1.0)


def test_perturbed_levels_count_where_each_method_perturbs() -> None:
    levels = {
        m: MetaConfig(method=m).perturbed_levels
        for m in ("maml", "fomaml", "sharp_low", "sharp_up", "sharp_both")
    }
    assert levels == {"maml": 0, "fomaml": 0, "sharp_low": 1, "sharp_up": 1, "sharp_both": 2}


def test_mismatched_task_batch_shapes_are_rejected() -> None:
    x = torch.zeros(4, 6, 3)
    y = torch.zeros(4, 6, dtype=torch.long)
    with pytest.raises(ConfigError, match=r"same number of tasks.*query\[leaf 0\]: 3"):
        TaskBatch((x, y), (torch.zeros(3, 9, 3), torch.zeros(3, 9, dtype=torch.long)))
    with pytest.raises(ConfigError, match="leading task dimension"):
        TaskBatch(torch.tensor(1.0), x)
    with pytest.raises(ConfigError, match="empty batch"):
        TaskBatch((), x)


def test_learner_applies_meta_gradient_at_unperturbed_theta() -> None:
    """theta_{t+1} = theta_t - lr * g, with g the (perturbed-point) meta-gradient."""
    loss, params, tasks = mlp_workload()
    cfg = MetaConfig("sharp_both", inner_steps=2, inner_lr=0.3, alpha_low=0.05, alpha_up=0.1)
    learner = MetaLearner(loss, params, cfg, sgd(0.5))
    expected_grad = meta_gradient(loss, params, tasks, cfg).grad
    result = learner.step(tasks)
    for name, value in params.items():
        torch.testing.assert_close(result.grad[name], expected_grad[name], rtol=0, atol=0)
        torch.testing.assert_close(
            learner.params[name].detach(), value - 0.5 * expected_grad[name], rtol=0, atol=0
        )
    assert result.perturbed_loss is not None and float(result.perturbed_loss) > float(result.loss)


def test_tf32_guard_switches_off_and_restores() -> None:
    """The guard only touches CUDA settings; it works on a machine without a GPU."""
    cuda = torch.device("cuda")
    before = tf32_enabled()
    with float32_precision(cuda, allow_tf32=False):
        assert tf32_enabled() is False
    assert tf32_enabled() == before
    with float32_precision(cuda, allow_tf32=True):
        assert tf32_enabled() is True
    assert tf32_enabled() == before
