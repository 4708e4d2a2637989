"""Linear-Gaussian backbone: an operator with an exact likelihood and bound (tests, docs).

With ``TransitionOperator(LinearGaussianBackbone(d), (d,), form="2017", alpha=a, min_var=0)``
the operator is ``p_T(s' | s) = N(s'; a s + (1 - a)(W s + b), T * softplus(g))``, i.e.
``s' = M s + c + N(0, T D)`` with ``M = a I + (1 - a) W``, ``c = (1 - a) b``, ``D = diag(softplus(g))``
(closed forms in ``walkback.metrics.gaussian``).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["LinearGaussianBackbone", "inverse_softplus"]


def inverse_softplus(y: torch.Tensor) -> torch.Tensor:
    """``g`` with ``softplus(g) = y`` (``y > 0``): ``g = y + log(1 - exp(-y))``, stable for all ``y``."""
    return y + torch.log(-torch.expm1(-y))


class LinearGaussianBackbone(nn.Module):
    """``(s, cond) -> (F, G)`` with ``F = s W^T + b`` and ``G = g`` (a learned constant).

    ``weight`` ``(dim, dim)`` (default identity), ``bias`` ``(dim,)`` (default zero) and
    ``log_var`` ``(dim,)``, the log of the variance ``softplus(G)`` at T = 1 (default 0, i.e. unit
    variance). ``cond`` is ignored: the operator is the same at every temperature up to ``T``.
    """

    def __init__(
        self,
        dim: int,
        *,
        weight: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
        log_var: torch.Tensor | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.dim = dim
        weight = torch.eye(dim, dtype=dtype) if weight is None else torch.as_tensor(weight, dtype=dtype)
        bias = torch.zeros(dim, dtype=dtype) if bias is None else torch.as_tensor(bias, dtype=dtype)
        log_var = torch.zeros(dim, dtype=dtype) if log_var is None else torch.as_tensor(log_var, dtype=dtype)
        if weight.shape != (dim, dim) or bias.shape != (dim,) or log_var.shape != (dim,):
            raise ValueError(
                f"expected weight ({dim}, {dim}), bias ({dim},), log_var ({dim},); got "
                f"{tuple(weight.shape)}, {tuple(bias.shape)}, {tuple(log_var.shape)}"
            )
        self.weight = nn.Parameter(weight.clone())
        self.bias = nn.Parameter(bias.clone())
        # g in float64 first so that softplus(g) reproduces exp(log_var) to the dtype's precision
        self.g = nn.Parameter(inverse_softplus(log_var.double().exp()).to(dtype))

    @property
    def variance(self) -> torch.Tensor:
        """``softplus(g)``, the noise variance at ``T = 1``, shape ``(dim,)``."""
        return nn.functional.softplus(self.g)

    def forward(
        self, s: torch.Tensor, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``F = s W^T + b`` and ``G = g`` broadcast, both shaped like ``s`` ``(B, *shape)``."""
        flat = s.flatten(1).to(self.weight.dtype)
        if flat.shape[1] != self.dim:
            raise ValueError(f"expected states with {self.dim} entries, got shape {tuple(s.shape)}")
        f = flat @ self.weight.T + self.bias
        g = self.g.expand(flat.shape[0], self.dim)
        return f.reshape(s.shape), g.reshape(s.shape)
