"""Parzen-window log-likelihood: closed forms, a brute-force reference, chunking, sigma selection."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from walkback.metrics.parzen import DEFAULT_SIGMAS, parzen_evaluate, parzen_log_likelihood, select_sigma


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_single_kernel_is_a_gaussian_density() -> None:
    s = torch.tensor([[0.2, 0.4, 0.9]])
    x = torch.tensor([[0.2, 0.4, 0.9], [0.0, 1.0, 0.5]])
    sigma = 0.3
    ll = parzen_log_likelihood(s, x, [sigma])[0]
    ref = multivariate_normal(s[0].double().numpy(), sigma**2).logpdf(x.double().numpy())
    torch.testing.assert_close(ll, torch.as_tensor(ref), rtol=0, atol=1e-10)
    assert float(ll[0]) == pytest.approx(-1.5 * math.log(2 * math.pi * sigma**2))


def test_matches_brute_force_mixture_and_does_not_depend_on_chunks() -> None:
    samples = torch.rand(37, 5, generator=_gen(0))
    points = torch.rand(23, 5, generator=_gen(1))
    sigmas = [0.1, 0.25, 0.7]
    s, x = samples.double().numpy(), points.double().numpy()
    for k, sigma in enumerate(sigmas):
        comps = [multivariate_normal(si, sigma**2).logpdf(x) for si in s]
        ref = logsumexp(comps, axis=0) - math.log(len(s))
        a = parzen_log_likelihood(samples, points, sigmas)[k]
        b = parzen_log_likelihood(samples, points, sigmas, chunk_points=4, chunk_samples=5)[k]
        torch.testing.assert_close(a, torch.as_tensor(ref), rtol=0, atol=1e-9)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_far_points_do_not_underflow_to_minus_infinity() -> None:
    ll = parzen_log_likelihood(torch.zeros(3, 784), torch.ones(2, 784), [0.1])
    assert torch.isfinite(ll).all()
    assert float(ll[0, 0]) == pytest.approx(-784 / (2 * 0.01) - 392 * math.log(2 * math.pi * 0.01))


def test_sigma_is_chosen_on_validation_and_reported_on_test() -> None:
    g = _gen(2)
    centres = torch.rand(10, 8, generator=g)
    draw = lambda n: (centres[torch.randint(0, 10, (n,), generator=g)]  # noqa: E731
                      + 0.05 * torch.randn(n, 8, generator=g))
    samples, val, test = draw(400), draw(200), draw(300)
    sigma, val_means = select_sigma(samples, val, DEFAULT_SIGMAS)
    assert len(val_means) == 10 and sigma == pytest.approx(DEFAULT_SIGMAS[max(range(10), key=val_means.__getitem__)])
    assert sigma < 0.2  # tight clusters prefer a small window
    result = parzen_evaluate(samples, val, test, DEFAULT_SIGMAS, chunk_points=64)
    assert result.sigma == sigma and result.num_test == 300 and result.dim == 8
    direct = parzen_log_likelihood(samples, test, [sigma])[0]
    assert result.test_log_likelihood == pytest.approx(float(direct.mean()))
    assert result.test_stderr == pytest.approx(float(direct.std() / math.sqrt(300)))


def test_dimension_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="same dimension"):
        parzen_log_likelihood(torch.zeros(3, 4), torch.zeros(2, 5), [0.1])
