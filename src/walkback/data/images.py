"""Image data sets (MNIST, CIFAR-10, SVHN, CelebA): one entry point and the pixel scalings.

``load_image_dataset`` finds whichever supported on-disk copy is under ``root`` (torchvision's
layouts first, then the offline copies) and returns an :class:`ImageSet` of uint8 images.
Scalings (8-bit data ``x`` in {0..255}):

- chain / model space: ``x / 127.5 - 1`` in [-1, 1] (``to_model_space``); never clipped in the chain;
- likelihood bound: ``(x + u) / 256``, ``u ~ U[0, 1)``, a density on [0, 1) (``dequantize``);
- display only: ``to_display_uint8`` inverts the model-space map, rounds and clips to {0..255}.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from ..streams import Generator, rand
from .celeba import read_celeba
from .cifar import read_cifar10
from .download import download_dataset
from .errors import DataMissingError
from .imageset import ImageSet
from .mnist import read_mnist
from .svhn import read_svhn

__all__ = [
    "tile_grid",
    "IMAGE_DATASETS",
    "IMAGE_SPLITS",
    "NATIVE_RESOLUTION",
    "ImageSet",
    "load_image_dataset",
    "to_model_space",
    "dequantize_model_space",
    "dequantize",
    "to_display_uint8",
]

IMAGE_DATASETS: tuple[str, ...] = ("mnist", "cifar10", "svhn", "celeba")
IMAGE_SPLITS: dict[str, tuple[str, ...]] = {
    "mnist": ("train", "test"),
    "cifar10": ("train", "test", "train200"),
    "svhn": ("train", "test", "extra"),
    "celeba": ("train", "valid", "test"),
}
NATIVE_RESOLUTION: dict[str, int] = {"mnist": 28, "cifar10": 32, "svhn": 32}
CELEBA_DEFAULT_RESOLUTION = 64


def _check_arguments(name: str, split: str, resolution: int | None) -> None:
    if name not in IMAGE_SPLITS:
        raise ConfigError(f"unknown image data set {name!r}; choose one of {', '.join(IMAGE_DATASETS)}")
    if split not in IMAGE_SPLITS[name]:
        raise ConfigError(f"{name} has no split {split!r}; choose one of {', '.join(IMAGE_SPLITS[name])}")
    native = NATIVE_RESOLUTION.get(name)
    if resolution is not None and native is not None and resolution != native:
        raise ConfigError(f"{name} images are {native}x{native}; resolution {resolution} is not supported")
    if resolution is not None and resolution < 1:
        raise ConfigError(f"resolution must be a positive integer, got {resolution}")


def _read(name: str, split: str, root: Path, resolution: int | None) -> ImageSet:
    if name == "mnist":
        return read_mnist(root, split)
    if name == "cifar10":
        return read_cifar10(root, split)
    if name == "svhn":
        return read_svhn(root, split)
    return read_celeba(root, split, resolution or CELEBA_DEFAULT_RESOLUTION)


def load_image_dataset(
    name: str,
    split: str,
    *,
    root: str | Path,
    download: bool = False,
    resolution: int | None = None,
) -> ImageSet:
    """Read split ``split`` of data set ``name`` from the folder ``root``.

    Returns uint8 ``(N, C, H, W)`` images. ``resolution``: CelebA's output side (default 64);
    for the others only their native size (28 MNIST, 32 CIFAR-10/SVHN) is accepted.
    Nothing is downloaded unless ``download=True`` and no copy is found under ``root``.
    """
    _check_arguments(name, split, resolution)
    root = Path(root).expanduser()
    try:
        return _read(name, split, root, resolution)
    except DataMissingError:
        if not download:
            raise
    download_dataset(name, root, split)
    return _read(name, split, root, resolution)


def _require_uint8(images: torch.Tensor) -> None:
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")


def to_model_space(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``(..)`` -> float32 ``x / 127.5 - 1`` in [-1, 1] (0 -> -1, 255 -> 1), same shape."""
    _require_uint8(images)
    return images.to(torch.float32) / 127.5 - 1.0


def dequantize(images: torch.Tensor, *, generator: Generator) -> torch.Tensor:
    """uint8 ``(..)`` -> float32 ``(x + u) / 256`` in [0, 1), ``u ~ U[0, 1)`` per pixel.

    The bound's density lives on [0, 1) (bits/dim = 8 - L / (D ln 2)). Values that float32
    rounding would carry to exactly 1.0 (u within ~2^-17 of 1 at x = 255) are set to the
    largest float32 below 1, so the range holds.
    """
    _require_uint8(images)
    noise = rand(images.shape, generator=generator, dtype=torch.float64, device=images.device)
    values = ((images.to(torch.float64) + noise) / 256.0).to(torch.float32)
    below_one = torch.nextafter(torch.tensor(1.0), torch.tensor(0.0)).item()
    return values.clamp_(max=below_one)


def dequantize_model_space(x: torch.Tensor, *, generator: Generator) -> torch.Tensor:
    """Model-space 8-bit values ``k / 127.5 - 1`` -> ``2 (k + u) / 256 - 1``, ``u ~ U[0, 1)``.

    Training on these (``train.dequantize``) fits a density to the same dequantized data the
    bound scores (``dequantize`` mapped to model space), so the operator cannot shrink its
    variance onto the 256 grid values (constant background pixels would otherwise drive it to
    ``model.min_var``). Same shape and device as ``x``; one uniform per value from ``generator``.
    """
    k = ((x + 1.0) * 127.5).round()
    u = rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (k + u) / 128.0 - 1.0


def tile_grid(pixels: torch.Tensor, ncol: int, *, pad: int = 0, fill: int = 0) -> np.ndarray:
    """The one image-grid helper: uint8 ``(N, C, H, W)`` tiled row by row, ``ncol`` to a row,
    ``pad`` pixels of ``fill`` around every tile -> uint8 ``(rows (H + pad) + pad,
    ncol (W + pad) + pad, C)`` (empty tiles of the last row stay ``fill``)."""
    n, c, h, w = pixels.shape
    rows = max(1, -(-n // ncol))
    grid = np.full((rows * (h + pad) + pad, ncol * (w + pad) + pad, c), fill, dtype=np.uint8)
    for i, image in enumerate(pixels.detach().cpu().numpy()):
        r, q = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + q * (w + pad)
        grid[top:top + h, left:left + w] = image.transpose(1, 2, 0)
    return grid


def to_display_uint8(x: torch.Tensor) -> torch.Tensor:
    """Model-space float ``(..)`` -> uint8: ``round((x + 1) * 127.5)`` clipped to {0..255} (display only)."""
    return ((x.detach().to(torch.float32) + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
