"""A stateful meta-learner: parameters + any torch optimizer + the engine's meta-gradient."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from harness.config import MetaConfig
from harness.meta import LossFn, MetaStep, adapted_names, meta_gradient
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

    The learner also keeps what the cheaper-variant candidates carry from step to step
    (``state_dict``): the number of steps taken, and the pass-1 meta-gradient whose direction
    is reused until step ``steps`` is a multiple of ``cfg.ascent_every``. With
    ``cfg.lower_fraction`` < 1, step t perturbs ceil(fraction * n) of the n adapted tensors,
    drawn from a generator seeded with ``seed + t`` (pass a seed derived from the run's).
    """

    def __init__(
        self,
        loss: LossFn,
        params: Params,
        cfg: MetaConfig,
        optimizer: OptimizerFactory,
        seed: int = 0,
    ) -> None:
        self.loss = loss
        self.cfg = cfg
        self.seed = seed
        self.params: dict[str, torch.nn.Parameter] = {
            k: torch.nn.Parameter(v.detach().clone()) for k, v in params.items()
        }
        self.optimizer = optimizer(list(self.params.values()))
        self.steps = 0
        self.ascent: Params | None = None

    def step_config(self) -> MetaConfig:
        """The config of the next step: ``cfg`` with its drawn ``lower_tensors`` (ESAM-style)."""
        if self.cfg.lower_fraction == 1:
            return self.cfg
        names = adapted_names(self.params, self.cfg)
        count = math.ceil(self.cfg.lower_fraction * len(names))
        order = torch.randperm(len(names), generator=torch.Generator().manual_seed(self.seed + self.steps))
        chosen = {names[i] for i in order[:count].tolist()}
        return self.cfg.replace(lower_tensors=tuple(k for k in names if k in chosen))

    def meta_gradient(self, tasks: TaskBatch) -> MetaStep:
        """The meta-gradient the next step applies at the current theta, without updating."""
        reuse = self.cfg.ascent_every > 1 and self.steps % self.cfg.ascent_every != 0
        ascent = self.ascent if reuse else None
        return meta_gradient(self.loss, self.params, tasks, self.step_config(), ascent=ascent)

    def step(self, tasks: TaskBatch) -> MetaStep:
        """One outer update on a task batch; returns the step's meta-gradient and loss."""
        result = self.meta_gradient(tasks)
        for name, p in self.params.items():
            p.grad = result.grad[name].detach().to(p.dtype)
        self.optimizer.step()
        self.steps += 1
        if self.cfg.ascent_every > 1:
            self.ascent = result.ascent
        return result

    def state_dict(self) -> dict[str, Any]:
        """What the next steps depend on besides theta and the optimiser (for checkpoints)."""
        ascent = None if self.ascent is None else {k: v.detach().cpu() for k, v in self.ascent.items()}
        return {"steps": self.steps, "ascent": ascent}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()``, the ascent direction on the parameters' device."""
        self.steps = int(state["steps"])
        ascent = state["ascent"]
        self.ascent = None if ascent is None else {k: v.to(self.params[k].device) for k, v in ascent.items()}

    def detached_params(self) -> Params:
        """A copy of theta with no graph or optimiser attached."""
        return {k: v.detach().clone() for k, v in self.params.items()}
