"""Toy 2-D data generators: shapes, determinism and the geometry each data set promises."""

from __future__ import annotations

import math

import pytest
import torch

from walkback.data import MOG_STD, RING8_STD, TOY_DATASETS, make_toy, toy_modes


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", TOY_DATASETS)
def test_shape_dtype_and_range(name: str) -> None:
    x = make_toy(name, 1000, generator=_gen(0))
    assert x.shape == (1000, 2)
    assert x.dtype == torch.float32
    assert torch.isfinite(x).all()
    assert x.abs().max() < 1.4  # "roughly [-1, 1]": mixtures reach past 1 by a few std


@pytest.mark.parametrize("name", TOY_DATASETS)
def test_same_seed_same_points_other_seed_other_points(name: str) -> None:
    a = make_toy(name, 500, generator=_gen(3))
    b = make_toy(name, 500, generator=_gen(3))
    c = make_toy(name, 500, generator=_gen(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_unknown_name_raises_and_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="moons") as info:
        make_toy("moons", 10)
    assert all(name in str(info.value) for name in TOY_DATASETS)
    with pytest.raises(ValueError):
        toy_modes("moons")


def test_circle_has_radius_exactly_one_and_uniform_angle() -> None:
    x = make_toy("circle", 20000, generator=_gen(0)).double()
    torch.testing.assert_close(x.norm(dim=1), torch.ones(20000, dtype=torch.float64), atol=1e-6, rtol=0)
    angle = torch.atan2(x[:, 1], x[:, 0])
    counts = torch.histc(angle, bins=8, min=-math.pi, max=math.pi)
    assert (counts / 20000 - 1 / 8).abs().max() < 0.015


def test_mog_points_sit_near_their_centre_with_equal_weights() -> None:
    centres, std = toy_modes("mog")
    assert std == MOG_STD == 0.05
    assert centres.shape == (9, 2)
    assert set(centres.flatten().tolist()) == {-1.0, 0.0, 1.0}
    x = make_toy("mog", 20000, generator=_gen(0))
    dist, nearest = torch.cdist(x, centres).min(dim=1)
    # Within 3 std of the centre in 2-D: chi2_2 mass 1 - exp(-9 / 2) = 0.9889 ; allow sampling noise.
    assert (dist <= 3 * std).float().mean() > 0.985
    assert (dist <= 5 * std).float().mean() > 0.999
    weights = torch.bincount(nearest, minlength=9).float() / 20000
    assert ((weights - 1 / 9).abs() < 0.01).all()


def test_mog_component_std_matches() -> None:
    centres, std = toy_modes("mog")
    x = make_toy("mog", 20000, generator=_gen(1))
    nearest = torch.cdist(x, centres).argmin(dim=1)
    residual = x - centres[nearest]
    assert abs(residual.std().item() - std) < 0.002


def test_ring8_modes_on_unit_circle() -> None:
    centres, std = toy_modes("ring8")
    assert std == RING8_STD
    torch.testing.assert_close(centres.norm(dim=1), torch.ones(8))
    x = make_toy("ring8", 8000, generator=_gen(0))
    weights = torch.bincount(torch.cdist(x, centres).argmin(dim=1), minlength=8).float() / 8000
    assert ((weights - 1 / 8).abs() < 0.02).all()


def test_toy_modes_none_for_non_mixtures() -> None:
    for name in ("spiral", "circle", "checkerboard"):
        assert toy_modes(name) is None


def test_checkerboard_only_black_cells_equally_filled() -> None:
    x = make_toy("checkerboard", 16000, generator=_gen(0))
    assert (x >= -1).all() and (x <= 1).all()
    cell = ((x + 1) / 0.5).floor().long().clamp(0, 3)  # (N, 2) column, row
    assert ((cell[:, 0] + cell[:, 1]) % 2 == 0).all()
    counts = torch.bincount(cell[:, 0] * 4 + cell[:, 1], minlength=16).float() / 16000
    black = counts[counts > 0]
    assert len(black) == 8
    assert ((black - 1 / 8).abs() < 0.02).all()


def test_spiral_follows_its_parametrisation() -> None:
    x = make_toy("spiral", 5000, generator=_gen(0)).double()
    # r = 0.1 + 0.9 u and theta = 2 pi u: invert via the radius, compare with the angle.
    u = ((x.norm(dim=1) - 0.1) / 0.9).clamp(0, 1)
    expected = 0.1 + 0.9 * u
    predicted = torch.stack([expected * torch.cos(2 * math.pi * u), expected * torch.sin(2 * math.pi * u)], 1)
    error = (predicted - x).norm(dim=1)
    assert error.median() < 0.05  # noise 0.01 per axis, amplified by the angle error
    assert x.norm(dim=1).max() < 1.1 and x.norm(dim=1).min() > 0.0
