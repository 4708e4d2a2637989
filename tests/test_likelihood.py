"""Bits/dim of the bound: the unit conversion against an independent closed form (the same
linear-Gaussian model written in v = (y + 1) / 2 space), the Monte-Carlo estimator against the
exact bound (continuous and dequantized 8-bit data), the IW bound, the per-step breakdown and
independence of the batch size."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import multivariate_normal

from walkback.metrics.gaussian import LinearGaussian, cooling_moments, exact_bound, exact_log_likelihood
from walkback.metrics.likelihood import (
    LN2, bits_per_dim, estimate_bound, estimate_bound_model_space, model_space_bits_per_dim,
    unit_log_density,
)
from walkback.model import Walkback
from walkback.models import LinearGaussianBackbone
from walkback.prior import GaussianPrior
from walkback.transition import TransitionOperator

F64 = torch.float64
W = torch.tensor([[0.7, -0.2, 0.1], [0.2, 0.6, 0.0], [0.0, 0.3, 0.8]], dtype=F64)
B = torch.tensor([0.1, -0.2, 0.05], dtype=F64)
VAR = torch.tensor([0.02, 0.04, 0.03], dtype=F64)
TEMPS = 1.5 ** torch.arange(4, dtype=F64)
PRIOR_MEAN = torch.tensor([0.1, -0.1, 0.2], dtype=F64)
PRIOR_VAR = torch.tensor([0.3, 0.2, 0.25], dtype=F64)


def _model(shape: tuple[int, ...] = (3,), dtype: torch.dtype = F64) -> Walkback:
    d = math.prod(shape)
    backbone = LinearGaussianBackbone(d, weight=W, bias=B, log_var=VAR.log(), dtype=dtype)
    op = TransitionOperator(backbone, shape, form="2017", alpha=0.5, min_var=0.0)
    prior = GaussianPrior(shape).to(dtype)
    prior.mean.copy_(PRIOR_MEAN.reshape(shape))
    prior.var.copy_(PRIOR_VAR.reshape(shape))
    return Walkback(op, prior, TEMPS.clone())


def _exact_bound_y(model: Walkback, y: torch.Tensor) -> torch.Tensor:
    op = LinearGaussian.from_operator(model.operator)
    return exact_bound(op, TEMPS, PRIOR_MEAN, PRIOR_VAR, y.flatten(1).double())


def _gaussian_data(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn(n, 3, generator=g, dtype=F64) + torch.tensor([0.2, -0.1, 0.0], dtype=F64)


def test_conversion_of_exact_bound_matches_the_model_written_in_unit_space() -> None:
    """y = 2 v - 1: the same operator in v-space is v' = M v + (c + 1 - M 1) / 2 + N(0, T D / 4),
    prior N((mu + 1) / 2, var / 4). Its exact bound in v-space, in bits/dim, is the analytic value."""
    model = _model()
    op = LinearGaussian.from_operator(model.operator)
    ones = torch.ones(3, dtype=F64)
    op_v = LinearGaussian(op.matrix, (op.offset + ones - op.matrix @ ones) / 2, op.var / 4)
    y = _gaussian_data(5, 0)
    v = (y + 1) / 2
    bound_y = exact_bound(op, TEMPS, PRIOR_MEAN, PRIOR_VAR, y)
    bound_v = exact_bound(op_v, TEMPS, (PRIOR_MEAN + 1) / 2, PRIOR_VAR / 4, v)
    torch.testing.assert_close(unit_log_density(bound_y, 3), bound_v, rtol=0, atol=1e-10)
    analytic = 8 - bound_v / (3 * LN2)
    torch.testing.assert_close(model_space_bits_per_dim(bound_y, 3), analytic, rtol=0, atol=1e-10)
    # the exact likelihood too, against scipy's density of v = (y + 1) / 2
    mean, cov = cooling_moments(op, TEMPS, PRIOR_MEAN, PRIOR_VAR)
    log_pv = multivariate_normal((mean.numpy() + 1) / 2, cov.numpy() / 4).logpdf(v.numpy())
    ll_y = exact_log_likelihood(op, TEMPS, PRIOR_MEAN, PRIOR_VAR, y)
    torch.testing.assert_close(model_space_bits_per_dim(ll_y, 3),
                               8 - torch.as_tensor(log_pv) / (3 * LN2), rtol=0, atol=1e-9)
    assert bits_per_dim(3 * 8 * LN2, 3) == pytest.approx(0.0)  # density 256^D: zero bits


def test_monte_carlo_bound_agrees_with_exact_within_standard_error() -> None:
    model = _model()
    y = _gaussian_data(2000, 1)
    est = estimate_bound_model_space(model, y, num_paths=1, seed=3, batch_size=500)
    exact_bits = model_space_bits_per_dim(_exact_bound_y(model, y), 3)
    assert est.bits_per_dim == pytest.approx(est.elbo_bits_per_dim, abs=1e-12)  # M = 1
    assert est.bits_per_dim_stderr == pytest.approx(float(est.per_example_bits.std() / math.sqrt(2000)))
    assert abs(est.bits_per_dim - float(exact_bits.mean())) < 3 * est.bits_per_dim_stderr
    diff = est.per_example_bits - exact_bits  # MC error alone (same points): a sharper check
    assert abs(float(diff.mean())) < 4 * float(diff.std() / math.sqrt(len(diff)))
    assert float(diff.std()) > 0.01  # it is a Monte-Carlo estimate, not the closed form


def test_importance_weighting_tightens_towards_the_likelihood() -> None:
    model = _model()
    y = _gaussian_data(500, 2)
    plain = estimate_bound_model_space(model, y, num_paths=1, seed=0)
    iw = estimate_bound_model_space(model, y, num_paths=32, seed=0)
    op = LinearGaussian.from_operator(model.operator)
    ll_bits = float(model_space_bits_per_dim(exact_log_likelihood(op, TEMPS, PRIOR_MEAN, PRIOR_VAR, y), 3).mean())
    assert iw.num_paths == 32 and iw.bits_per_dim < plain.bits_per_dim
    assert iw.bits_per_dim >= ll_bits - 3 * iw.bits_per_dim_stderr  # still a bound on -log p
    assert iw.bits_per_dim <= iw.elbo_bits_per_dim + 1e-9  # log mean w >= mean log w (Jensen)


def test_breakdown_sums_to_the_plain_bound() -> None:
    est = estimate_bound_model_space(_model(), _gaussian_data(100, 4), num_paths=3, seed=1)
    assert len(est.step_bits_per_dim) == len(TEMPS)
    assert est.constant_bits_per_dim == pytest.approx(7.0)
    total = est.constant_bits_per_dim + est.prior_bits_per_dim + sum(est.step_bits_per_dim)
    assert total == pytest.approx(est.elbo_bits_per_dim, abs=1e-9)
    assert est.bits_per_dim <= est.elbo_bits_per_dim + 1e-9  # IW (M = 3) is tighter: fewer bits


def _uint8_images(n: int, seed: int) -> torch.Tensor:
    y = 0.25 * torch.randn(n, 1, 1, 3, generator=torch.Generator().manual_seed(seed))
    return ((y + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def test_dequantized_uint8_pipeline_against_exact_bound_averaged_over_u() -> None:
    model = _model((1, 1, 3))
    images = _uint8_images(1000, 5)
    est = estimate_bound(model, images, num_paths=1, seed=2, batch_size=250)
    x = images.flatten(1).double()
    g = torch.Generator().manual_seed(9)
    exact = torch.stack([
        model_space_bits_per_dim(_exact_bound_y(model, (x + torch.rand(x.shape, generator=g, dtype=F64)) / 128 - 1), 3)
        for _ in range(256)
    ]).mean(0)  # E_u of the exact bound, per image
    diff = est.per_example_bits - exact
    assert abs(float(diff.mean())) < 4 * float(diff.std() / math.sqrt(len(diff)))


def test_estimate_does_not_depend_on_batch_size() -> None:
    model = _model((1, 1, 3))
    images = _uint8_images(230, 6)
    a = estimate_bound(model, images, num_paths=2, seed=4, batch_size=10, block=10)
    b = estimate_bound(model, images, num_paths=2, seed=4, batch_size=75, block=10)  # 70 per batch
    torch.testing.assert_close(a.per_example_bits, b.per_example_bits, rtol=0, atol=1e-9)
    c = estimate_bound(model, images, num_paths=2, seed=5, batch_size=70, block=10)
    assert not torch.allclose(a.per_example_bits, c.per_example_bits)  # the seed matters


def test_estimate_bound_requires_uint8() -> None:
    with pytest.raises(TypeError, match="uint8"):
        estimate_bound(_model((1, 1, 3)), torch.zeros(4, 1, 1, 3), num_paths=1)
