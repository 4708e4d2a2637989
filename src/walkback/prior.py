"""The broad Gaussian ``p*(s_K)`` that starts the cooling chain (docs/method.md).

Training keeps a diagonal Gaussian, initialised at the data's mean and variance and moved toward
the moments of the heating end points ``s_K`` as training sees them (an exponential moving
average). A prior refit to heated points once training is done (``Walkback.start_at``) may be
diagonal, add ``R`` principal directions of their covariance (``LowRankGaussianPrior``) or be a
mixture of ``C`` diagonal Gaussians (``MixturePrior``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from .streams import Generator, rand, randn
from .transition import LOG_2PI, gaussian_log_prob

__all__ = ["GaussianPrior", "LowRankGaussianPrior", "MixturePrior", "describe_form"]


class GaussianPrior(nn.Module):
    """``p*(s) = N(s; mean, diag(var))`` over states of shape ``data_shape``."""

    mean: torch.Tensor
    var: torch.Tensor

    def __init__(self, data_shape: tuple[int, ...], *, min_var: float = 1e-6) -> None:
        super().__init__()
        self.data_shape = tuple(data_shape)
        self.min_var = min_var
        self.register_buffer("mean", torch.zeros(self.data_shape))
        self.register_buffer("var", torch.ones(self.data_shape))

    @torch.no_grad()
    def fit(self, points: torch.Tensor) -> GaussianPrior:
        """Set mean and variance to the per-dimension moments of ``points`` ``(N, *data_shape)``."""
        self.mean.copy_(points.mean(0))
        self.var.copy_(points.var(0, unbiased=False).clamp(min=self.min_var))
        return self

    @torch.no_grad()
    def update(self, points: torch.Tensor, momentum: float,
               reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """Move the moments toward those of ``points``:
        ``m <- momentum * m + (1 - momentum) * m_batch``; ``reduce`` averages a share's moments over the processes that hold the rest of the batch."""
        batch_mean = points.mean(0)
        batch_second = points.square().mean(0)
        if reduce is not None:
            batch_mean, batch_second = reduce(batch_mean), reduce(batch_second)
        second = self.var + self.mean.square()
        self.mean.lerp_(batch_mean, 1 - momentum)
        second.lerp_(batch_second, 1 - momentum)
        self.var.copy_((second - self.mean.square()).clamp(min=self.min_var))

    def log_prob(self, s: torch.Tensor) -> torch.Tensor:
        """``log p*(s)`` per example, shape ``(B,)``."""
        return gaussian_log_prob(s, self.mean.expand_as(s), self.var.expand_as(s))

    def sample(self, num: int, *, generator: Generator = None) -> torch.Tensor:
        """Draw ``num`` states, shape ``(num, *data_shape)`` (``generator``: see ``streams``)."""
        eps = randn((num, *self.data_shape), generator=generator, device=self.mean.device,
                    dtype=self.mean.dtype)
        return self.mean + self.var.sqrt() * eps


class LowRankGaussianPrior(GaussianPrior):
    """``p*(s) = N(s; mean, diag(var) + F^T F)``: a diagonal Gaussian plus ``rank`` principal
    directions, the rows of ``factor`` ``(rank, D)`` (``D`` the state's size). Fitted to points
    (``fit``), not averaged during training: the diagonal keeps only per-unit variances, while
    heated images keep part of their pixels' correlations (docs/method.md, "A start prior with
    principal directions")."""

    factor: torch.Tensor

    def __init__(self, data_shape: tuple[int, ...], rank: int, *, min_var: float = 1e-6) -> None:
        super().__init__(data_shape, min_var=min_var)
        if rank < 1:
            raise ValueError(f"rank {rank}: must be at least 1 (rank 0 is GaussianPrior)")
        self.register_buffer("factor", torch.zeros(rank, self.mean.numel()))

    @property
    def rank(self) -> int:
        return len(self.factor)

    @torch.no_grad()
    def fit(self, points: torch.Tensor) -> LowRankGaussianPrior:
        """The points' mean; ``factor`` the top ``rank`` eigenvectors of their covariance ``C``
        scaled by the square roots of the eigenvalues; ``var`` what ``F^T F`` leaves of C's
        diagonal (at least ``min_var``). With ``rank = D`` the covariance is ``C`` itself (plus
        ``min_var`` on the diagonal where C's eigenvalues are used up)."""
        flat = points.flatten(1).double()
        mean = flat.mean(0)
        centred = flat - mean
        cov = centred.T @ centred / len(flat)
        eigenvalues, vectors = torch.linalg.eigh(cov)  # ascending
        top = eigenvalues[-self.rank:].clamp(min=0).flip(0)
        factor = top.sqrt()[:, None] * vectors[:, -self.rank:].flip(1).T
        rest = torch.diagonal(cov) - factor.square().sum(0)
        self.mean.copy_(mean.reshape(self.data_shape))
        self.factor.copy_(factor)
        self.var.copy_(rest.reshape(self.data_shape).clamp(min=self.min_var))
        return self

    def update(self, points: torch.Tensor, momentum: float,
               reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        raise TypeError("a low-rank prior is fitted to points (fit), not averaged in training")

    def log_prob(self, s: torch.Tensor) -> torch.Tensor:
        """``log p*(s)`` per example, shape ``(B,)`` (Woodbury and the matrix determinant
        lemma, ``torch.distributions.LowRankMultivariateNormal``)."""
        dist = torch.distributions.LowRankMultivariateNormal(
            self.mean.flatten(), self.factor.T, self.var.flatten(), validate_args=False)
        return dist.log_prob(s.flatten(1).to(self.mean.dtype))

    def sample(self, num: int, *, generator: Generator = None) -> torch.Tensor:
        """``mean + sqrt(var) eps + F^T z`` with ``eps`` and ``z`` standard normal."""
        diagonal = super().sample(num, generator=generator)
        z = randn((num, self.rank), generator=generator, device=self.mean.device,
                  dtype=self.mean.dtype)
        return diagonal + (z @ self.factor).reshape(num, *self.data_shape)


class MixturePrior(GaussianPrior):
    """``p*(s) = sum_c w_c N(s; mu_c, diag(v_c))``: ``components`` diagonal Gaussians, fitted to
    points by expectation-maximisation (``fit``), not averaged during training. Heated images at
    a low top still fall into clusters (the digit a point came from), which one Gaussian fills
    in between (docs/method.md, "A mixture start prior"). ``mean`` and ``var`` hold the
    mixture's own per-unit moments."""

    log_weight: torch.Tensor
    component_mean: torch.Tensor
    component_var: torch.Tensor

    def __init__(self, data_shape: tuple[int, ...], components: int, *,
                 min_var: float = 1e-6) -> None:
        super().__init__(data_shape, min_var=min_var)
        if components < 2:
            raise ValueError(f"components {components}: must be at least 2 (one is GaussianPrior)")
        self.register_buffer("log_weight", torch.full((components,), -math.log(components)))
        self.register_buffer("component_mean", torch.zeros(components, *self.data_shape))
        self.register_buffer("component_var", torch.ones(components, *self.data_shape))

    @property
    def components(self) -> int:
        return len(self.log_weight)

    @torch.no_grad()
    def fit(self, points: torch.Tensor, *, generator: torch.Generator | None = None,
            iterations: int = 200, tolerance: float = 1e-8) -> MixturePrior:
        """Maximum likelihood by EM from k-means++ centres (``generator`` draws them), until the
        mean log-likelihood per unit gains less than ``tolerance`` or after ``iterations``
        rounds. A component that loses every point keeps weight 0."""
        flat = points.flatten(1).double()
        if len(flat) < self.components:
            raise ValueError(f"{len(flat)} points for {self.components} components")
        mean = kmeans_plus_plus(flat, self.components, generator=generator)
        var = flat.var(0, unbiased=False).clamp(min=self.min_var).expand_as(mean).clone()
        log_weight = torch.full_like(mean[:, 0], -math.log(self.components))
        last = -math.inf
        for _ in range(iterations):
            joint = log_weight + diagonal_log_densities(flat, mean, var)
            log_like = torch.logsumexp(joint, 1, keepdim=True)
            resp = (joint - log_like).exp()
            count = resp.sum(0)
            share = count.clamp(min=torch.finfo(flat.dtype).tiny)[:, None]
            mean = resp.T @ flat / share
            var = (resp.T @ flat.square() / share - mean.square()).clamp(min=self.min_var)
            log_weight = (count / len(flat)).log()
            now = float(log_like.mean()) / flat.shape[1]
            if now - last < tolerance:
                break
            last = now
        weight = log_weight.exp()[:, None]
        total_mean = (weight * mean).sum(0)
        total_var = (weight * (var + mean.square())).sum(0) - total_mean.square()
        self.log_weight.copy_(log_weight)
        self.component_mean.copy_(mean.reshape(self.component_mean.shape))
        self.component_var.copy_(var.reshape(self.component_var.shape))
        self.mean.copy_(total_mean.reshape(self.data_shape))
        self.var.copy_(total_var.clamp(min=self.min_var).reshape(self.data_shape))
        return self

    def update(self, points: torch.Tensor, momentum: float,
               reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        raise TypeError("a mixture prior is fitted to points (fit), not averaged in training")

    def log_prob(self, s: torch.Tensor) -> torch.Tensor:
        """``log p*(s) = logsumexp_c (log w_c + log N(s; mu_c, v_c))`` per example, ``(B,)``,
        computed in float64 (the matrix-product form subtracts terms of order ``D s^2 / v``)."""
        joint = self.log_weight.double() + diagonal_log_densities(
            s.flatten(1).double(), self.component_mean.flatten(1).double(),
            self.component_var.flatten(1).double())
        return torch.logsumexp(joint, 1).to(self.mean.dtype)

    def sample(self, num: int, *, generator: Generator = None) -> torch.Tensor:
        """A component ``c ~ w`` (inverse CDF of one uniform), then ``mu_c + sqrt(v_c) eps``."""
        device = self.mean.device
        u = rand((num,), generator=generator, device=device, dtype=torch.float64)
        cdf = self.log_weight.double().exp().cumsum(0)
        pick = torch.searchsorted(cdf, u * cdf[-1], right=True).clamp(max=self.components - 1)
        eps = randn((num, *self.data_shape), generator=generator, device=device,
                    dtype=self.mean.dtype)
        return self.component_mean[pick] + self.component_var[pick].sqrt() * eps


def diagonal_log_densities(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """``log N(x_n; mean_c, diag(var_c))`` for every point ``x`` ``(N, D)`` and component
    ``mean``, ``var`` ``(C, D)``: shape ``(N, C)``, by three matrix products instead of an
    ``(N, C, D)`` difference."""
    precision = var.reciprocal()
    quadratic = (x.square() @ precision.T - 2 * x @ (mean * precision).T
                 + (mean.square() * precision).sum(1))
    return -0.5 * (quadratic + var.log().sum(1) + x.shape[1] * LOG_2PI)


def kmeans_plus_plus(points: torch.Tensor, num: int, *,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """``num`` of ``points`` ``(N, D)`` as centres, each drawn with probability proportional to
    its squared distance to the nearest centre drawn before (Arthur and Vassilvitskii 2007)."""
    first = int(torch.randint(len(points), (1,), generator=generator, device=points.device))
    centres = [points[first]]
    dist = (points - centres[0]).square().sum(1)
    for _ in range(1, num):
        pick = int(torch.multinomial(dist / dist.sum(), 1, generator=generator))
        centres.append(points[pick])
        dist = torch.minimum(dist, (points - centres[-1]).square().sum(1))
    return torch.stack(centres)


def describe_form(rank: int = 0, components: int = 0) -> str:
    """The start prior's form in words (``rank`` principal directions or ``components``)."""
    if components > 1:
        return f"mixture of {components} diagonal Gaussians"
    return f"Gaussian (diagonal plus rank {rank})" if rank else "diagonal Gaussian"
