"""Drift field: curl / divergence of linear fields and the Helmholtz rotational fraction."""

from __future__ import annotations

import math

import pytest
import torch

from walkback.metrics import biot_savart, curl_divergence, drift_field, helmholtz_parts, rotational_magnitude

ROTATION = torch.tensor([[0.0, -1.0], [1.0, 0.0]])


def _linear_mean(a: torch.Tensor):
    """``mean(s) = s + A s``, so the drift is ``A s``."""
    return lambda s: s + s @ a.T


@pytest.mark.parametrize("c", [0.3, 1.0])
def test_rotation_has_curl_2c_and_no_divergence(c: float) -> None:
    field = drift_field(_linear_mean(c * ROTATION), lim=1.5, grid=41)
    assert field.xs.shape == field.ys.shape == (41,)
    assert field.drift.shape == (41, 41, 2) and field.drift.dtype == torch.float64
    torch.testing.assert_close(field.curl, torch.full((41, 41), 2 * c, dtype=torch.float64), atol=1e-5, rtol=0)
    assert field.divergence.abs().max() < 1e-5


@pytest.mark.parametrize("c", [0.3, 1.0])
def test_gradient_field_has_no_curl_and_divergence_minus_2c(c: float) -> None:
    field = drift_field(_linear_mean(-c * torch.eye(2)), lim=1.0, grid=21)
    assert field.curl.abs().max() < 1e-5
    torch.testing.assert_close(field.divergence, torch.full((21, 21), -2 * c, dtype=torch.float64), atol=1e-5, rtol=0)


def test_grid_convention_row_is_y_column_is_x() -> None:
    field = drift_field(lambda s: 2 * s, lim=1.0, grid=5)  # drift = s
    assert field.drift[0, 4, 0] == pytest.approx(1.0) and field.drift[0, 4, 1] == pytest.approx(-1.0)
    assert field.drift[4, 0, 0] == pytest.approx(-1.0) and field.drift[4, 0, 1] == pytest.approx(1.0)


def test_rotational_magnitude_pure_rotation_and_pure_gradient() -> None:
    # Rotation: the Biot-Savart field of uniform vorticity on a square equals the rotation up to
    # corner effects; its RMS is 0.961 of the rotation's, whatever the grid (continuum value).
    rotation = drift_field(_linear_mean(0.5 * ROTATION), lim=1.5, grid=41)
    assert 0.94 < rotational_magnitude(rotation) <= 1.0
    # Gradient: curl is exactly 0 for a linear field, so the rotational part vanishes.
    gradient = drift_field(_linear_mean(-0.5 * torch.eye(2)), lim=1.5, grid=41)
    assert rotational_magnitude(gradient) < 1e-6
    # Equal parts, orthogonal at each point: 1/sqrt(2) of the ideal, times the same 0.961.
    mixed = drift_field(_linear_mean(0.5 * ROTATION - 0.5 * torch.eye(2)), lim=1.5, grid=41)
    assert rotational_magnitude(mixed) == pytest.approx(rotational_magnitude(rotation) / math.sqrt(2), rel=1e-3)


def test_biot_savart_reproduces_lamb_oseen_vortex() -> None:
    # w = G / (pi a^2) exp(-r^2 / a^2)  ->  u_theta = G / (2 pi r) (1 - exp(-r^2 / a^2)).
    gamma, a, grid, lim = 1.0, 0.3, 81, 2.0
    xs = torch.linspace(-lim, lim, grid, dtype=torch.float64)
    gy, gx = torch.meshgrid(xs, xs, indexing="ij")
    r2 = gx.square() + gy.square()
    w = gamma / (math.pi * a * a) * torch.exp(-r2 / a**2)
    h = float(xs[1] - xs[0])
    u = biot_savart(w, h, h)
    u_theta = gamma / (2 * math.pi * r2.clamp_min(1e-12)) * (1 - torch.exp(-r2 / a**2))
    expected = torch.stack([-gy * u_theta, gx * u_theta], dim=-1)
    error = (u - expected).norm(dim=-1).max() / expected.norm(dim=-1).max()
    assert error < 0.03
    curl, div = curl_divergence(u, xs, xs)
    assert (curl - w)[10:-10, 10:-10].abs().max() < 0.05 * w.max()


def test_helmholtz_parts_sum_to_drift_and_localized_vortex_is_rotational() -> None:
    def mean_fn(s: torch.Tensor) -> torch.Tensor:
        swirl = torch.stack([-s[:, 1], s[:, 0]], 1) * torch.exp(-s.square().sum(1, keepdim=True) / 0.1)
        return s + swirl

    field = drift_field(mean_fn, lim=1.5, grid=61)
    parts = helmholtz_parts(field)
    torch.testing.assert_close(parts.rotational + parts.irrotational, field.drift)
    assert rotational_magnitude(field) == pytest.approx(1.0, abs=0.03)


def test_zero_drift_gives_nan() -> None:
    assert math.isnan(rotational_magnitude(drift_field(lambda s: s, grid=5)))
