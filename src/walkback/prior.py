"""The broad Gaussian ``p*(s_K)`` that starts the cooling chain (docs/method.md).

Training keeps a diagonal Gaussian, initialised at the data's mean and variance and moved toward
the moments of the heating end points ``s_K`` as training sees them (an exponential moving
average). A prior refit to heated points once training is done (``Walkback.start_at``) may be
diagonal or add ``R`` principal directions of their covariance (``LowRankGaussianPrior``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .streams import Generator, randn
from .transition import gaussian_log_prob

__all__ = ["GaussianPrior", "LowRankGaussianPrior"]


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
