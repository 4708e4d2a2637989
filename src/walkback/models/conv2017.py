"""The 2017 Variational Walkback image backbone: conv encoder, MLP, two deconv heads.

For MNIST the 2017 model was a plain MLP of width 1200 (docs/method.md, "The 2017 code"): that is
``MLPBackbone(data_shape, hidden=1200)``; ``Conv2017Backbone`` also accepts 1x28x28 (padded to
32x32 internally, cropped back) for a convolutional MNIST ablation.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .unet import group_norm, pad_to_multiple

__all__ = ["Conv2017Backbone", "StepNorm"]

GROUPS = 32  # GroupNorm groups of the convolutional layers (clamped to divide the channels)


class StepNorm(nn.Module):
    """Per-sample normalisation, then a per-step affine map: ``norm(h) * scale + shift``.

    ``scale, shift = weights @ table`` with ``table`` of shape ``(num_sets, C)`` and ``weights``
    ``(B, num_sets)`` (a soft lookup of the heating step), or the single set 0 when ``weights``
    is None. ``h`` is ``(B, C)`` (LayerNorm) or ``(B, C, H, W)`` (GroupNorm).
    """

    def __init__(self, channels: int, num_sets: int, *, spatial: bool) -> None:
        super().__init__()
        self.norm: nn.Module = (group_norm(channels, GROUPS, affine=False) if spatial
                                else nn.LayerNorm(channels, elementwise_affine=False))
        self.scale = nn.Parameter(torch.ones(num_sets, channels))
        self.shift = nn.Parameter(torch.zeros(num_sets, channels))

    def forward(self, h: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        if weights is None:
            scale, shift = self.scale[:1], self.shift[:1]
        else:
            scale, shift = weights @ self.scale, weights @ self.shift  # (B, C)
        extra = (1,) * (h.dim() - 2)  # broadcast (B, C) over H, W
        return self.norm(h) * scale.reshape(*scale.shape, *extra) + shift.reshape(
            *shift.shape, *extra)


class _Layer(nn.Module):
    """``act(StepNorm(op(h)))`` for a conv, transposed conv or linear ``op``."""

    def __init__(self, op: nn.Module, channels: int, num_sets: int, slope: float) -> None:
        super().__init__()
        self.op, self.slope = op, slope
        self.norm = StepNorm(channels, num_sets, spatial=not isinstance(op, nn.Linear))

    def forward(self, h: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        return F.leaky_relu(self.norm(self.op(h), weights), self.slope)


def _deconv(c_in: int, c_out: int) -> nn.ConvTranspose2d:
    """Transposed 5x5 convolution, stride 2: ``(B, c_in, H, W) -> (B, c_out, 2H, 2W)``."""
    return nn.ConvTranspose2d(c_in, c_out, 5, stride=2, padding=2, output_padding=1)


class Conv2017Backbone(nn.Module):
    """The 2017 VW image network ``(s, cond) -> (F, G)``, ``F = s + R(s, cond)``, ``(B, C, H, W)``.

    Encoder: 5x5 stride-2 convolutions ``C -> enc_channels`` (3-64-128-256: 32x32 -> 4x4). MLP on
    the flattened code ``flat`` (``256 * 4 * 4 = 4096`` at 32x32): ``flat -> mlp_hidden x mlp_depth
    -> flat``, the 2017 ``4096-2048x4-4096`` (CelebA 64x64 in 2017: ``16384-1024x..-16384``, i.e.
    ``mlp_hidden=1024``). ``mlp_width`` (default None: ``flat``) sets the width of the MLP's two
    ends; a value other than ``flat`` adds linear maps ``flat -> mlp_width -> ..`` and
    ``.. -> mlp_width -> flat`` (not in the 2017 models). Two heads of
    5x5 stride-2 transposed convolutions (256-128-64-C) give ``R`` and ``G``. Leaky ReLU.

    Per-step normalisation ("different batchnorm per step improves results considerably"):
    every layer but the heads' last is followed by a per-sample normalisation (GroupNorm for
    feature maps, LayerNorm for vectors) and per-step affine parameters (``StepNorm``). This
    REPLACES the 2017 BatchNorm, whose batch statistics make a sample depend on its batch-mates
    (docs/method.md, "The 2017 code"). The backbone interface passes no step index, so the step is read from
    ``cond`` (an embedding of ``log T``, ``(B, cond_dim)``): ``weights = softmax(Linear(cond))``
    over ``num_steps`` sets is a learned soft lookup, and T enters only through the
    normalisation parameters, as in 2017. With ``cond_dim = 0`` (the operator form "2017")
    there is one shared set and ``cond`` must be None.

    Inputs whose side is not a multiple of ``2^len(enc_channels)`` (MNIST 28x28) are zero-padded
    (to 32x32) and the outputs cropped back. At initialisation ``R = 0`` (last mean deconv
    zero) and ``softplus(G) = init_var`` (last variance deconv zero weights, constant bias).
    """

    def __init__(
        self,
        data_shape: tuple[int, int, int],
        *,
        num_steps: int,
        enc_channels: tuple[int, ...] = (64, 128, 256),
        mlp_width: int | None = None,
        mlp_hidden: int = 2048,
        mlp_depth: int = 4,
        cond_dim: int = 0,
        negative_slope: float = 0.02,
        init_var: float = 0.01,
    ) -> None:
        super().__init__()
        if len(data_shape) != 3:
            raise ValueError(f"Conv2017Backbone needs data_shape (C, H, W), got {data_shape}")
        self.data_shape, self.cond_dim = tuple(data_shape), cond_dim
        self.multiple = 2 ** len(enc_channels)
        sets = num_steps if cond_dim else 1
        self.selector = nn.Linear(cond_dim, num_steps) if cond_dim else None
        chans = [data_shape[0], *enc_channels]
        self.encoder = nn.ModuleList(
            _Layer(nn.Conv2d(a, b, 5, stride=2, padding=2), b, sets, negative_slope)
            for a, b in zip(chans[:-1], chans[1:]))
        sides = [(n + (-n) % self.multiple) // self.multiple for n in data_shape[1:]]
        self.code_shape = (enc_channels[-1], *sides)
        flat = math.prod(self.code_shape)
        ends = [mlp_width] if mlp_width not in (None, flat) else []
        widths = [flat, *ends, *[mlp_hidden] * mlp_depth, *ends, flat]
        self.mlp = nn.ModuleList(_Layer(nn.Linear(a, b), b, sets, negative_slope)
                                 for a, b in zip(widths[:-1], widths[1:]))
        rev = chans[::-1]
        self.head_r, self.head_g = (
            nn.ModuleList(_Layer(_deconv(a, b), b, sets, negative_slope)
                          for a, b in zip(rev[:-2], rev[1:-1])) for _ in range(2))
        self.out_r, self.out_g = _deconv(rev[-2], rev[-1]), _deconv(rev[-2], rev[-1])
        for conv in (self.out_r, self.out_g):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        nn.init.constant_(self.out_g.bias, math.log(math.expm1(init_var)))

    def step_weights(self, cond: torch.Tensor | None) -> torch.Tensor | None:
        """Soft lookup of the heating step, ``(B, num_steps)``; None for the T-blind form."""
        if self.selector is None:
            if cond is not None:
                raise ValueError("Conv2017Backbone built with cond_dim=0 got a cond; set cond_dim")
            return None
        if cond is None:
            raise ValueError(f"Conv2017Backbone built with cond_dim={self.cond_dim} needs cond")
        return torch.softmax(self.selector(cond), dim=-1)

    def forward(
        self, s: torch.Tensor, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        weights = self.step_weights(cond)
        h = pad_to_multiple(s, self.multiple)
        for layer in self.encoder:
            h = layer(h, weights)
        h = h.flatten(1)
        for layer in self.mlp:
            h = layer(h, weights)
        h = h.reshape(s.shape[0], *self.code_shape)
        r, g = h, h
        for layer_r, layer_g in zip(self.head_r, self.head_g):
            r, g = layer_r(r, weights), layer_g(g, weights)
        height, width = s.shape[-2:]
        r = self.out_r(r)[..., :height, :width]
        g = self.out_g(g)[..., :height, :width]
        return s + r, g
