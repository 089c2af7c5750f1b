"""A stateful meta-learner: parameters + any torch optimizer + the engine's meta-gradient."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from harness.config import MetaConfig
from harness.meta import LossFn, MetaStep, meta_gradient
from harness.tasks import TaskBatch
from harness.tree import Params

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]


def sgd(lr: float) -> OptimizerFactory:
    """Plain SGD (the theory track does not use it: synthetic/runs.py steps its lanes itself)."""
    return lambda ps: torch.optim.SGD(ps, lr=lr)


def adam(lr: float) -> OptimizerFactory:
    """Adam, the optimiser of the real-data track (and of the authors' code)."""
    return lambda ps: torch.optim.Adam(ps, lr=lr)


class MetaLearner:
    """Holds theta and an optimiser; ``step`` applies one method's meta-gradient.

    The meta-gradient is computed by the pure engine (``harness.meta``) and written into
    ``.grad`` of the parameters, so any torch optimiser applies it at the unperturbed theta.
    """

    def __init__(
        self,
        loss: LossFn,
        params: Params,
        cfg: MetaConfig,
        optimizer: OptimizerFactory,
    ) -> None:
        self.loss = loss
        self.cfg = cfg
        self.params: dict[str, torch.nn.Parameter] = {
            k: torch.nn.Parameter(v.detach().clone()) for k, v in params.items()
        }
        self.optimizer = optimizer(list(self.params.values()))

    def meta_gradient(self, tasks: TaskBatch) -> MetaStep:
        """The meta-gradient at the current theta, without updating."""
        return meta_gradient(self.loss, self.params, tasks, self.cfg)

    def step(self, tasks: TaskBatch) -> MetaStep:
        """One outer update on a task batch; returns the step's meta-gradient and loss."""
        result = self.meta_gradient(tasks)
        for name, p in self.params.items():
            p.grad = result.grad[name].detach().to(p.dtype)
        self.optimizer.step()
        return result

    def detached_params(self) -> Params:
        """A copy of theta with no graph or optimiser attached."""
        return {k: v.detach().clone() for k, v in self.params.items()}
