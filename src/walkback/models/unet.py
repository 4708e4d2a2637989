"""DDPM-style U-Net backbone for images: ``(s, cond) -> (F, G)``, both shaped ``(B, C, H, W)``."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["UNetBackbone", "group_norm", "pad_to_multiple"]


def group_norm(channels: int, groups: int, *, affine: bool = True) -> nn.GroupNorm:
    """GroupNorm with the largest group count ``<= groups`` that divides ``channels``.

    Per-sample statistics: unlike BatchNorm, a sample never depends on its batch-mates.
    """
    g = max(d for d in range(1, min(groups, channels) + 1) if channels % d == 0)
    return nn.GroupNorm(g, channels, affine=affine)


def pad_to_multiple(s: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad ``(B, C, H, W)`` on the bottom / right up to multiples of ``multiple``."""
    ph, pw = (-s.shape[-2]) % multiple, (-s.shape[-1]) % multiple
    return F.pad(s, (0, pw, 0, ph)) if ph or pw else s


class ResBlock(nn.Module):
    """``x + conv(act(FiLM(norm(conv(act(norm(x)))), emb)))``; FiLM ``h * (1 + scale) + shift``."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.conv1 = group_norm(c_in, groups), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * c_out) if emb_dim else None
        self.norm2, self.conv2 = group_norm(c_out, groups), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h)
        if self.film is not None and emb is not None:
            scale, shift = self.film(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
            h = h * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the ``H * W`` positions of one sample, with a residual."""

    def __init__(self, channels: int, groups: int, head_dim: int = 64) -> None:
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = group_norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # each (B, heads, HW, c / heads)
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class Downsample(nn.Module):
    """3x3 convolution with stride 2: ``(B, C, H, W) -> (B, C, H/2, W/2)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 convolution: ``(B, C, H, W) -> (B, C, 2H, 2W)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))

@dataclass(frozen=True)
class _Spec:
    """What every level of the U-Net shares: block settings and the (padded) input side."""

    emb_dim: int
    groups: int
    dropout: float
    num_res_blocks: int
    attention_resolutions: tuple[int, ...]
    side: int

    def block(self, c_in: int, c_out: int) -> ResBlock:
        return ResBlock(c_in, c_out, self.emb_dim, self.groups, self.dropout)

    def attn(self, channels: int, level: int) -> list[nn.Module]:
        """Self-attention after the blocks of ``level`` if its side is a listed resolution."""
        res = self.side // 2**level
        return [SelfAttention(channels, self.groups)] if res in self.attention_resolutions else []


def _build_down(channels: int, widths: list[int], spec: _Spec) -> tuple[nn.ModuleList, list[int]]:
    """Down path (blocks, attention, downsampling) and the channel count of every skip."""
    down, skips, c = nn.ModuleList(), [channels], channels
    for i, w in enumerate(widths):
        for _ in range(spec.num_res_blocks):
            down.append(nn.ModuleList([spec.block(c, w), *spec.attn(w, i)]))
            c = w
            skips.append(c)
        if i < len(widths) - 1:
            down.append(nn.ModuleList([Downsample(c)]))
            skips.append(c)
    return down, skips


def _build_up(widths: list[int], skips: list[int], spec: _Spec) -> nn.ModuleList:
    """Up path: ``num_res_blocks + 1`` blocks per level, each eating one skip (popped)."""
    up, skips, c = nn.ModuleList(), list(skips), skips[-1]
    for i, w in reversed(list(enumerate(widths))):
        for j in range(spec.num_res_blocks + 1):
            layers: list[nn.Module] = [spec.block(c + skips.pop(), w), *spec.attn(w, i)]
            if i > 0 and j == spec.num_res_blocks:
                layers.append(Upsample(w))
            up.append(nn.ModuleList(layers))
            c = w
    return up


def _head(channels: int, out_channels: int, groups: int) -> nn.Sequential:
    """GroupNorm + SiLU + 3x3 convolution to the data's channel count."""
    return nn.Sequential(group_norm(channels, groups), nn.SiLU(),
                         nn.Conv2d(channels, out_channels, 3, padding=1))


class UNetBackbone(nn.Module):
    """A DDPM-style U-Net ``(s, cond) -> (F, G)`` with ``F = s + R(s, cond)``; shapes ``(B, C, H, W)``.

    Levels ``i = 0..L-1`` run at resolution ``H / 2^i`` with ``channels * channel_mults[i]``
    channels and ``num_res_blocks`` residual blocks (GroupNorm + SiLU; no BatchNorm, so a sample
    never depends on its batch-mates) each; the up path mirrors it with skip connections; the
    middle is ResBlock + self-attention + ResBlock; self-attention also follows the blocks of
    every level whose (padded) side length is in ``attention_resolutions``.

    When ``cond_dim > 0`` the conditioning vector (an embedding of ``log T``, shape
    ``(B, cond_dim)``) passes through an MLP (``cond_dim -> 4 channels -> 4 channels``) and sets a
    FiLM scale / shift in every residual block. With ``cond_dim = 0`` the backbone is blind to T
    (the 2017 operator form) and ``cond`` must be None.

    Odd sizes: the input is zero-padded (bottom / right) to a multiple of ``2^(L-1)`` and the
    outputs are cropped back. With the default three levels no padding is needed for 28x28
    (MNIST runs at 28 -> 14 -> 7), 32x32 or 64x64; four levels pad 28x28 to 32x32.

    Two heads, each GroupNorm + SiLU + 3x3 conv: ``R`` (zero-initialised, so ``F(s) = s``) and
    ``G`` (zero weights, constant bias, so ``softplus(G) = init_var``): at initialisation the
    operator is a slow random walk.
    """

    def __init__(
        self,
        data_shape: tuple[int, int, int],
        *,
        channels: int = 64,
        channel_mults: tuple[int, ...] = (1, 2, 2),
        num_res_blocks: int = 2,
        attention_resolutions: tuple[int, ...] = (),
        dropout: float = 0.0,
        cond_dim: int = 0,
        groups: int = 32,
        init_var: float = 0.01,
    ) -> None:
        super().__init__()
        if len(data_shape) != 3:
            raise ValueError(f"UNetBackbone needs data_shape (C, H, W), got {data_shape}")
        self.data_shape = tuple(data_shape)
        self.cond_dim = cond_dim
        self.multiple = 2 ** (len(channel_mults) - 1)
        c_data, side = data_shape[0], data_shape[1] + (-data_shape[1]) % self.multiple
        emb_dim = 4 * channels if cond_dim else 0
        self.cond_mlp = (nn.Sequential(nn.Linear(cond_dim, emb_dim), nn.SiLU(),
                                       nn.Linear(emb_dim, emb_dim)) if cond_dim else None)
        self.stem = nn.Conv2d(c_data, channels, 3, padding=1)
        widths = [channels * m for m in channel_mults]
        spec = _Spec(emb_dim, groups, dropout, num_res_blocks, tuple(attention_resolutions), side)
        self.down, skips = _build_down(channels, widths, spec)
        c = skips[-1]
        self.mid = nn.ModuleList([spec.block(c, c), SelfAttention(c, groups), spec.block(c, c)])
        self.up = _build_up(widths, skips, spec)
        c = widths[0]
        self.head_r, self.head_g = _head(c, c_data, groups), _head(c, c_data, groups)
        self._init_heads(init_var)

    def _init_heads(self, init_var: float) -> None:
        """``R = 0`` and ``softplus(G) = init_var`` everywhere (``b = log(expm1(init_var))``)."""
        conv_r, conv_g = self.head_r[-1], self.head_g[-1]
        for conv in (conv_r, conv_g):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        nn.init.constant_(conv_g.bias, math.log(math.expm1(init_var)))

    def _embed(self, cond: torch.Tensor | None) -> torch.Tensor | None:
        """``(B, cond_dim) -> (B, 4 * channels)``, or None for the T-blind form."""
        if self.cond_mlp is None:
            if cond is not None:
                raise ValueError("UNetBackbone built with cond_dim=0 got a cond; set cond_dim")
            return None
        if cond is None:
            raise ValueError(f"UNetBackbone built with cond_dim={self.cond_dim} needs cond")
        return self.cond_mlp(cond)

    def forward(
        self, s: torch.Tensor, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self._embed(cond)
        h = self.stem(pad_to_multiple(s, self.multiple))
        hs = [h]
        for layers in self.down:
            for layer in layers:
                h = layer(h, emb)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, emb)
        for layers in self.up:
            h = torch.cat([h, hs.pop()], dim=1)
            for layer in layers:
                h = layer(h, emb)
        height, width = s.shape[-2:]
        r = self.head_r(h)[..., :height, :width]
        g = self.head_g(h)[..., :height, :width]
        return s + r, g
