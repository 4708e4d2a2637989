"""Data splits and the deterministic minibatch order (so a resumed run sees the same batches)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .images import load_image_dataset, to_model_space
from .imageset import ImageSet
from .toy import make_toy

__all__ = ["DataSplits", "load_splits", "load_image_splits", "batch_indices"]


@dataclass
class DataSplits:
    """``train`` and ``heldout`` states, ``(N, *data_shape)`` float32, in data space."""

    name: str
    train: torch.Tensor
    heldout: torch.Tensor
    sources: tuple[ImageSet, ImageSet] | None = None  # images: the uint8 splits read

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])


def load_splits(name: str, num_train: int, num_heldout: int, *, seed: int) -> DataSplits:
    """Toy data generated from ``seed`` (train) and ``seed + 1`` (held-out): disjoint draws."""
    train = make_toy(name, num_train, generator=torch.Generator().manual_seed(2 * seed))
    heldout = make_toy(name, num_heldout, generator=torch.Generator().manual_seed(2 * seed + 1))
    return DataSplits(name, train, heldout)


def load_image_splits(name: str, *, root: str, download: bool, resolution: int,
                      heldout_split: str = "test") -> DataSplits:
    """The train split and ``heldout_split`` of an image data set, in model space
    (``x / 127.5 - 1``, unclipped), float32 ``(N, C, H, W)``."""
    res = resolution or None
    train = load_image_dataset(name, "train", root=root, download=download, resolution=res)
    held = load_image_dataset(name, heldout_split, root=root, download=download, resolution=res)
    return DataSplits(name, to_model_space(train.images), to_model_space(held.images),
                      sources=(train, held))


def batch_indices(num_items: int, batch_size: int, step: int, *, seed: int) -> torch.Tensor:
    """Indices of minibatch ``step``: epochs are fresh permutations seeded by ``(seed, epoch)``,
    batches taken in order without replacement (the last partial batch of an epoch is dropped)."""
    batch_size = min(batch_size, num_items)
    per_epoch = num_items // batch_size
    epoch, position = divmod(step, per_epoch)
    order = torch.randperm(num_items, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return order[position * batch_size : (position + 1) * batch_size]
