"""One cell of the generalization track: train every (seed, method) lane, measure, evaluate bounds.

An L2 cell is one (M, m_tr): ``n_seeds`` training sets of M tasks, MAML and Sharp-MAML_up at
every radius of the grid, each lane measured (empirical and true 0-1 meta-risk, max-in-ball
risks, Gibbs risks, the premise, the top Hessian eigenvalue) and given its two bounds. The E2
cell trains the same methods on ``n_seeds`` E2 instances for the Hessian comparison. A cell
returns plain row dicts, so it can be cached and resumed (``synthetic.suites.CellCache``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from harness.tasks import TaskBatch
from infra.seeding import derive_seed, generator
from synthetic.generalization import bounds
from synthetic.generalization.estimates import (
    max_in_ball,
    noisy_task_risks,
    task_risks,
    top_hessian_eigenvalues,
)
from synthetic.generalization.training import (
    chunk_for,
    concat_tasks,
    meta_gradient_lanes,
    stack_tasks,
    train_lanes,
)
from synthetic.methods import method_config
from synthetic.problems.base import ProblemInstance, build_problem

TASK_BLOCK = 25
TRACK = "generalization"


@dataclass(frozen=True)
class GenGrid:
    """What one scale of the generalization suite runs and how it measures.

    tasks: numbers of training tasks M (multiples of TASK_BLOCK; the sets are nested: the
        first M tasks of a seed are the same for every M). samples: support points per task
        m_tr. alphas: Sharp-MAML_up radii (MAML, radius 0, is always run); also the radii of
        the Foret bound (union bound over them). eta, steps: full-batch gradient descent.
    fresh_tasks: fresh tasks for the true risk (shared by all runs of one m_tr).
    gibbs_evaluations: task evaluations of each Monte Carlo Gibbs risk on the training set.
    posterior_sigmas / prior_sigmas: the PAC-Bayes posterior scales (best one taken) and the
        prior grid (union bound). ascent_restarts / ascent_steps: max-in-ball ascent.
    delta: confidence of each bound. e2_alphas, e2_steps: the E2 Hessian comparison.
    """

    tasks: tuple[int, ...]
    samples: tuple[int, ...]
    n_seeds: int
    alphas: tuple[float, ...]
    eta: float = 30.0
    steps: int = 40
    fresh_tasks: int = 20_000
    gibbs_evaluations: int = 10_000
    posterior_sigmas: tuple[float, ...] = (0.1, 0.25, 0.6)
    prior_sigmas: tuple[float, ...] = tuple(2.0 ** (j / 2) for j in range(-4, 5))
    ascent_restarts: int = 2
    ascent_steps: int = 6
    delta: float = 0.05
    e2_alphas: tuple[float, ...] = (0.05, 0.15, 0.3)
    e2_steps: int = 1000

    @property
    def foret_delta(self) -> float:
        """The confidence of the Foret bound at each radius: delta split over the radii."""
        return self.delta / len(self.alphas)


def method_name(alpha: float) -> str:
    return "maml" if alpha == 0 else "sharp_up"


def training_tasks(problem: ProblemInstance, global_seed: int, m_tr: int, seed: int, M: int) -> TaskBatch:
    """The first M training tasks of a seed, drawn in blocks of TASK_BLOCK from their own
    generators, so that a smaller M is a prefix of a larger one (common random numbers in M)."""
    sample = problem.task_distribution.sample
    blocks = [
        sample(generator(global_seed, TRACK, "L2", "train", m_tr, seed, b), TASK_BLOCK, m_tr=m_tr)
        for b in range(M // TASK_BLOCK)
    ]
    return concat_tasks(blocks)


def fresh_tasks(
    problem: ProblemInstance, global_seed: int, m_tr: int, n: int
) -> tuple[TaskBatch, torch.Tensor]:
    """The fresh tasks of the true risk and the standard normal draws of the premise (n, d)."""
    tasks = problem.task_distribution.sample(generator(global_seed, TRACK, "L2", "fresh", m_tr), n, m_tr=m_tr)
    d = problem.init_params["theta"].numel()
    noise = torch.randn(
        n, d, generator=generator(global_seed, TRACK, "L2", "premise", m_tr), dtype=torch.float64
    )
    return tasks, noise


def _mean_and_se(values: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean over the last axis and its standard error."""
    return values.mean(-1).numpy(), (values.std(-1) / math.sqrt(values.shape[-1])).numpy()


Columns = dict[str, np.ndarray]  # run-table columns, each of shape (seeds, methods)


def _foret(
    problem: ProblemInstance,
    grid: GenGrid,
    theta: torch.Tensor,
    tasks: TaskBatch,
    train: np.ndarray,
    M: int,
    gen: torch.Generator,
) -> tuple[Columns, Columns]:
    """The Foret bound at every radius of the grid (union bound) and at the best one."""
    radii = np.asarray(grid.alphas)
    ball = max_in_ball(
        problem, theta, tasks, torch.as_tensor(radii), grid.ascent_restarts, grid.ascent_steps, gen
    ).numpy()
    norm = torch.linalg.vector_norm(theta, dim=-1).numpy()
    per_rho = {
        "max_in_ball_loss": ball,
        "sharpness": ball - train[..., None],
        "foret_complexity": bounds.foret_complexity(
            norm[..., None], radii, M, theta.shape[-1], grid.foret_delta
        ),
    }
    per_rho["foret_rhs"] = ball + per_rho["foret_complexity"]
    best = per_rho["foret_rhs"].argmin(-1)[..., None]
    columns = {"foret_rho": radii[best[..., 0]]}
    columns.update({k: np.take_along_axis(v, best, -1)[..., 0] for k, v in per_rho.items()})
    return columns, per_rho


def _pac_bayes(
    problem: ProblemInstance,
    grid: GenGrid,
    theta: torch.Tensor,
    tasks: TaskBatch,
    M: int,
    gen: torch.Generator,
) -> Columns:
    """Monte Carlo Gibbs risks on the training tasks at every posterior scale, and the bound."""
    S, A, d = theta.shape
    sigmas = np.asarray(grid.posterior_sigmas)
    n_mc = math.ceil(grid.gibbs_evaluations / M)
    draws = torch.randn(S, n_mc, M, d, generator=gen, dtype=theta.dtype)
    lane_sigma = torch.as_tensor(np.tile(sigmas, A)).expand(S, -1)
    gibbs = (
        noisy_task_risks(
            problem, theta.repeat_interleave(sigmas.size, 1), lane_sigma, draws, tasks, per_seed=True
        )
        .mean((-1, -2))
        .reshape(S, A, sigmas.size)
        .numpy()
    )
    norm = torch.linalg.vector_norm(theta, dim=-1).numpy()
    pb = bounds.pac_bayes_bound(
        gibbs, n_mc * M, norm, sigmas, np.asarray(grid.prior_sigmas), M, d, grid.delta
    )
    return {
        "pac_bayes_sigma": sigmas[pb["sigma_index"]],
        "pac_bayes_prior_sigma": np.asarray(grid.prior_sigmas)[pb["prior_index"]],
        "gibbs_train_risk": np.take_along_axis(gibbs, pb["sigma_index"][..., None], -1)[..., 0],
        "gibbs_train_upper": pb["gibbs_upper"],
        "pac_bayes_kl_rhs": pb["rhs"],
    }


def _premise(
    problem: ProblemInstance,
    theta: torch.Tensor,
    clean: torch.Tensor,
    fresh: tuple[TaskBatch, torch.Tensor],
    sigmas: dict[str, np.ndarray],
) -> Columns:
    """At each named scale: L_D(Q), Q = N(theta, sigma^2 I) (noisy_risk, one noise draw per fresh
    task), and E L_D(theta + sigma z) - L_D(theta) paired on the same fresh tasks (premise)."""
    tasks, noise = fresh
    names, A = list(sigmas), theta.shape[1]
    scale = torch.as_tensor(np.concatenate([sigmas[n] for n in names], 1))
    noisy = noisy_task_risks(
        problem, theta.repeat(1, len(names), 1), scale, noise[None], tasks, per_seed=False
    )
    noisy = noisy[:, :, 0]
    risk, risk_se = _mean_and_se(noisy)
    diff, diff_se = _mean_and_se(noisy - clean.repeat(1, len(names), 1))
    columns: Columns = {}
    for i, name in enumerate(names):
        lanes = slice(i * A, (i + 1) * A)
        columns.update(
            {
                f"noisy_risk_{name}": risk[:, lanes],
                f"noisy_risk_se_{name}": risk_se[:, lanes],
                f"premise_sigma_{name}": sigmas[name],
                f"premise_diff_{name}": diff[:, lanes],
                f"premise_se_{name}": diff_se[:, lanes],
            }
        )
    return columns


def _rows(
    base: dict[str, Any], alphas: list[float], columns: Columns, finite: torch.Tensor
) -> list[dict[str, Any]]:
    """One row per (seed, method) lane from (seeds, methods) columns."""
    return [
        {
            **base,
            "method": method_name(alpha),
            "alpha_up": alpha,
            "seed_index": s,
            **{k: v[s, a].item() for k, v in columns.items()},
            "status": "ok" if bool(finite[s, a]) else "diverged",
        }
        for s in range(finite.shape[0])
        for a, alpha in enumerate(alphas)
    ]


def l2_cell(
    problem: ProblemInstance,
    grid: GenGrid,
    M: int,
    m_tr: int,
    global_seed: int,
    fresh: tuple[TaskBatch, torch.Tensor],
) -> dict[str, list[dict[str, Any]]]:
    """Train and measure every (seed, method) lane of one (M, m_tr); rows for runs and sharpness."""
    S, alphas = grid.n_seeds, [0.0, *grid.alphas]
    tasks = stack_tasks([training_tasks(problem, global_seed, m_tr, s, M) for s in range(S)])
    theta = train_lanes(
        problem.loss,
        method_config(problem, "sharp_up"),
        tasks,
        torch.tensor(alphas, dtype=torch.float64),
        problem.init_params["theta"],
        grid.eta,
        grid.steps,
    )
    finite = torch.isfinite(theta).all(-1)
    theta = torch.where(finite[..., None], theta, torch.zeros_like(theta))
    gen = lambda *purpose: generator(global_seed, TRACK, "L2", *purpose, M, m_tr)  # noqa: E731

    maml = meta_gradient_lanes(
        problem.loss, problem.meta_config.replace(executor="vmap"), chunk_for(tasks, True)
    )
    grad_end, objective = maml(theta, torch.zeros(theta.shape[:2], dtype=theta.dtype), tasks)
    train = task_risks(problem, theta, tasks, per_seed=True).mean(-1).numpy()
    clean = task_risks(problem, theta, fresh[0], per_seed=False)
    true, true_se = _mean_and_se(clean)
    columns: Columns = {
        "eta": np.full(train.shape, grid.eta),
        "steps": np.full(train.shape, grid.steps),
        "theta_norm": torch.linalg.vector_norm(theta, dim=-1).numpy(),
        "train_objective": objective.numpy(),
        "grad_norm_end": torch.linalg.vector_norm(grad_end, dim=-1).numpy(),
        "train_risk": train,
        "true_risk": true,
        "true_risk_se": true_se,
        "gap": true - train,
    }
    foret, per_rho = _foret(problem, grid, theta, tasks, train, M, gen("ascent"))
    columns.update(foret)
    columns.update(_pac_bayes(problem, grid, theta, tasks, M, gen("gibbs")))
    sigma_foret = bounds.foret_sigma(foret["foret_rho"], M, theta.shape[-1])
    scales = {"foret": sigma_foret, "pac_bayes": columns["pac_bayes_sigma"]}
    columns.update(_premise(problem, theta, clean, fresh, scales))
    top, residual = top_hessian_eigenvalues(problem, theta, tasks, gen("hessian"))
    columns.update({"hessian_top": top.numpy(), "hessian_residual": residual.numpy()})

    base = {"family": "L2", "M": M, "m_tr": m_tr, "m_val": problem.settings["m_val"]}
    sharpness = [
        row
        for r, rho in enumerate(grid.alphas)
        for row in _rows({**base, "rho": rho}, alphas, {k: v[..., r] for k, v in per_rho.items()}, finite)
    ]
    return {"runs": _rows(base, alphas, columns, finite), "sharpness": sharpness}


def e2_cell(grid: GenGrid, global_seed: int) -> dict[str, list[dict[str, Any]]]:
    """MAML and Sharp-MAML_up on ``n_seeds`` E2 instances from theta0: lambda_max of F at the end."""
    problems = [
        build_problem("E2", seed=derive_seed(global_seed, TRACK, "E2", s), verify=False, grid_points=20_001)
        for s in range(grid.n_seeds)
    ]
    first, alphas = problems[0], [0.0, *grid.e2_alphas]
    tasks = stack_tasks([p.tasks for p in problems])
    eta = 1.0 / max(p.two_basins.L_F for p in problems)
    theta = train_lanes(
        first.loss,
        method_config(first, "sharp_up"),
        tasks,
        torch.tensor(alphas, dtype=torch.float64),
        first.init_params["theta"],
        eta,
        grid.e2_steps,
    )
    finite = torch.isfinite(theta).all(-1)
    theta = torch.where(finite[..., None], theta, torch.zeros_like(theta))
    top, residual = top_hessian_eigenvalues(
        first, theta, tasks, generator(global_seed, TRACK, "E2", "hessian")
    )
    per_seed = lambda fn: np.stack([fn(p, theta[s]) for s, p in enumerate(problems)])  # noqa: E731
    z = per_seed(lambda p, th: p.two_basins.model.split(th)[0].numpy())
    barrier = per_seed(lambda p, th: np.full(len(alphas), p.two_basins.ground_truth.barrier))
    columns: Columns = {
        "eta": np.full(z.shape, eta),
        "steps": np.full(z.shape, grid.e2_steps),
        "theta_norm": torch.linalg.vector_norm(theta, dim=-1).numpy(),
        "z_end": z,
        "side_end": np.where(z > barrier, "flat", "sharp"),
        "train_objective": per_seed(lambda p, th: p.meta_objective({"theta": th}).numpy()),
        "grad_norm_end": per_seed(
            lambda p, th: torch.linalg.vector_norm(p.meta_grad({"theta": th})["theta"], dim=-1).numpy()
        ),
        "hessian_top": top.numpy(),
        "hessian_residual": residual.numpy(),
        "F2_sharp": per_seed(lambda p, th: np.full(len(alphas), p.two_basins.F2_sharp)),
        "F2_flat": per_seed(lambda p, th: np.full(len(alphas), p.two_basins.F2_flat)),
    }
    return {"runs": _rows({"family": "E2", "M": first.num_tasks}, alphas, columns, finite), "sharpness": []}
