"""Pictures of image models: walk-away / walk-back strips, an animated GIF of cooling chains and
an inpainting figure. Images are in model space [-1, 1], clipped for display only; every file is
written atomically (temporary file + ``os.replace``).

Tiles of ``H x W`` pixels are laid out with a ``PAD``-pixel border, so a grid of ``R`` rows and
``Q`` columns is ``(R * (H + PAD) + PAD) x (Q * (W + PAD) + PAD)`` pixels (height x width).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import torch
from PIL import Image

from .atomic import atomic_write_bytes
from .data.images import tile_grid, to_display_uint8
from .inpaint import InpaintResult
from .model import Walkback
from .sampler import states_at
from .trajectory import walk_away

__all__ = ["chain_gif", "evenly_spaced", "inpaint_figure", "tile_images", "walk_strip"]

PAD = 1
PAD_VALUE = 255
GREY = 0.0  # model-space value shown for unknown pixels (mid grey)


def evenly_spaced(num_states: int, count: int) -> list[int]:
    """``count`` distinct indices in ``0..num_states-1``, evenly spaced, first and last included
    (``count == 1`` gives the last index)."""
    if not 1 <= count <= num_states:
        raise ValueError(f"need 1 <= count <= {num_states} states, got count={count}")
    if count == 1:
        return [num_states - 1]
    # round(i * (N - 1) / (F - 1)) in integer arithmetic: strictly increasing when F <= N
    return [(2 * i * (num_states - 1) + count - 1) // (2 * (count - 1)) for i in range(count)]


def tile_images(images: torch.Tensor) -> Image.Image:
    """A PIL image of the grid ``images`` ``(R, Q, C, H, W)`` (model space), ``PAD`` between
    tiles; mode ``L`` for one channel, ``RGB`` for three."""
    pixels = to_display_uint8(images.detach().cpu())
    r, q = pixels.shape[:2]
    array = tile_grid(pixels.flatten(0, 1), q, pad=PAD, fill=PAD_VALUE)
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)


def _write_png(image: Image.Image, path: str | Path) -> Path:
    """Encode ``image`` as PNG and write it atomically."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def _check_images(x: torch.Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"expected images (B, C, H, W), got shape {tuple(x.shape)}")


@torch.no_grad()
def walk_strip(
    model: Walkback,
    x: torch.Tensor,
    path: str | Path,
    *,
    generator: torch.Generator | None = None,
    num_columns: int = 8,
) -> Path:
    """PNG with one row per data point ``x[b]``: ``num_columns`` states of the walk away
    ``s_0 = x .. s_K`` (heating path, evenly spaced ``t``), then ``num_columns`` states of a
    cooling chain from the prior ``s_K ~ p* .. s_0`` (same spacing). Size: ``B`` rows by
    ``2 * num_columns`` tiles."""
    _check_images(x)
    trajectory = walk_away(model.heating_path(), x, generator=generator)
    k = trajectory.states.shape[0]  # K + 1 states
    away = trajectory.states[evenly_spaced(k, num_columns)]  # (Q, B, C, H, W)
    temps = model.active_temperatures[: k - 1]
    keep = set(evenly_spaced(k, num_columns))
    back = states_at(model.operator, model.prior, temps, x.shape[0], keep, generator=generator)
    columns = torch.cat([away, torch.stack(back).to(away)])  # (2Q, B, C, H, W)
    return _write_png(tile_images(columns.transpose(0, 1)), path)


@torch.no_grad()
def chain_gif(
    model: Walkback,
    path: str | Path,
    *,
    steps_past_k: int,
    frames: int,
    num_chains: int = 16,
    extra_temperature: float = 1.0,
    generator: torch.Generator | None = None,
    duration_ms: int = 100,
) -> Path:
    """Animated GIF (looping) of ``num_chains`` cooling chains in a square grid
    (``ceil(sqrt(num_chains))`` per row, 4x4 by default): the prior draw, ``K`` cooling steps
    and ``steps_past_k`` extra steps at ``T_E = extra_temperature``, shown at ``frames`` evenly
    spaced states
    (``frames <= K + steps_past_k + 1``)."""
    if len(model.prior.data_shape) != 3:
        raise ValueError(f"chain_gif needs an image model, got shape {model.prior.data_shape}")
    temps = model.active_temperatures
    keep = set(evenly_spaced(len(temps) + steps_past_k + 1, frames))
    states = states_at(model.operator, model.prior, temps, num_chains, keep,
                       extra_steps=steps_past_k, extra_temperature=extra_temperature,
                       generator=generator)
    side = math.ceil(math.sqrt(num_chains))
    rows = math.ceil(num_chains / side)
    images = []
    for state in states:
        padded = torch.zeros(rows * side, *state.shape[1:], dtype=state.dtype)
        padded[:num_chains] = state.cpu()
        images.append(tile_images(padded.reshape(rows, side, *state.shape[1:])))
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                   duration=duration_ms, loop=0)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def inpaint_figure(result: InpaintResult, x: torch.Tensor, path: str | Path) -> Path:
    """PNG with one row per image: the masked input (unknown pixels grey), the ``n``
    completions, the original; ``B`` rows by ``n + 2`` tiles."""
    _check_images(x)
    x = x.detach().cpu()
    mask = result.mask.cpu().expand_as(x)
    masked = torch.where(mask, x, torch.full_like(x, GREY))
    columns = torch.cat(
        [masked[:, None], result.completions.detach().cpu().to(x), x[:, None]], dim=1
    )  # (B, n + 2, C, H, W)
    return _write_png(tile_images(columns), path)
