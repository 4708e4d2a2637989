"""Inpainting with a trained Variational Walkback model: anneal from the prior while clamping the
known pixels to the observed image after every step.

The known pixels are clamped spatially, the unknown pixels follow the operator conditioned on
the clamped ones through the network: at every cooling step ``t = K..1`` (then ``E`` extra
steps at ``T = 1``)

    s' ~ p_{T_t}(. | s),    s <- m * x + (1 - m) * s'

with ``m`` the known-pixel mask. The prior draw is clamped too, so the first operator step
already sees the observed pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from .prior import GaussianPrior
from .sampler import chain_temperatures
from .transition import TransitionOperator

__all__ = ["InpaintResult", "half_mask", "inpaint"]

Side = Literal["top", "left"]


@dataclass
class InpaintResult:
    """``completions``: ``(B, completions, C, H, W)`` final chain states (model space);
    ``mask``: ``(B, C, H, W)`` bool, True where the pixel was known (clamped to ``x``)."""

    completions: torch.Tensor
    mask: torch.Tensor


def half_mask(shape: tuple[int, int, int], side: Side) -> torch.Tensor:
    """Bool mask ``(C, H, W)``, True on the known half: the top ``H // 2`` rows (``"top"``) or
    the left ``W // 2`` columns (``"left"``)."""
    if len(shape) != 3:
        raise ValueError(f"half_mask needs an image shape (C, H, W), got {tuple(shape)}")
    c, h, w = shape
    mask = torch.zeros(c, h, w, dtype=torch.bool)
    if side == "top":
        mask[:, : h // 2, :] = True
    elif side == "left":
        mask[:, :, : w // 2] = True
    else:
        raise ValueError(f"side must be 'top' or 'left', got {side!r}")
    return mask


@torch.no_grad()
def inpaint(
    operator: TransitionOperator,
    prior: GaussianPrior,
    heating_temps: torch.Tensor,
    x: torch.Tensor,
    known_mask: torch.Tensor,
    *,
    completions: int,
    extra_steps: int = 0,
    extra_temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> InpaintResult:
    """Complete the unknown pixels of ``x`` ``(B, C, H, W)`` ``completions`` times each.

    ``known_mask`` is bool, ``(C, H, W)`` or ``(B, C, H, W)`` (True = known). All
    ``B * completions`` chains run as one batch: ``s_K ~ p*`` (clamped), then for each
    temperature ``T_K..T_1, T_E x extra_steps`` (``T_E = extra_temperature``) a sample from the
    operator followed by the clamp.
    Known pixels of every completion equal ``x`` exactly.
    """
    if completions < 1:
        raise ValueError(f"completions must be >= 1, got {completions}")
    if x.dim() != 4:
        raise ValueError(f"inpaint needs images (B, C, H, W), got shape {tuple(x.shape)}")
    b = x.shape[0]
    mask = known_mask.to(device=x.device, dtype=torch.bool).expand_as(x)
    target = x.repeat_interleave(completions, dim=0)  # (B * n, C, H, W), image-major
    known = mask.repeat_interleave(completions, dim=0)
    s = torch.where(known, target, prior.sample(b * completions, generator=generator).to(x))
    for temperature in chain_temperatures(heating_temps, extra_steps, extra_temperature).tolist():
        s = operator(s, temperature).sample(generator=generator)
        s = torch.where(known, target, s)
    return InpaintResult(s.reshape(b, completions, *x.shape[1:]), mask.clone())
