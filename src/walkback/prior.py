"""The broad Gaussian ``p*(s_K)`` that starts the cooling chain (docs/method.md).

Diagonal Gaussian, initialised at the data's mean and variance and moved toward the moments of
the heating end points ``s_K`` as training sees them (an exponential moving average).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .streams import Generator, randn
from .transition import gaussian_log_prob

__all__ = ["GaussianPrior"]


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
