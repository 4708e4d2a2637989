"""Entropy production (closed form and Monte Carlo) and weight asymmetry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from walkback.metrics.gaussian import LinearGaussian
from walkback.metrics.nonequilibrium import (
    EntropyProduction,
    entropy_production,
    linear_gaussian_entropy_production,
    stationary_moments,
    weight_asymmetry,
)
from walkback.models.linear import LinearGaussianBackbone
from walkback.transition import TransitionOperator

ALPHA = 0.5


def rotation(theta: float) -> np.ndarray:
    return np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])


def linear_operator(matrix: np.ndarray, bias: list[float], log_var: list[float]) -> TransitionOperator:
    """The 2017-form operator with ``M = a I + (1 - a) W`` equal to ``matrix`` (float64)."""
    m = torch.as_tensor(matrix, dtype=torch.float64)
    weight = (m - ALPHA * torch.eye(m.shape[0], dtype=torch.float64)) / (1 - ALPHA)
    backbone = LinearGaussianBackbone(
        m.shape[0], weight=weight, bias=torch.tensor(bias, dtype=torch.float64),
        log_var=torch.tensor(log_var, dtype=torch.float64), dtype=torch.float64,
    )
    return TransitionOperator(backbone, (m.shape[0],), form="2017", alpha=ALPHA, min_var=0.0)


def test_closed_form_zero_under_detailed_balance() -> None:
    sym = np.array([[0.5, 0.2], [0.2, -0.3]])
    assert abs(linear_gaussian_entropy_production(sym, [1.0, 2.0], 0.7 * np.eye(2))) < 1e-10
    # reversible with anisotropic Q: M = Q^{1/2} A Q^{-1/2}, A symmetric (Q^-1 M symmetric)
    q = np.array([0.5, 2.0])
    m = np.diag(q**0.5) @ sym @ np.diag(q**-0.5)
    assert abs(linear_gaussian_entropy_production(m, [0.0, 1.0], np.diag(q))) < 1e-10


def test_closed_form_rotation_positive_and_analytic() -> None:
    r, theta = 0.8, 0.3
    ep = linear_gaussian_entropy_production(r * rotation(theta), np.zeros(2), np.eye(2))
    assert ep > 0.1
    # M = r R(theta), Q = I: EP = 4 r^2 sin^2(theta) / (1 - r^2)
    assert ep == pytest.approx(4 * r**2 * math.sin(theta) ** 2 / (1 - r**2), rel=1e-10)
    with pytest.raises(ValueError):
        linear_gaussian_entropy_production(1.1 * rotation(theta), np.zeros(2), np.eye(2))


def test_closed_form_matches_monte_carlo_on_stationary_pairs() -> None:
    rng = np.random.default_rng(0)
    m = np.array([[0.6, -0.4, 0.1], [0.3, 0.5, 0.0], [-0.2, 0.1, 0.4]])
    c = np.array([0.5, -1.0, 0.2])
    q = np.diag([0.5, 1.0, 2.0])
    mu, cov = stationary_moments(m, c, q)
    np.testing.assert_allclose(m @ cov @ m.T + q, cov, atol=1e-12)
    n = 200_000
    s = rng.multivariate_normal(mu, cov, size=n)
    s_next = s @ m.T + c + rng.standard_normal((n, 3)) * np.sqrt(np.diag(q))
    var = np.diag(q)
    fwd = -0.5 * ((s_next - s @ m.T - c) ** 2 / var).sum(1)
    bwd = -0.5 * ((s - s_next @ m.T - c) ** 2 / var).sum(1)  # normalisers cancel
    pairs = fwd - bwd
    est, se = pairs.mean(), pairs.std(ddof=1) / math.sqrt(n)
    exact = linear_gaussian_entropy_production(m, c, q)
    assert exact > 0.05
    assert abs(est - exact) < 5 * se


def test_entropy_production_reversible_operator_contains_zero() -> None:
    op = linear_operator(np.array([[0.7, 0.15], [0.15, 0.4]]), [0.3, -0.2], [0.0, 0.0])
    gen = torch.Generator().manual_seed(1)
    result = entropy_production(
        op, torch.zeros(1000, 2, dtype=torch.float64), temperature=0.5, burn_in=80, steps=50,
        generator=gen,
    )
    assert isinstance(result, EntropyProduction)
    assert result.ci_low <= 0.0 <= result.ci_high
    assert result.num_pairs == 50_000 and result.num_chains == 1000 and result.temperature == 0.5
    assert result.ci_high - result.ci_low < 0.05


def test_entropy_production_rotation_matches_closed_form() -> None:
    op = linear_operator(0.8 * rotation(0.3), [0.3, -0.2], [0.0, 0.0])
    temperature = 2.0
    lg = LinearGaussian.from_operator(op)
    exact = linear_gaussian_entropy_production(lg.matrix, lg.offset, lg.noise_cov(temperature))
    gen = torch.Generator().manual_seed(2)
    result = entropy_production(
        op, torch.zeros(1000, 2, dtype=torch.float64), temperature=temperature, burn_in=80,
        steps=100, generator=gen,
    )
    assert result.ci_low <= exact <= result.ci_high
    assert result.ci_low > 0.0
    assert result.stderr == pytest.approx((result.ci_high - result.mean) / 1.96, rel=1e-3)


def test_entropy_production_rejects_single_chain() -> None:
    op = linear_operator(np.eye(2) * 0.5, [0.0, 0.0], [0.0, 0.0])
    with pytest.raises(ValueError):
        entropy_production(op, torch.zeros(1, 2, dtype=torch.float64), burn_in=0, steps=1)


def test_weight_asymmetry() -> None:
    assert weight_asymmetry(torch.tensor([[1.0, 2.0], [2.0, 3.0]])) == 0.0
    # ||W - W^T|| = sqrt(8), ||W + W^T|| = 4
    assert weight_asymmetry(np.array([[1.0, 2.0], [0.0, 1.0]])) == pytest.approx(math.sqrt(8) / 4)
    # equal-norm symmetric and antisymmetric parts -> 1
    assert weight_asymmetry(np.array([[0.0, 1.0], [0.0, 0.0]])) == pytest.approx(1.0)
    assert weight_asymmetry(np.array([[0.0, 1.0], [-1.0, 0.0]])) == math.inf
    with pytest.raises(ValueError):
        weight_asymmetry(np.zeros((2, 2)))
    with pytest.raises(ValueError):
        weight_asymmetry(np.zeros((2, 3)))
