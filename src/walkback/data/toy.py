"""2-D toy data sets of the 2017 code (docs/method.md, "Toy data") plus two common extras.

Every generator returns float32 points of shape ``(N, 2)`` lying roughly in ``[-1, 1]^2`` and
draws all its randomness from the keyword-only ``generator`` (same seed -> identical points).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = [
    "CHECKERBOARD_CELLS",
    "MOG_STD",
    "RING8_RADIUS",
    "RING8_STD",
    "SPIRAL_NOISE",
    "TOY_DATASETS",
    "make_toy",
    "toy_modes",
]

TOY_DATASETS: tuple[str, ...] = ("spiral", "circle", "mog", "ring8", "checkerboard")
SPIRAL_NOISE = 0.01
MOG_STD = 0.05
RING8_STD = 0.05
RING8_RADIUS = 1.0
CHECKERBOARD_CELLS = 4

Generator = torch.Generator | None


def _uniform(n: int, *, generator: Generator) -> torch.Tensor:
    """``u ~ U[0, 1)``, shape ``(n,)``, float64 (cast to float32 at the end)."""
    return torch.rand(n, generator=generator, dtype=torch.float64)


def _normal(shape: tuple[int, ...], *, generator: Generator) -> torch.Tensor:
    """Standard normal noise of the given shape, float64."""
    return torch.randn(shape, generator=generator, dtype=torch.float64)


def spiral(n: int, *, generator: Generator = None) -> torch.Tensor:
    """One-turn spiral: ``u ~ U(0,1)``, ``theta = 2 pi u``, ``r = 0.1 + 0.9 u``,
    ``x = r (cos theta, sin theta) + 0.01 eps``, ``eps ~ N(0, I)``. Shape ``(n, 2)``.

    ``u`` is uniform in the PARAMETER (not in arc length), so the inner part is denser per unit
    length; radius runs from 0.1 to 1, so the points lie in ``[-1, 1]^2`` up to the noise.
    """
    u = _uniform(n, generator=generator)
    theta, radius = 2 * math.pi * u, 0.1 + 0.9 * u
    points = torch.stack([radius * theta.cos(), radius * theta.sin()], dim=1)
    return points + SPIRAL_NOISE * _normal((n, 2), generator=generator)


def circle(n: int, *, generator: Generator = None) -> torch.Tensor:
    """Unit circle, no noise: ``theta ~ U(0, 2 pi)``, ``x = (cos theta, sin theta)``. Shape ``(n, 2)``."""
    theta = 2 * math.pi * _uniform(n, generator=generator)
    return torch.stack([theta.cos(), theta.sin()], dim=1)


def _mixture(n: int, centres: torch.Tensor, std: float, *, generator: Generator) -> torch.Tensor:
    """Equal-weight isotropic Gaussian mixture: ``k ~ U{0..M-1}``, ``x = c_k + std eps``. ``(n, 2)``."""
    k = torch.randint(len(centres), (n,), generator=generator)
    return centres.double()[k] + std * _normal((n, 2), generator=generator)


def mog(n: int, *, generator: Generator = None) -> torch.Tensor:
    """3x3 grid mixture: 9 components centred on ``{-1, 0, 1}^2``, std 0.05, equal weights."""
    return _mixture(n, mog_centres(), MOG_STD, generator=generator)


def ring8(n: int, *, generator: Generator = None) -> torch.Tensor:
    """8 Gaussians at angles ``2 pi k / 8`` on the circle of radius 1, std 0.05, equal weights."""
    return _mixture(n, ring8_centres(), RING8_STD, generator=generator)


def checkerboard(n: int, *, generator: Generator = None) -> torch.Tensor:
    """Uniform on the 8 "black" cells of a 4x4 board over ``[-1, 1]^2`` (cell side 0.5).

    Cell ``(i, j)`` (column ``i``, row ``j``, counted from ``(-1, -1)``) is black when ``i + j`` is
    even, so the cell at the lower-left corner is black. Shape ``(n, 2)``.
    """
    cells = CHECKERBOARD_CELLS
    side = 2.0 / cells
    black = [(i, j) for i in range(cells) for j in range(cells) if (i + j) % 2 == 0]
    corners = torch.tensor(black, dtype=torch.float64) * side - 1.0  # (8, 2) lower-left corners
    k = torch.randint(len(black), (n,), generator=generator)
    offsets = torch.rand(n, 2, generator=generator, dtype=torch.float64) * side
    return corners[k] + offsets


def mog_centres() -> torch.Tensor:
    """Centres of the 3x3 mixture, ``{-1, 0, 1}^2`` in row-major order, shape ``(9, 2)`` float32."""
    grid = torch.tensor([-1.0, 0.0, 1.0])
    gx, gy = torch.meshgrid(grid, grid, indexing="ij")
    return torch.stack([gx.flatten(), gy.flatten()], dim=1)


def ring8_centres() -> torch.Tensor:
    """Centres ``R (cos 2 pi k / 8, sin 2 pi k / 8)``, ``k = 0..7``, shape ``(8, 2)`` float32."""
    angle = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
    return (RING8_RADIUS * torch.stack([angle.cos(), angle.sin()], dim=1)).float()


_GENERATORS: dict[str, Callable[..., torch.Tensor]] = {
    "spiral": spiral,
    "circle": circle,
    "mog": mog,
    "ring8": ring8,
    "checkerboard": checkerboard,
}


def _check_name(name: str) -> None:
    """Raise ``ValueError`` naming ``name`` and the valid names when it is not a toy data set."""
    if name not in _GENERATORS:
        raise ValueError(f"unknown toy data set {name!r}; valid names: {', '.join(TOY_DATASETS)}")


def make_toy(name: str, num_points: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``num_points`` i.i.d. points of toy data set ``name``; float32 tensor ``(num_points, 2)``."""
    _check_name(name)
    if num_points < 0:
        raise ValueError(f"num_points must be >= 0, got {num_points}")
    return _GENERATORS[name](num_points, generator=generator).float()


def toy_modes(name: str) -> tuple[torch.Tensor, float] | None:
    """``(centres (M, 2) float32, std)`` for the mixtures ``mog`` and ``ring8``; ``None`` otherwise."""
    _check_name(name)
    if name == "mog":
        return mog_centres(), MOG_STD
    if name == "ring8":
        return ring8_centres(), RING8_STD
    return None
