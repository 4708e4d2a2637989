"""Inpainting and the image pictures (strip PNG, chain GIF, inpainting figure) on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from walkback.data.images import to_display_uint8
from walkback.inpaint import InpaintResult, half_mask, inpaint
from walkback.model import Walkback
from walkback.models import MLPBackbone
from walkback.pictures import PAD, chain_gif, evenly_spaced, inpaint_figure, walk_strip
from walkback.prior import GaussianPrior
from walkback.schedule import heating_temperatures
from walkback.transition import TransitionOperator

SHAPE = (1, 8, 8)


def grid_size(rows: int, cols: int, h: int = 8, w: int = 8) -> tuple[int, int]:
    """PIL ``(width, height)`` of a tiled grid."""
    return cols * (w + PAD) + PAD, rows * (h + PAD) + PAD


@pytest.fixture
def model() -> Walkback:
    torch.manual_seed(0)
    operator = TransitionOperator(MLPBackbone(SHAPE, hidden=16, depth=1), SHAPE, form="2017")
    return Walkback(operator, GaussianPrior(SHAPE), heating_temperatures(4, factor=1.5))


def images(n: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def run_inpaint(model: Walkback, x: torch.Tensor, mask: torch.Tensor, seed: int) -> InpaintResult:
    return inpaint(model.operator, model.prior, model.active_temperatures, x, mask,
                   completions=3, extra_steps=2, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("side", ["top", "left"])
def test_half_mask(side: str) -> None:
    mask = half_mask((3, 6, 10), side)
    assert mask.shape == (3, 6, 10) and mask.dtype == torch.bool
    assert int(mask.sum()) == 3 * 6 * 10 // 2
    if side == "top":
        assert mask[:, :3].all() and not mask[:, 3:].any()
    else:
        assert mask[:, :, :5].all() and not mask[:, :, 5:].any()


def test_half_mask_rejects_bad_side() -> None:
    with pytest.raises(ValueError):
        half_mask(SHAPE, "bottom")  # type: ignore[arg-type]


@pytest.mark.parametrize("side", ["top", "left"])
def test_inpaint_clamps_known_pixels(model: Walkback, side: str) -> None:
    x, mask = images(2), half_mask(SHAPE, side)
    result = run_inpaint(model, x, mask, seed=3)
    assert result.completions.shape == (2, 3, *SHAPE)
    assert result.mask.shape == (2, *SHAPE)
    known = mask.expand(2, 3, *SHAPE)
    expected = x[:, None].expand_as(result.completions)
    assert torch.equal(result.completions[known], expected[known])
    unknown = result.completions[:, :, ~mask]  # (B, n, num_unknown)
    for b in range(2):
        assert not torch.allclose(unknown[b, 0], unknown[b, 1])
        assert not torch.allclose(unknown[b, 1], unknown[b, 2])
    assert torch.isfinite(result.completions).all()


def test_inpaint_is_seeded(model: Walkback) -> None:
    x, mask = images(2), half_mask(SHAPE, "top")
    first, second = run_inpaint(model, x, mask, 5), run_inpaint(model, x, mask, 5)
    assert torch.equal(first.completions, second.completions)
    assert not torch.equal(first.completions, run_inpaint(model, x, mask, 6).completions)


def test_evenly_spaced() -> None:
    assert evenly_spaced(5, 5) == [0, 1, 2, 3, 4]
    assert evenly_spaced(9, 3) == [0, 4, 8]
    assert evenly_spaced(7, 1) == [6]
    with pytest.raises(ValueError):
        evenly_spaced(3, 4)


def test_walk_strip_png(model: Walkback, tmp_path) -> None:
    path = walk_strip(model, images(3), tmp_path / "strip.png",
                      generator=torch.Generator().manual_seed(0), num_columns=4)
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == grid_size(3, 8)
    assert not list(tmp_path.glob(".*.tmp"))


def test_chain_gif(model: Walkback, tmp_path) -> None:
    path = chain_gif(model, tmp_path / "chains.gif", steps_past_k=3, frames=6,
                     generator=torch.Generator().manual_seed(0))
    with Image.open(path) as image:
        assert image.format == "GIF"
        assert image.n_frames == 6
        assert image.size == grid_size(4, 4)


def test_chain_gif_rejects_too_many_frames(model: Walkback, tmp_path) -> None:
    with pytest.raises(ValueError):
        chain_gif(model, tmp_path / "chains.gif", steps_past_k=0, frames=10,
                  generator=torch.Generator().manual_seed(0))
    assert not (tmp_path / "chains.gif").exists()


def test_inpaint_figure(model: Walkback, tmp_path) -> None:
    x = images(2)
    result = run_inpaint(model, x, half_mask(SHAPE, "left"), seed=0)
    path = inpaint_figure(result, x, tmp_path / "inpaint.png")
    with Image.open(path) as image:
        assert image.size == grid_size(2, 3 + 2)
        pixels = np.array(image)
    # the masked input's unknown (right) half is mid grey
    first = pixels[PAD:PAD + 8, PAD:PAD + 8]
    assert (first[:, 4:] == 128).all()
    assert (first[:, :4] == np.asarray(to_display_uint8(x[0, 0, :, :4]))).all()
