"""Stochastic recurrent rate network (docs/method.md, "The rate network").

State ``s = [v; h]``: ``visible_dim`` visible units (the data) followed by ``hidden_dim`` hidden
units, one weight matrix ``W`` over all ``n = visible_dim + hidden_dim`` units.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["RateNetworkBackbone"]


class RateNetworkBackbone(nn.Module):
    """``(s, cond) -> (F, G)`` with ``F = gain * phi(W s + b)`` and ``G = g`` (state-independent).

    Wrapped in ``TransitionOperator(..., alpha=1 - a)`` the operator's mean is
    ``alpha * s + (1 - alpha) * F = (1 - a) s + a gain phi(W s + b)``: the leaky rate
    dynamics with leak ``a`` (``rate.leak`` in the config), and variance
    ``T * (softplus(g) + min_var)``.

    ``W`` is unconstrained (any asymmetry is allowed). With ``symmetric=True`` the network is
    the detailed-balance comparison: ``W = (A + A^T) / 2`` of a free parameter ``A``.
    ``gain`` scales the rates' range (``tanh``: ``(-gain, gain)``), so that data values at the
    edge of ``[-1, 1]`` can be fixed points without saturating ``phi``.
    ``weight`` returns the effective ``W`` either way.

    ``cond_dim = 0`` (form "2017"): ``cond`` is ignored and the network is blind to T.
    ``cond_dim > 0`` (form "conditioned"): a neuromodulatory input. The embedding ``e`` of
    ``log T`` enters every unit as an input current and a variance offset,
    ``F = gain * phi(W s + b + U e)`` and ``G = g + V e``, with ``U`` and ``V`` zero at
    initialisation. ``W`` (the recurrent weights) is unchanged, so the asymmetry and the EP at
    a fixed T mean what they do without it.

    ``inner_steps = m > 0``: fast hidden units. Inside one transition the hidden units first run
    ``m`` deterministic leaky sub-steps ``h <- (1 - leak) h + leak gain phi(W [v; h] + b)`` with
    ``v`` held, and ``F`` is computed from ``[v; h_m]``. The transition stays one Gaussian whose
    mean is a function of ``s``, so densities and EP stay exact.

    ``input_scale = c > 0``: the weights from the visible to the hidden units start at
    ``N(0, c^2 / D)`` and the hidden biases at ``U(-c, c)``, as an MLP's first layer, so the
    hidden units start in tanh's nonlinear range. With the default ``c = 0`` every weight starts
    at ``N(0, 0.25 / n)`` and the hidden units start small and nearly linear; ``F`` is then close
    to ``phi`` of a linear map of ``v``, monotone along each visible unit, which gives each unit
    at most two stable values.
    """

    def __init__(
        self,
        visible_dim: int,
        hidden_dim: int,
        *,
        symmetric: bool = False,
        init_var: float = 0.01,
        activation: Callable[[torch.Tensor], torch.Tensor] = torch.tanh,
        gain: float = 1.0,
        cond_dim: int = 0,
        inner_steps: int = 0,
        leak: float = 0.5,
        input_scale: float = 0.0,
    ) -> None:
        super().__init__()
        if visible_dim <= 0 or hidden_dim < 0:
            raise ValueError(f"need visible_dim > 0 and hidden_dim >= 0, got {visible_dim}, {hidden_dim}")
        self.visible_dim, self.hidden_dim = visible_dim, hidden_dim
        n = visible_dim + hidden_dim
        self.symmetric = symmetric
        self.activation = activation
        self.gain = gain
        self.W = nn.Parameter(0.5 * torch.randn(n, n) / math.sqrt(n))  # A when symmetric; gain 0.5
        self.b = nn.Parameter(torch.zeros(n))
        if input_scale > 0 and hidden_dim > 0:  # the hidden units' input layer at an MLP's scale
            with torch.no_grad():
                self.W[visible_dim:, :visible_dim].normal_(0.0, input_scale / math.sqrt(visible_dim))
                self.b[visible_dim:].uniform_(-input_scale, input_scale)
        # softplus(g) = init_var  <=>  g = log(expm1(init_var))
        self.g = nn.Parameter(torch.full((n,), math.log(math.expm1(init_var))))
        self.inner_steps, self.leak = inner_steps, leak
        self.modulation = None
        if cond_dim > 0:  # U and V in one map: e -> [U e; V e], zero at initialisation
            self.modulation = nn.Linear(cond_dim, 2 * n, bias=False)
            nn.init.zeros_(self.modulation.weight)

    @property
    def num_units(self) -> int:
        return self.visible_dim + self.hidden_dim

    @property
    def weight(self) -> torch.Tensor:
        """The effective weight matrix ``W`` (``(A + A^T) / 2`` when symmetric)."""
        return 0.5 * (self.W + self.W.T) if self.symmetric else self.W

    def forward(
        self, s: torch.Tensor, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        w, current, g = self.weight, self.b, self.g.expand_as(s)
        if self.modulation is not None:
            if cond is None:
                raise ValueError("this rate network is temperature-modulated: it needs cond")
            u, offset = self.modulation(cond).chunk(2, dim=-1)
            current, g = current + u, g + offset
        d = self.visible_dim
        v, h = s[:, :d], s[:, d:]
        w_h, current_h = w[d:], current[..., d:]  # the hidden rows: all that a sub-step updates
        for _ in range(self.inner_steps):  # fast hidden units, v held
            rates = self.gain * self.activation(s @ w_h.T + current_h)
            h = (1 - self.leak) * h + self.leak * rates
            s = torch.cat([v, h], dim=1)
        return self.gain * self.activation(s @ w.T + current), g
