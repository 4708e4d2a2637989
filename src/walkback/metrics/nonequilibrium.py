"""Non-equilibrium diagnostics: entropy production per step and weight asymmetry (docs/method.md).

For a chain at stationarity ``s ~ pi``, ``s' ~ p(. | s)``, the entropy production per step is
``EP = E[log p(s' | s) - log p(s | s')] >= 0``, equal to 0 exactly under detailed balance
(``pi(s) p(s'|s) = pi(s') p(s|s')``). With a Gaussian operator both log densities are exact, so a
Monte-Carlo estimate over the pairs of a stationary chain is unbiased.

Closed form for ``s' = M s + c + eps``, ``eps ~ N(0, Q)``, stationary ``N(mu, S)`` with
``S = M S M^T + Q`` and ``mu = (I - M)^-1 c``:
``E[log N(s'; M s + c, Q)] = -1/2 [d log 2 pi + log|Q| + d]``;
the reverse residual ``r = s - M s' - c`` has mean 0 and covariance
``C = S + M S M^T - S (M^T)^2 - M^2 S`` (using ``Cov(s', s) = M S``), so
``EP = 1/2 [tr(Q^-1 C) - d]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import solve_discrete_lyapunov

from ..transition import TransitionOperator

__all__ = [
    "EntropyProduction",
    "chain_estimate",
    "check_protocol",
    "entropy_production",
    "linear_gaussian_entropy_production",
    "stationary_moments",
    "weight_asymmetry",
]

Z_95 = 1.959963984540054  # normal 97.5% quantile


@dataclass
class EntropyProduction:
    """Monte-Carlo entropy production per step (nats) with a 95% interval over chains.

    ``mean`` is the average over chains of each chain's mean pair term
    ``log p(s'|s) - log p(s|s')``; ``stderr = std(chain means) / sqrt(num_chains)``;
    ``ci_low, ci_high = mean -/+ 1.96 * stderr``. ``num_pairs`` counts all pairs used.
    """

    mean: float
    ci_low: float
    ci_high: float
    stderr: float
    num_chains: int
    num_pairs: int
    burn_in: int
    temperature: float


@torch.no_grad()
def check_protocol(num_chains: int, *, steps: int, burn_in: int) -> None:
    """The estimator needs at least 2 independent chains, ``steps >= 1`` and ``burn_in >= 0``."""
    if num_chains < 2 or steps < 1 or burn_in < 0:
        raise ValueError("need at least 2 chains, steps >= 1 and burn_in >= 0")


def chain_estimate(chain_sums: torch.Tensor, *, steps: int, burn_in: int,
                   temperature: float) -> EntropyProduction:
    """EP from per-chain sums of pair terms ``(N,)`` over ``steps`` steps: the mean of the chain
    means, with a 95% interval ``mean +- Z_95 * std(chain means) / sqrt(N)``."""
    num_chains = chain_sums.shape[0]
    chain_means = chain_sums / steps
    mean = chain_means.mean().item()
    stderr = chain_means.std(unbiased=True).item() / math.sqrt(num_chains)
    return EntropyProduction(
        mean=mean,
        ci_low=mean - Z_95 * stderr,
        ci_high=mean + Z_95 * stderr,
        stderr=stderr,
        num_chains=num_chains,
        num_pairs=num_chains * steps,
        burn_in=burn_in,
        temperature=float(temperature),
    )


@torch.no_grad()  # 2 x steps operator passes: an autograd graph would hold every state
def entropy_production(
    operator: TransitionOperator,
    start: torch.Tensor,
    *,
    temperature: float = 1.0,
    burn_in: int,
    steps: int,
    generator: torch.Generator | None = None,
) -> EntropyProduction:
    """Estimate ``EP = E[log p_T(s'|s) - log p_T(s|s')]`` from ``N`` independent chains.

    Each chain starts at a row of ``start`` ``(N, *shape)``, runs ``burn_in`` steps at ``T`` to reach
    stationarity, then ``steps`` more steps whose exact pair terms are averaged per chain. The
    interval comes from the spread of the ``N`` (independent) chain means, which accounts for the
    autocorrelation within a chain.
    """
    check_protocol(start.shape[0], steps=steps, burn_in=burn_in)
    s = start
    for _ in range(burn_in):
        s = operator(s, temperature).sample(generator=generator)
    total = torch.zeros(start.shape[0], dtype=torch.float64, device=start.device)
    for _ in range(steps):
        step = operator(s, temperature)
        s_next = step.sample(generator=generator)
        forward = step.log_prob(s_next)
        backward = operator(s_next, temperature).log_prob(s)
        total += (forward - backward).double()
        s = s_next
    return chain_estimate(total, steps=steps, burn_in=burn_in, temperature=temperature)


def _as_f64(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """A float64 numpy copy of a tensor or array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def stationary_moments(
    M: torch.Tensor | np.ndarray, c: torch.Tensor | np.ndarray, noise_cov: torch.Tensor | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Stationary ``(mu, S)`` of ``s' = M s + c + N(0, Q)``: ``mu = (I - M)^-1 c``, ``S = M S M^T + Q``.

    Raises ``ValueError`` unless the spectral radius of ``M`` is below 1 (no stationary law).
    """
    m, q = _as_f64(M), _as_f64(noise_cov)
    radius = np.max(np.abs(np.linalg.eigvals(m)))
    if radius >= 1.0:
        raise ValueError(f"spectral radius of M is {radius:.4g} >= 1: no stationary distribution")
    d = m.shape[0]
    mu = np.linalg.solve(np.eye(d) - m, _as_f64(c))
    cov = solve_discrete_lyapunov(m, q)
    return mu, 0.5 * (cov + cov.T)


def linear_gaussian_entropy_production(
    M: torch.Tensor | np.ndarray, c: torch.Tensor | np.ndarray, noise_cov: torch.Tensor | np.ndarray
) -> float:
    """Exact stationary ``EP = 1/2 [tr(Q^-1 C) - d]`` of ``s' = M s + c + N(0, Q)`` (nats per step).

    ``C = S + M S M^T - S (M^T)^2 - M^2 S`` is the covariance of the reverse residual
    ``s - M s' - c`` (its mean is 0 at stationarity, so ``c`` does not change EP).
    Symmetric ``M`` with isotropic ``Q`` gives 0 (detailed balance).
    """
    m, q = _as_f64(M), _as_f64(noise_cov)
    _, cov = stationary_moments(m, c, q)
    m2 = m @ m
    resid_cov = cov + m @ cov @ m.T - cov @ m2.T - m2 @ cov
    trace = np.trace(np.linalg.solve(q, resid_cov))
    return float(0.5 * (trace - m.shape[0]))


def weight_asymmetry(W: torch.Tensor | np.ndarray) -> float:
    """``||W - W^T||_F / ||W + W^T||_F``: 0 for symmetric ``W``, 1 when the antisymmetric and
    symmetric parts have equal norm.

    Returns ``inf`` for a non-zero antisymmetric ``W`` (``W + W^T = 0``); raises ``ValueError`` for
    ``W = 0`` (0 / 0) or a non-square ``W``.
    """
    w = _as_f64(W)
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"W must be square, got shape {w.shape}")
    anti = np.linalg.norm(w - w.T)
    sym = np.linalg.norm(w + w.T)
    if sym == 0.0:
        if anti == 0.0:
            raise ValueError("weight_asymmetry is undefined for W = 0")
        return math.inf
    return float(anti / sym)
