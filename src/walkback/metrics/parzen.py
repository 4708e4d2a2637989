"""Parzen-window log-likelihood: the legacy metric of the 2011-2017 tables (GSN, GAN, NET).

Kept only to compare with those tables; it is a poor likelihood estimate in high dimension
(Theis et al. 2016). Protocol of the GAN paper's ``parzen_ll.py``: pixels scaled to [0, 1];
an isotropic Gaussian kernel on each of ``N`` generated samples ``s_i``:

``log p(x) = logsumexp_i [-||x - s_i||^2 / (2 sigma^2)] - log N - (D / 2) log(2 pi sigma^2)``;

``sigma`` is the grid value (default ``logspace(-1, 0, 10)``) with the highest mean log-likelihood
on a validation set; the test log-likelihood (nats per example) is reported with its standard error.
Distances are float64 and the logsumexp is accumulated over chunks of samples (bounded memory).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm import tqdm

__all__ = ["DEFAULT_SIGMAS", "ParzenResult", "parzen_log_likelihood", "select_sigma", "parzen_evaluate"]

DEFAULT_SIGMAS: tuple[float, ...] = tuple(
    float(s) for s in torch.logspace(-1, 0, 10, dtype=torch.float64))


def _squared_distances(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``||x_j - s_i||^2`` ``(P, S)`` from ``|x|^2 + |s|^2 - 2 x.s`` (float64, clamped at 0)."""
    d2 = x.square().sum(1, keepdim=True) + s.square().sum(1)[None, :] - 2.0 * x @ s.T
    return d2.clamp_(min=0.0)


def _kernel_lse(d2: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """``logsumexp_i(-d2_{ji} / (2 sigma^2))`` for every sigma: ``(len(sigmas), P)``."""
    return torch.stack([torch.logsumexp(-d2 / (2.0 * s * s), dim=1) for s in sigmas.tolist()])


def parzen_log_likelihood(samples: torch.Tensor, points: torch.Tensor,
                          sigmas: Sequence[float] | torch.Tensor, *, chunk_points: int = 1000,
                          chunk_samples: int = 5000, device: str | torch.device = "cpu",
                          progress: bool = False) -> torch.Tensor:
    """``log p(x_j)`` (nats) of ``points`` ``(M, D)`` under the Parzen window of ``samples``
    ``(N, D)``, for each sigma: ``(len(sigmas), M)`` float64 on the CPU."""
    s_all = samples.flatten(1).to(device, torch.float64)
    x_all = points.flatten(1).to(device, torch.float64)
    if s_all.shape[1] != x_all.shape[1] or len(s_all) < 1:
        raise ValueError(f"parzen: samples {tuple(samples.shape)} and points {tuple(points.shape)} "
                         "must be non-empty with the same dimension")
    sig = torch.as_tensor(sigmas, dtype=torch.float64, device=device)
    n, dim = s_all.shape
    const = -math.log(n) - 0.5 * dim * torch.log(2 * math.pi * sig.square())
    out = []
    for start in tqdm(range(0, len(x_all), chunk_points), disable=not progress, desc="parzen"):
        x = x_all[start:start + chunk_points]
        acc = torch.full((len(sig), len(x)), -math.inf, dtype=torch.float64, device=device)
        for s_start in range(0, n, chunk_samples):
            d2 = _squared_distances(x, s_all[s_start:s_start + chunk_samples])
            acc = torch.logaddexp(acc, _kernel_lse(d2, sig))
        out.append((acc + const[:, None]).cpu())
    return torch.cat(out, dim=1)


@dataclass
class ParzenResult:
    """``sigma`` chosen on validation from ``sigmas`` (mean validation log-lik. per sigma in
    ``validation_log_likelihood``); ``test_log_likelihood`` mean nats per test example and its
    ``test_stderr``; counts of samples, validation and test examples; ``dim`` D."""

    sigma: float
    sigmas: list[float]
    validation_log_likelihood: list[float]
    test_log_likelihood: float
    test_stderr: float
    num_samples: int
    num_validation: int
    num_test: int
    dim: int


def select_sigma(samples: torch.Tensor, validation: torch.Tensor,
                 sigmas: Sequence[float] = DEFAULT_SIGMAS, **kwargs) -> tuple[float, list[float]]:
    """The sigma with the highest mean validation log-likelihood, and every sigma's mean."""
    means = parzen_log_likelihood(samples, validation, sigmas, **kwargs).mean(1)
    return float(torch.as_tensor(sigmas, dtype=torch.float64)[int(means.argmax())]), means.tolist()


def parzen_evaluate(samples: torch.Tensor, validation: torch.Tensor, test: torch.Tensor,
                    sigmas: Sequence[float] = DEFAULT_SIGMAS, **kwargs) -> ParzenResult:
    """Choose sigma on ``validation``, then the test log-likelihood (all in [0, 1] pixel units)."""
    sigma, val = select_sigma(samples, validation, sigmas, **kwargs)
    ll = parzen_log_likelihood(samples, test, [sigma], **kwargs)[0]
    stderr = float(ll.std() / math.sqrt(len(ll))) if len(ll) > 1 else math.nan
    return ParzenResult(sigma, [float(s) for s in sigmas], val, float(ll.mean()), stderr,
                        len(samples), len(validation), len(test), int(samples[0].numel()))
