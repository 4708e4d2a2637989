"""MLP backbone for flat states (2-D toys, flattened images)."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["MLPBackbone"]


class MLPBackbone(nn.Module):
    """``(s, cond) -> (F, G)``, both shaped like ``s``, with ``F = s + R(s, cond)``.

    The head starts at zero, so at initialisation ``F(s) = s`` (the operator's mean is the
    identity) and ``softplus(G) = init_var`` everywhere: heating starts as a slow random walk.

    ``depth`` hidden layers of width ``hidden`` with leaky ReLU (slope 0.02, as in the 2017 toy
    models). When ``cond_dim > 0`` the conditioning vector (an embedding of ``log T``) is
    projected and added to every hidden layer's pre-activation.
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        *,
        hidden: int = 256,
        depth: int = 3,
        cond_dim: int = 0,
        negative_slope: float = 0.02,
        init_var: float = 0.01,
    ) -> None:
        super().__init__()
        self.data_shape = tuple(data_shape)
        dim = math.prod(self.data_shape)
        widths = [dim] + [hidden] * depth
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.cond = nn.ModuleList(nn.Linear(cond_dim, hidden) for _ in range(depth)) if cond_dim else None
        self.act = nn.LeakyReLU(negative_slope)
        self.head = nn.Linear(hidden, 2 * dim)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        with torch.no_grad():  # softplus(b) = init_var  <=>  b = log(expm1(init_var))
            self.head.bias[dim:] = math.log(math.expm1(init_var))

    def forward(
        self, s: torch.Tensor, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = s.flatten(1)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if self.cond is not None and cond is not None:
                h = h + self.cond[i](cond)
            h = self.act(h)
        r, g = self.head(h).chunk(2, dim=1)
        shape = (s.shape[0], *self.data_shape)
        return s + r.reshape(shape), g.reshape(shape)
