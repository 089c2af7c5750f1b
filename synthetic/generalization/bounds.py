"""Generalization-bound formulas of the generalization track, each with its source label.

All bounds are for a loss in [0, 1] with the number of training tasks M as sample size
(docs/theory.md#prediction-generalization-bounds):

- ``foret_complexity`` / ``foret_rhs``: the Foret et al. (2021, Thm 1) SAM bound, the shape of
  the paper's claim [paper claim (shape)]. Its O~(1) term is dropped, which makes the bound
  smaller and the check harder to pass (conservative).
- ``pac_bayes_kl_rhs``: the rigorous PAC-Bayes-kl bound (Langford & Seeger 2001, Maurer 2004)
  for a Gaussian posterior N(theta, s^2 I) and priors N(0, s_P^2 I) from a fixed grid, with a
  union bound over the grid, inverted numerically [literature].
- ``mc_upper``: the one-sided binomial-tail (Chernoff-kl) bound that turns a Monte Carlo
  estimate of the posterior's training risk into an upper bound (Langford 2005, test-set
  bound; Hoeffding 1963, Thm 1, for independent [0, 1] variables) [literature].
"""

from __future__ import annotations

import math

import numpy as np

from infra.verdicts import LITERATURE, PAPER_SHAPE

FORET_SOURCE = f"{PAPER_SHAPE}; Foret et al. 2021 Thm 1 with M tasks as sample size"
PAC_BAYES_SOURCE = f"{LITERATURE}: PAC-Bayes-kl (Langford & Seeger 2001, Maurer 2004)"
KL_INVERSE_TOL = 1e-12
VACUOUS_LEVEL = 1.0

ArrayLike = float | np.ndarray


def kl_bernoulli(q: ArrayLike, p: ArrayLike) -> np.ndarray:
    """kl(q || p) = q log(q/p) + (1-q) log((1-q)/(1-p)) of two Bernoulli means (0 log 0 = 0).

    For 0 < q < 1 it is summed as q h(d/q) + (1-q) h(-d/(1-q)), d = p - q, h(x) = x - log(1+x)
    >= 0: the terms linear in d cancel exactly instead of in rounding, so kl stays accurate
    where it is O(d^2) and the inversion can resolve p to 1e-12 near q.
    """
    q, p = np.broadcast_arrays(np.asarray(q, float), np.asarray(p, float))
    d = p - q
    with np.errstate(divide="ignore", invalid="ignore"):
        interior = q * _excess(d / q) + (1 - q) * _excess(-d / (1 - q))
        return np.where(q <= 0, -np.log1p(-p), np.where(q >= 1, -np.log(p), interior))


def _excess(x: np.ndarray) -> np.ndarray:
    """h(x) = x - log(1 + x) >= 0, the non-linear part of -log(1 + x)."""
    return x - np.log1p(x)


def kl_inverse_upper(q: ArrayLike, c: ArrayLike, tol: float = KL_INVERSE_TOL) -> np.ndarray:
    """sup {p in [q, 1]: kl(q || p) <= c}, by bisection to ``tol`` (kl(q||.) increases on [q, 1]).

    The returned p is the upper end of the final bracket, so it never under-states the bound.
    """
    q, c = np.broadcast_arrays(np.asarray(q, float), np.asarray(c, float))
    if np.any((q < 0) | (q > 1)) or np.any(c < 0):
        raise ValueError(f"kl inverse: expected q in [0, 1] and c >= 0, got q={q}, c={c}")
    low, high = q.copy(), np.ones_like(q)
    while np.any(high - low > tol):
        mid = 0.5 * (low + high)
        inside = kl_bernoulli(q, mid) <= c
        low, high = np.where(inside, mid, low), np.where(inside, high, mid)
    return high


def foret_complexity(theta_norm: ArrayLike, rho: ArrayLike, M: ArrayLike, k: int, delta: float) -> np.ndarray:
    """sqrt([k log(1 + |theta|^2/rho^2 (1 + sqrt(log M / k))^2) + 4 log(M/delta)] / (M - 1)).

    The Foret et al. complexity term with M tasks as sample size and its O~(1) term dropped.
    """
    theta_norm, rho, M = (np.asarray(v, float) for v in (theta_norm, rho, M))
    ratio = theta_norm**2 / rho**2 * (1 + np.sqrt(np.log(M) / k)) ** 2
    return np.sqrt((k * np.log1p(ratio) + 4 * np.log(M / delta)) / (M - 1))


def foret_rhs(
    max_in_ball: ArrayLike, theta_norm: ArrayLike, rho: ArrayLike, M: ArrayLike, k: int, delta: float
) -> np.ndarray:
    """L_D(theta) <= max_{|eps| <= rho} L_S(theta + eps) + foret_complexity (Foret-style)."""
    return np.asarray(max_in_ball, float) + foret_complexity(theta_norm, rho, M, k, delta)


def foret_sigma(rho: ArrayLike, M: ArrayLike, k: int) -> np.ndarray:
    """The posterior scale of Foret's proof, sigma = rho / (sqrt k + sqrt log M): |eps| <= rho
    with high probability. The premise L_D(theta) <= E L_D(theta + N(0, sigma^2 I)) is checked
    at this sigma."""
    return np.asarray(rho, float) / (math.sqrt(k) + np.sqrt(np.log(np.asarray(M, float))))


def gaussian_kl(mean_norm: ArrayLike, sigma: ArrayLike, prior_sigma: ArrayLike, k: int) -> np.ndarray:
    """KL(N(mu, s^2 I_k) || N(0, s_P^2 I_k)) = [k s^2/s_P^2 + |mu|^2/s_P^2 - k + k log(s_P^2/s^2)] / 2."""
    s2, p2 = np.asarray(sigma, float) ** 2, np.asarray(prior_sigma, float) ** 2
    return 0.5 * (k * s2 / p2 + np.asarray(mean_norm, float) ** 2 / p2 - k + k * np.log(p2 / s2))


def pac_bayes_kl_complexity(kl: ArrayLike, M: ArrayLike, delta: float, n_priors: int) -> np.ndarray:
    """[KL(Q||P) + log(2 sqrt(M) n_priors / delta)] / M: the kl budget of the PAC-Bayes-kl bound,
    union over ``n_priors`` priors."""
    M = np.asarray(M, float)
    return (np.asarray(kl, float) + np.log(2 * np.sqrt(M) * n_priors / delta)) / M


def pac_bayes_kl_rhs(
    gibbs_train_upper: ArrayLike,
    theta_norm: ArrayLike,
    sigma: ArrayLike,
    prior_sigmas: np.ndarray,
    M: ArrayLike,
    k: int,
    delta: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Upper bound on L_D(Q), Q = N(theta, s^2 I): the best prior of the grid (union bound) of
    kl^-1(L_S(Q), [KL(Q||P) + log(2 sqrt(M) J/delta)] / M).

    ``gibbs_train_upper`` is an upper bound on the posterior's training risk L_S(Q)
    (``mc_upper``); arguments broadcast together. Returns (bound, index of the best prior).
    """
    prior = np.asarray(prior_sigmas, float)
    expand = lambda v: np.asarray(v, float)[..., None]  # noqa: E731  (the prior grid is the last axis)
    kl = gaussian_kl(expand(theta_norm), expand(sigma), prior, k)
    budget = pac_bayes_kl_complexity(kl, expand(M), delta, prior.size)
    bounds = kl_inverse_upper(expand(gibbs_train_upper), budget)
    best = bounds.argmin(axis=-1)
    return np.take_along_axis(bounds, best[..., None], axis=-1)[..., 0], best


def pac_bayes_bound(
    gibbs_estimates: np.ndarray,
    n_evaluations: ArrayLike,
    theta_norm: ArrayLike,
    sigmas: np.ndarray,
    prior_sigmas: np.ndarray,
    M: ArrayLike,
    k: int,
    delta: float,
) -> dict[str, np.ndarray]:
    """The PAC-Bayes-kl bound on L_D(Q) for the best posterior scale of a grid, all of delta spent.

    ``gibbs_estimates[..., i]``: Monte Carlo estimate of L_S(N(theta, sigmas[i]^2 I)) from
    ``n_evaluations`` independent [0, 1] evaluations. delta/2 goes to the Monte Carlo bounds
    (union over the I scales), delta/2 to PAC-Bayes-kl (union over the J priors); the posterior
    may depend on the data, so picking the best scale costs nothing more. Returns the bound,
    the chosen scale and prior indices, and the training-risk upper bound at the chosen scale.
    """
    sigmas = np.asarray(sigmas, float)
    upper = mc_upper(gibbs_estimates, np.asarray(n_evaluations, float)[..., None], delta / 2 / sigmas.size)
    expand = lambda v: np.asarray(v, float)[..., None]  # noqa: E731
    bounds, prior_index = pac_bayes_kl_rhs(
        upper, expand(theta_norm), sigmas, prior_sigmas, expand(M), k, delta / 2
    )
    best = bounds.argmin(axis=-1)
    take = lambda a: np.take_along_axis(a, best[..., None], axis=-1)[..., 0]  # noqa: E731
    return {
        "rhs": take(bounds),
        "sigma_index": best,
        "prior_index": take(prior_index),
        "gibbs_upper": take(upper),
    }


def mc_upper(estimate: ArrayLike, n: ArrayLike, delta: float) -> np.ndarray:
    """kl^-1(estimate, log(1/delta)/n): with prob. >= 1 - delta the mean of n independent [0, 1]
    variables' expectations is below it (one-sided Chernoff-kl bound)."""
    return kl_inverse_upper(estimate, math.log(1 / delta) / np.asarray(n, float))


def is_vacuous(rhs: ArrayLike) -> np.ndarray:
    """A bound on a [0, 1] risk that is >= 1 (to the kl-inversion tolerance) says nothing."""
    return np.asarray(rhs, float) >= VACUOUS_LEVEL - 1e3 * KL_INVERSE_TOL
