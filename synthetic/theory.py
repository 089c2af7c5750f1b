"""Every bound and rate formula the suites check, each labelled with its source.

Each docstring ends with its source label (infra.verdicts: derived here, paper claim (shape),
literature); docs/theory.md states and derives every one.
"""

from __future__ import annotations

import math

import numpy as np

# ----- R1: stochastic Sharp-MAML_up rate -----------------------------------------------------


def r1_bound(
    delta: float,
    eta: float,
    steps: int,
    l_bar: float,
    alpha: float,
    sigma2: float,
    batch: int,
) -> float:
    """(1/T) sum E||grad F(theta_t)||^2 <= 4 Delta/(eta T) + 2 L^2 a^2 + 4 L eta (s^2/B + L^2 a^2).

    Holds for eta <= 1/(4 L_bar) [derived]; MAML is alpha = 0.
    """
    if eta > 1 / (4 * l_bar) * (1 + 1e-12):
        raise ValueError(f"eta: R1 needs eta <= 1/(4 L_bar) = {1 / (4 * l_bar):.6g}, got {eta}")
    return (
        4 * delta / (eta * steps)
        + 2 * l_bar**2 * alpha**2
        + 4 * l_bar * eta * (sigma2 / batch + l_bar**2 * alpha**2)
    )


def rate_step_size(steps: int, l_bar: float, c: float = 0.25) -> float:
    """eta = c / (L_bar sqrt T): the rate suite's step size (c = 1/4 keeps eta <= 1/(4 L_bar))."""
    return c / (l_bar * math.sqrt(steps))


def rate_radius(steps: int, schedule: str, a: float = 0.5) -> float:
    """alpha = a / sqrt(T) ("sqrt") or a / T^(1/4) ("quarter"), constant within a run of length T."""
    if schedule == "sqrt":
        return a / math.sqrt(steps)
    if schedule == "quarter":
        return a / steps**0.25
    raise ValueError(f"schedule: expected 'sqrt' or 'quarter', got {schedule!r}")


# ----- R2: constant-radius 2-cycle -----------------------------------------------------------


def r2_cycle_gradient_norm(eta: float, lambda1: float, alpha: float) -> float:
    """||grad F|| on the 2-cycle of deterministic Sharp-MAML_up: eta l1^2 a / (2 - eta l1)."""
    if not 0 < eta * lambda1 < 2:
        raise ValueError(f"eta * lambda1: expected in (0, 2), got {eta * lambda1}")
    return eta * lambda1**2 * alpha / (2 - eta * lambda1)


# ----- R3: Sharp-MAML_low bias ---------------------------------------------------------------


def r3_bias_bound(beta: float, alpha_low: float, L: float) -> float:
    """||grad F_low(theta*)|| <= 2 beta alpha_low L^2 (1 + beta L) + O(alpha_low^2) [derived]."""
    return 2 * beta * alpha_low * L**2 * (1 + beta * L)


# ----- fits ----------------------------------------------------------------------------------


def loglog_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of log y against log x."""
    return float(loglog_slopes(x, np.asarray(y, float)))


def loglog_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slopes of log y against log x for every row of ``y`` (..., len(x)) at once:
    sum((lx - mean lx) log y) / sum((lx - mean lx)^2)."""
    centred = np.log(np.asarray(x, float))
    centred = centred - centred.mean()
    return np.log(y) @ centred / (centred @ centred)


def bootstrap_slope_ci(
    x: np.ndarray, per_seed_y: np.ndarray, rng: np.random.Generator, n_boot: int = 1000
) -> tuple[float, float]:
    """95% CI of the log-log slope of the seed mean, resampling seeds (rows of per_seed_y).

    A resample whose mean is not positive at some x has no log-log slope and is left out
    (noisy differences such as a generalization gap); with positive data none is. NaN when
    no resample has a slope. All resamples are drawn and fitted in one vectorised pass.
    """
    n_seeds = per_seed_y.shape[0]
    means = per_seed_y[rng.integers(0, n_seeds, (n_boot, n_seeds))].mean(axis=1)
    positive = np.all(means > 0, axis=1)
    if not positive.any():
        return math.nan, math.nan
    lo, hi = np.quantile(loglog_slopes(x, means[positive]), [0.025, 0.975])
    return float(lo), float(hi)


# flat.follows_robust: a run reaches the alpha-robust minimiser when it ends within this fraction
# of the distance between the sharp and the flat minimum (the report's flat-minima figure counts
# its runs by the same rule).
NEAR_FRACTION = 0.1
