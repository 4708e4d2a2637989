"""Data splits and the deterministic minibatch order (so a resumed run sees the same batches)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .toy import make_toy

__all__ = ["DataSplits", "load_splits", "batch_indices"]


@dataclass
class DataSplits:
    """``train`` and ``heldout`` states, ``(N, *data_shape)`` float32, in data space."""

    name: str
    train: torch.Tensor
    heldout: torch.Tensor

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])


def load_splits(name: str, num_train: int, num_heldout: int, *, seed: int) -> DataSplits:
    """Toy data generated from ``seed`` (train) and ``seed + 1`` (held-out): disjoint draws."""
    train = make_toy(name, num_train, generator=torch.Generator().manual_seed(2 * seed))
    heldout = make_toy(name, num_heldout, generator=torch.Generator().manual_seed(2 * seed + 1))
    return DataSplits(name, train, heldout)


def batch_indices(num_items: int, batch_size: int, step: int, *, seed: int) -> torch.Tensor:
    """Indices of minibatch ``step``: epochs are fresh permutations seeded by ``(seed, epoch)``,
    batches taken in order without replacement (the last partial batch of an epoch is dropped)."""
    batch_size = min(batch_size, num_items)
    per_epoch = num_items // batch_size
    epoch, position = divmod(step, per_epoch)
    order = torch.randperm(num_items, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return order[position * batch_size : (position + 1) * batch_size]
