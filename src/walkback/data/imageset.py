"""The result of every image reader: uint8 images, optional labels, and where they came from."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["ImageSet", "images_checksum", "make_image_set"]


@dataclass
class ImageSet:
    """A split of an image data set.

    ``images``: uint8 ``(N, C, H, W)``; ``labels``: int64 ``(N,)`` or None (CelebA);
    ``source``: which on-disk copy was read (lossy copies say so);
    ``checksum``: :func:`images_checksum` of ``images`` (identifies the exact pixels, so the
    same data read from two layouts has the same checksum).
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    name: str
    split: str
    source: str
    checksum: str

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]


def images_checksum(images: torch.Tensor) -> str:
    """sha256 hex of ``b"N,C,H,W:"`` followed by the C-ordered uint8 bytes of ``images``.

    Labels are not included: reference statistics (FID, bits/dim) depend on the pixels only.
    """
    array = np.ascontiguousarray(images.detach().cpu().numpy())
    header = ",".join(str(d) for d in array.shape).encode() + b":"
    return hashlib.sha256(header + array.tobytes()).hexdigest()


def make_image_set(
    images: np.ndarray, labels: np.ndarray | None, name: str, split: str, source: str
) -> ImageSet:
    """Wrap uint8 ``(N, C, H, W)`` images and ``(N,)`` labels, computing the checksum."""
    assert images.dtype == np.uint8 and images.ndim == 4, (images.dtype, images.shape)
    tensor = torch.from_numpy(np.require(images, requirements=["C", "W"]))
    label_tensor = None
    if labels is not None:
        assert labels.shape == (images.shape[0],), (labels.shape, images.shape)
        label_tensor = torch.from_numpy(np.asarray(labels, dtype=np.int64).copy())
    return ImageSet(tensor, label_tensor, name, split, source, images_checksum(tensor))
