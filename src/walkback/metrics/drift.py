"""The 2-D drift ``d(s) = mean(s, T=1) - s`` on a grid, its curl and divergence, and how much of it
is rotational (docs/method.md, "Non-equilibrium": non-zero curl means no potential generates the drift).

Grid convention (image / ``imshow(origin="lower")`` order): entry ``[i, j]`` of every ``(G, G)``
array sits at the point ``(x, y) = (xs[j], ys[i])``. All arrays are torch float64 on CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = [
    "DriftField",
    "HelmholtzParts",
    "biot_savart",
    "curl_divergence",
    "drift_field",
    "helmholtz_parts",
    "rotational_magnitude",
]


@dataclass
class DriftField:
    """Drift on a ``G x G`` grid: ``xs (G,)``, ``ys (G,)``, ``drift (G, G, 2)`` (components
    ``(d_x, d_y)``), ``curl (G, G) = dd_y/dx - dd_x/dy``, ``divergence (G, G) = dd_x/dx + dd_y/dy``.
    Torch float64; ``[i, j]`` is the point ``(xs[j], ys[i])``."""

    xs: torch.Tensor
    ys: torch.Tensor
    drift: torch.Tensor
    curl: torch.Tensor
    divergence: torch.Tensor

    @property
    def spacing(self) -> tuple[float, float]:
        """Grid spacing ``(h_x, h_y)``."""
        return float(self.xs[1] - self.xs[0]), float(self.ys[1] - self.ys[0])


def curl_divergence(
    drift: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Curl ``dd_y/dx - dd_x/dy`` and divergence ``dd_x/dx + dd_y/dy`` of ``drift (G, G, 2)`` by
    central differences inside and one-sided differences on the border (``torch.gradient``).
    Both are exact for a field linear in ``s``. Returns two ``(G, G)`` tensors."""
    ddx_dy, ddx_dx = torch.gradient(drift[..., 0], spacing=(ys, xs))
    ddy_dy, ddy_dx = torch.gradient(drift[..., 1], spacing=(ys, xs))
    return ddy_dx - ddx_dy, ddx_dx + ddy_dy


@torch.no_grad()
def drift_field(
    mean_fn: Callable[[torch.Tensor], torch.Tensor], *, lim: float = 1.5, grid: int = 41
) -> DriftField:
    """Evaluate ``d(s) = mean_fn(s) - s`` on a ``grid x grid`` lattice over ``[-lim, lim]^2``.

    ``mean_fn`` maps float32 ``(N, 2)`` to ``(N, 2)`` (any device / dtype; moved to CPU float64).
    """
    if grid < 3:
        raise ValueError(f"grid must be >= 3 for finite differences, got {grid}")
    xs = torch.linspace(-lim, lim, grid, dtype=torch.float64)
    ys = xs.clone()
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([gx, gy], dim=-1).reshape(-1, 2).float()
    mean = mean_fn(points).detach().to("cpu", torch.float64)
    drift = (mean - points.double()).reshape(grid, grid, 2)
    curl, divergence = curl_divergence(drift, xs, ys)
    return DriftField(xs, ys, drift, curl, divergence)


def _biot_savart_kernel(shape: tuple[int, int], hx: float, hy: float) -> torch.Tensor:
    """Kernel ``h_x h_y (-dy, dx) / (2 pi r^2)`` on the wrapped offsets of a ``(2 G_y, 2 G_x)`` FFT
    grid, shape ``(2, 2 G_y, 2 G_x)``; zero at offset 0 (the cell's own, odd, contribution)."""
    gy_, gx_ = shape
    oy = torch.arange(2 * gy_, dtype=torch.float64)
    ox = torch.arange(2 * gx_, dtype=torch.float64)
    dy = torch.where(oy < gy_, oy, oy - 2 * gy_)[:, None] * hy
    dx = torch.where(ox < gx_, ox, ox - 2 * gx_)[None, :] * hx
    r2 = dx.square() + dy.square()
    scale = torch.where(r2 > 0, hx * hy / (2 * math.pi * r2.clamp_min(1e-300)), 0.0)
    return torch.stack([-dy * scale, dx * scale])


def biot_savart(vorticity: torch.Tensor, hx: float, hy: float) -> torch.Tensor:
    """Divergence-free field induced by ``vorticity (G_y, G_x)`` in the free plane (vorticity zero
    outside the grid): ``u(r) = 1/(2 pi) sum_r' w(r') h_x h_y z x (r - r') / |r - r'|^2``.

    A linear convolution done by FFT on a zero-padded ``(2 G_y, 2 G_x)`` grid (Hockney's method, so
    no periodic images). Its curl is ``w``; returns ``(G_y, G_x, 2)``.
    """
    shape = (vorticity.shape[0], vorticity.shape[1])
    fft_shape = (2 * shape[0], 2 * shape[1])
    kernel_hat = torch.fft.rfft2(_biot_savart_kernel(shape, hx, hy))
    w_hat = torch.fft.rfft2(vorticity.to(torch.float64), s=fft_shape)
    u = torch.fft.irfft2(kernel_hat * w_hat, s=fft_shape)[:, : shape[0], : shape[1]]
    return u.permute(1, 2, 0).contiguous()


@dataclass
class HelmholtzParts:
    """``drift = rotational + irrotational`` on the grid, each ``(G, G, 2)`` float64.

    ``rotational`` is the Biot-Savart field of the grid's curl (divergence-free, curl = the measured
    curl); ``irrotational`` is the rest: the gradient part plus the harmonic field that the window
    cannot attribute (curl-free and divergence-free, e.g. a field driven from outside the window).
    """

    rotational: torch.Tensor
    irrotational: torch.Tensor


def helmholtz_parts(field: DriftField) -> HelmholtzParts:
    """Free-space Helmholtz split of ``field.drift``: rotational part = ``biot_savart(curl)``."""
    hx, hy = field.spacing
    rotational = biot_savart(field.curl, hx, hy)
    return HelmholtzParts(rotational, field.drift - rotational)


def _rms(v: torch.Tensor) -> float:
    """Root mean square of the vector norm over the grid, ``sqrt(mean |v|^2)``."""
    return float(v.square().sum(-1).mean().sqrt())


def rotational_magnitude(field: DriftField) -> float:
    """``RMS(|rotational part|) / RMS(|drift|)`` with the free-space Helmholtz split above.

    0 for a gradient field (curl 0); about 1 for a pure rotation (the Biot-Savart field of a
    uniform-vorticity square matches the rotation up to corner effects, measured about 0.96 on the
    default 41x41 grid). NaN when the drift is identically zero.
    """
    total = _rms(field.drift)
    if total == 0.0:
        return float("nan")
    return _rms(helmholtz_parts(field).rotational) / total
