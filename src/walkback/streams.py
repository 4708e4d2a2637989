"""Random streams that follow the examples, not the batch (as EDM's ``StackedRandomGenerator``).

Examples (chains, test points, training examples) are grouped in fixed blocks of ``block``
consecutive indices; block ``b`` draws from its own ``torch.Generator`` seeded by ``(seed, b)``
(``block=1``: one stream per example). A ``StackedRandom`` covers examples ``start..stop-1``; each
draw for them is the concatenation of their blocks' draws, so example ``i`` sees the same numbers
whatever the batch it is processed in, and whichever process holds it (only floating-point
reduction order can differ).

Every sampling function of the package takes ``generator=``: a ``torch.Generator`` (one stream for
the whole batch), a ``StackedRandom`` or ``None`` (torch's global stream); ``randn``, ``rand`` and
``randint`` below draw from any of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Union

import torch

__all__ = ["DEFAULT_BLOCK", "Generator", "StackedRandom", "block_batches", "block_seed", "mix_seed",
           "rand", "randint", "randn"]

DEFAULT_BLOCK = 50
_MIX = 0x9E3779B97F4A7C15  # golden-ratio constant: spreads (seed, block) over 63 bits


def block_seed(seed: int, block: int) -> int:
    """The generator seed of block ``block`` under run seed ``seed``."""
    return (seed * _MIX + block * 0xBF58476D1CE4E5B9 + 1) % (1 << 63)


def mix_seed(seed: int, *keys: int) -> int:
    """A seed for one use of a run seed (e.g. ``(seed, minibatch index)``), spread over 63 bits."""
    for key in keys:
        seed = block_seed(seed, key + 1)
    return seed


def block_batches(num: int, batch_size: int, block: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive batches of whole blocks (``batch_size`` rounded down to a
    multiple of ``block``, at least one block); the last batch may end mid-block."""
    step = max(block, batch_size // block * block)
    for start in range(0, num, step):
        yield start, min(num, start + step)


class StackedRandom:
    """Draws for examples ``start..stop-1`` (``start`` a multiple of ``block``), one generator
    per block of ``block`` examples, seeded by ``block_seed(seed, b)``."""

    def __init__(self, seed: int, start: int, stop: int, *, block: int = DEFAULT_BLOCK,
                 device: torch.device | str = "cpu") -> None:
        if block < 1 or start % block != 0 or stop < start:
            raise ValueError(f"StackedRandom: start {start} must be a multiple of block {block} "
                             f"and at most stop {stop}")
        self.seed, self.start, self.stop, self.block = seed, start, stop, block
        self.device = torch.device(device)
        self.sizes: list[int] = []
        self.generators: list[torch.Generator] = []
        for b in range(start // block, (stop + block - 1) // block):
            self.sizes.append(min(stop, (b + 1) * block) - b * block)
            self.generators.append(torch.Generator(self.device).manual_seed(block_seed(seed, b)))

    @property
    def num(self) -> int:
        return self.stop - self.start

    def batches(self, batch_size: int) -> Iterator[tuple[int, int, StackedRandom]]:
        """Split into batches of whole blocks: ``(start, stop, streams)`` with indices relative to
        ``self.start``; the parts share this object's generators (draws advance them)."""
        for start, stop in block_batches(self.num, batch_size, self.block):
            part = StackedRandom.__new__(StackedRandom)
            part.seed, part.block, part.device = self.seed, self.block, self.device
            part.start, part.stop = self.start + start, self.start + stop
            first, last = start // self.block, (stop + self.block - 1) // self.block
            part.sizes, part.generators = self.sizes[first:last], self.generators[first:last]
            yield start, stop, part

    def _draw(self, fn: Callable, shape: tuple[int, ...], **kwargs) -> torch.Tensor:
        if shape[0] != self.num:
            raise ValueError(f"StackedRandom covers {self.num} examples, asked for shape "
                             f"{tuple(shape)}")
        rest = tuple(shape[1:])
        return torch.cat([fn((n, *rest), generator=g, device=self.device, **kwargs)
                          for n, g in zip(self.sizes, self.generators)])

    def randn(self, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Standard normal ``(num, *rest)``."""
        return self._draw(torch.randn, shape, dtype=dtype)

    def rand(self, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Uniform on [0, 1) ``(num, *rest)``."""
        return self._draw(torch.rand, shape, dtype=dtype)

    def randint(self, low: int, high: int, shape: tuple[int, ...]) -> torch.Tensor:
        """Integers in ``[low, high)``, ``(num, *rest)``."""
        return self._draw(lambda size, **kw: torch.randint(low, high, size, **kw), shape)


Generator = Union[torch.Generator, StackedRandom, None]


def randn(shape: tuple[int, ...], *, generator: Generator, device: torch.device | str,
          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal draws from ``generator`` (module docstring)."""
    if isinstance(generator, StackedRandom):
        return generator.randn(tuple(shape), dtype).to(device)
    return torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)


def rand(shape: tuple[int, ...], *, generator: Generator, device: torch.device | str,
         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniform draws on [0, 1) from ``generator``."""
    if isinstance(generator, StackedRandom):
        return generator.rand(tuple(shape), dtype).to(device)
    return torch.rand(tuple(shape), generator=generator, device=device, dtype=dtype)


def randint(low: int, high: int, shape: tuple[int, ...], *, generator: Generator,
            device: torch.device | str) -> torch.Tensor:
    """Integers in ``[low, high)`` from ``generator``."""
    if isinstance(generator, StackedRandom):
        return generator.randint(low, high, tuple(shape)).to(device)
    return torch.randint(low, high, tuple(shape), generator=generator, device=device)
