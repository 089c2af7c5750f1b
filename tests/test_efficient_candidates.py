"""The cheaper-variant candidates of the engine in float64: head-only inner loop (ANIL), reused
upper ascent direction (ascent_every), perturbation of a subset of tensors (ESAM-style)."""

from __future__ import annotations

import pytest
import torch

from harness.config import ConfigError, MetaConfig
from harness.learner import MetaLearner, adam
from harness.meta import adapt, meta_gradient, plain_meta_gradient
from harness.tree import Params, tree_add, tree_normalized
from tests.engine_fixtures import (
    DTYPE,
    METHOD_RADII,
    batch_meta_objective,
    central_difference_gradient,
    conv_bn_workload,
    mlp_loss,
    mlp_workload,
    relative_error,
)

FD_TOLERANCE = 1e-6
EXACT_METHODS = ("maml", "sharp_low", "sharp_up", "sharp_both")


def headed_mlp_workload() -> tuple:
    """The fixtures' MLP with its last layer named as a head (``head.*``)."""
    _, params, tasks = mlp_workload()
    renamed = {"w1": params["w1"], "b1": params["b1"], "head.w": params["w2"], "head.b": params["b2"]}

    def loss(p: Params, batch: tuple) -> torch.Tensor:
        return mlp_loss({"w1": p["w1"], "b1": p["b1"], "w2": p["head.w"], "b2": p["head.b"]}, batch)

    return loss, renamed, tasks


def linear_workload() -> tuple:
    """A one-layer model (softmax regression): every parameter is the head."""
    _, params, tasks = mlp_workload()
    g = torch.Generator().manual_seed(3)
    head = {
        "head.w": torch.randn(4, 3, generator=g, dtype=DTYPE),
        "head.b": torch.randn(3, generator=g, dtype=DTYPE),
    }

    def loss(p: Params, batch: tuple) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.cross_entropy(x @ p["head.w"] + p["head.b"], y)

    return loss, head, tasks


def config(method: str, steps: int = 2, **extra) -> MetaConfig:
    return MetaConfig(
        method=method, inner_steps=steps, inner_lr=0.3, executor="loop", **METHOD_RADII[method], **extra
    )


def fd_reference(loss, params: Params, tasks, cfg: MetaConfig) -> Params:
    """Finite differences of the method's own objective, at theta + eps for the two-pass ones."""
    point = params
    if cfg.uses_upper_perturbation:
        first = plain_meta_gradient(loss, params, tasks, cfg)
        point = tree_add(params, tree_normalized(first.grad, cfg.alpha_up, cfg.eps))
    return central_difference_gradient(lambda p: batch_meta_objective(loss, p, tasks, cfg), point)


@pytest.mark.parametrize("method", EXACT_METHODS)
def test_head_only_meta_gradient_matches_finite_differences(method: str) -> None:
    loss, params, tasks = headed_mlp_workload()
    cfg = config(method, inner_params="head")
    result = meta_gradient(loss, params, tasks, cfg)
    assert relative_error(result.grad, fd_reference(loss, params, tasks, cfg)) <= FD_TOLERANCE
    full = meta_gradient(loss, params, tasks, config(method))
    assert relative_error(result.grad, full.grad) > 1e-3, "adapting the body must matter here"


def test_head_only_on_conv4_with_batchnorm_matches_finite_differences() -> None:
    loss, params, tasks = conv_bn_workload()
    cfg = config("sharp_both", steps=1, inner_params="head")
    result = meta_gradient(loss, params, tasks, cfg)
    assert relative_error(result.grad, fd_reference(loss, params, tasks, cfg)) <= FD_TOLERANCE


def test_head_only_adapts_only_the_head() -> None:
    loss, params, tasks = headed_mlp_workload()
    adapted = adapt(loss, params, tasks.task(0)[0], config("sharp_low", inner_params="head"))
    assert all(torch.equal(adapted[k], params[k]) for k in ("w1", "b1"))
    assert all(not torch.equal(adapted[k], params[k]) for k in ("head.w", "head.b"))


@pytest.mark.parametrize("method", sorted(METHOD_RADII))
def test_head_only_equals_full_adaptation_on_a_one_layer_model(method: str) -> None:
    loss, params, tasks = linear_workload()
    head = meta_gradient(loss, params, tasks, config(method, inner_params="head"))
    full = meta_gradient(loss, params, tasks, config(method))
    assert all(torch.equal(head.grad[k], full.grad[k]) for k in params)
    assert torch.equal(head.loss, full.loss)


def test_head_only_needs_a_head_and_a_known_value() -> None:
    _, params, tasks = mlp_workload()
    with pytest.raises(ConfigError, match=r"^inner_params: 'head' adapts the parameters named head\.\*"):
        meta_gradient(mlp_loss, params, tasks, config("maml", inner_params="head"))
    with pytest.raises(ConfigError, match=r"^inner_params: expected one of \['all', 'head'\], got 'body'"):
        config("maml", inner_params="body")


@pytest.mark.parametrize("method", ("sharp_low", "sharp_both"))
def test_lower_perturbation_of_a_fixed_subset_matches_finite_differences(method: str) -> None:
    loss, params, tasks = mlp_workload()
    cfg = config(method, lower_tensors=("b1", "w2"))
    result = meta_gradient(loss, params, tasks, cfg)
    assert relative_error(result.grad, fd_reference(loss, params, tasks, cfg)) <= FD_TOLERANCE
    full = meta_gradient(loss, params, tasks, config(method))
    assert relative_error(result.grad, full.grad) > 1e-6, "perturbing fewer tensors must matter"


def test_subset_of_every_tensor_equals_the_full_lower_perturbation() -> None:
    loss, params, tasks = mlp_workload()
    every = meta_gradient(loss, params, tasks, config("sharp_low", lower_tensors=("b2", "w2", "b1", "w1")))
    full = meta_gradient(loss, params, tasks, config("sharp_low"))
    assert all(torch.equal(every.grad[k], full.grad[k]) for k in params)


def test_subset_must_name_adapted_tensors() -> None:
    loss, params, tasks = headed_mlp_workload()
    cfg = config("sharp_low", inner_params="head", lower_tensors=("w1",))
    with pytest.raises(ConfigError, match=r"^lower_tensors: \['w1'\] are not adapted by the inner loop"):
        meta_gradient(loss, params, tasks, cfg)


def learner(cfg: MetaConfig, params: Params, seed: int = 0) -> MetaLearner:
    loss = headed_mlp_workload()[0] if "head.w" in params else mlp_loss
    return MetaLearner(loss, params, cfg, adam(0.01), seed=seed)


def batches(n: int) -> list:
    return [mlp_workload(seed=10 + i)[2] for i in range(n)]


def run_steps(model: MetaLearner, tasks: list) -> list[float]:
    return [float(model.step(t).loss) for t in tasks]


def same_params(a: MetaLearner, b: MetaLearner) -> bool:
    return all(torch.equal(a.params[k], b.params[k]) for k in a.params)


@pytest.mark.parametrize("method", ("sharp_up", "sharp_both"))
def test_ascent_every_one_is_sharp_maml_exactly(method: str) -> None:
    _, params, _ = mlp_workload()
    tasks = batches(3)
    plain, every_one = learner(config(method), params), learner(config(method, ascent_every=1), params)
    assert run_steps(plain, tasks) == run_steps(every_one, tasks)
    assert same_params(plain, every_one)


def test_ascent_every_k_reuses_the_direction_of_the_last_recomputation() -> None:
    _, params, _ = mlp_workload()
    tasks = batches(4)
    model = learner(config("sharp_up", ascent_every=3), params)
    first = model.step(tasks[0])
    theta = model.detached_params()
    second = model.step(tasks[1])
    for k in params:  # step 1 reuses step 0's pass-1 gradient: no new pass 1
        assert torch.equal(second.ascent[k], first.ascent[k])
    expected = meta_gradient(mlp_loss, theta, tasks[1], model.cfg, ascent=first.ascent)
    assert all(torch.equal(second.grad[k], expected.grad[k]) for k in params)
    assert torch.equal(second.loss, second.perturbed_loss)
    recomputed = meta_gradient(mlp_loss, theta, tasks[1], config("sharp_up"))
    assert relative_error(second.grad, recomputed.grad) > 1e-6
    model.step(tasks[2])
    fourth = model.step(tasks[3])  # step 3 is a multiple of k: recomputed at its own theta
    assert relative_error(fourth.ascent, first.ascent) > 1e-6


@pytest.mark.parametrize("extra", ({"ascent_every": 3}, {"lower_fraction": 0.5}))
def test_learner_state_resumes_bit_exactly(extra: dict) -> None:
    _, params, _ = mlp_workload()
    tasks = batches(5)
    cfg = config("sharp_both", **extra)
    whole = learner(cfg, params, seed=7)
    run_steps(whole, tasks)
    first = learner(cfg, params, seed=7)
    run_steps(first, tasks[:2])
    resumed = learner(cfg, first.detached_params(), seed=7)
    resumed.optimizer.load_state_dict(first.optimizer.state_dict())
    resumed.load_state_dict(first.state_dict())
    run_steps(resumed, tasks[2:])
    assert same_params(whole, resumed)
    fresh = learner(cfg, first.detached_params(), seed=7)
    fresh.optimizer.load_state_dict(first.optimizer.state_dict())
    run_steps(fresh, tasks[2:])
    assert not same_params(whole, fresh), "the state must matter"


def test_lower_fraction_one_is_sharp_low_exactly() -> None:
    _, params, _ = mlp_workload()
    tasks = batches(3)
    plain, fraction_one = (
        learner(config("sharp_low"), params),
        learner(config("sharp_low", lower_fraction=1.0), params),
    )
    assert run_steps(plain, tasks) == run_steps(fraction_one, tasks)
    assert same_params(plain, fraction_one)


def test_lower_fraction_draws_a_seeded_subset_each_step() -> None:
    _, params, _ = mlp_workload()
    model = learner(config("sharp_low", lower_fraction=0.5), params, seed=3)
    draws = []
    for step in range(8):
        model.steps = step
        draws.append(model.step_config().lower_tensors)
    assert all(len(d) == 2 for d in draws) and len(set(draws)) > 1
    again = learner(config("sharp_low", lower_fraction=0.5), params, seed=3)
    again.steps = 5
    assert again.step_config().lower_tensors == draws[5]
    head_only = learner(
        config("sharp_low", lower_fraction=0.4, inner_params="head"), headed_mlp_workload()[1]
    )
    assert len(head_only.step_config().lower_tensors) == 1  # ceil(0.4 * 2) of the head's tensors


@pytest.mark.parametrize(
    ("method", "extra", "message"),
    [
        (
            "maml",
            {"ascent_every": 2},
            r"^ascent_every: method 'maml' has no upper perturbation; expected ascent_every = 1",
        ),
        ("sharp_low", {"ascent_every": 4}, r"^ascent_every: method 'sharp_low' has no upper perturbation"),
        ("sharp_up", {"ascent_every": 0}, r"^ascent_every: expected an integer >= 1, got 0"),
        (
            "sharp_up",
            {"lower_fraction": 0.5},
            r"^lower_fraction: method 'sharp_up' has no lower perturbation",
        ),
        (
            "sharp_low",
            {"lower_fraction": 0.0},
            r"^lower_fraction: expected a finite fraction > 0 and <= 1, got 0.0",
        ),
        ("sharp_low", {"lower_fraction": 1.5}, r"^lower_fraction: expected a finite fraction > 0 and <= 1"),
        ("maml", {"lower_tensors": ("w1",)}, r"^lower_tensors: method 'maml' has no lower perturbation"),
        ("sharp_low", {"lower_tensors": ["w1"]}, r"^lower_tensors: expected None or a non-empty tuple"),
    ],
)
def test_invalid_candidate_settings_name_the_field(method: str, extra: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config(method, **extra)


@pytest.mark.parametrize(
    "extra", ({"inner_params": "head"}, {"inner_params": "head", "lower_tensors": ("head.b",)})
)
def test_loop_and_vmap_agree_for_the_candidates(extra: dict) -> None:
    loss, params, tasks = headed_mlp_workload()
    loop = meta_gradient(loss, params, tasks, config("sharp_both", **extra))
    vmapped = meta_gradient(loss, params, tasks, config("sharp_both", **extra).replace(executor="vmap"))
    assert relative_error(vmapped.grad, loop.grad) <= 1e-10
