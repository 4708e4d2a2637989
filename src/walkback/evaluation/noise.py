"""Random numbers that do not depend on the batch size.

Examples (chains, test points) are grouped in fixed blocks of ``block`` consecutive indices; block
``b`` draws from its own generator seeded by ``(seed, b)``. A batch is a run of whole blocks, and
every draw for a batch is the concatenation of the blocks' draws, so example ``i`` sees the same
noise whatever the batch size (only floating-point reduction order can differ).

The wrappers put that noise behind the interfaces ``walk_away``, ``variational_bound`` and
``anneal_progressive`` already use (``step.sample``, ``prior.sample``); they ignore the
``generator`` argument those functions pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..prior import GaussianPrior
from ..transition import GaussianStep, TransitionOperator

__all__ = ["BlockNoise", "BlockStep", "BlockOperator", "BlockHeating", "BlockPrior",
           "block_batches", "block_seed"]

DEFAULT_BLOCK = 50
_MIX = 0x9E3779B97F4A7C15  # golden-ratio constant: spreads (seed, block) over 63 bits


def block_seed(seed: int, block: int) -> int:
    """The generator seed of block ``block`` under run seed ``seed``."""
    return (seed * _MIX + block * 0xBF58476D1CE4E5B9 + 1) % (1 << 63)


def block_batches(num: int, batch_size: int, block: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive batches of whole blocks (``batch_size`` rounded down to a
    multiple of ``block``, at least one block); the last batch may end mid-block."""
    step = max(block, batch_size // block * block)
    for start in range(0, num, step):
        yield start, min(num, start + step)


class BlockNoise:
    """Draws for examples ``start..stop-1`` (``start`` a multiple of ``block``), one generator
    per block."""

    def __init__(self, seed: int, start: int, stop: int, *, block: int = DEFAULT_BLOCK,
                 device: torch.device | str = "cpu") -> None:
        if start % block != 0 or stop <= start:
            raise ValueError(f"BlockNoise: start {start} must be a multiple of block {block} "
                             f"and below stop {stop}")
        first, self.sizes, self.generators = start // block, [], []
        for b in range(first, (stop + block - 1) // block):
            self.sizes.append(min(stop, (b + 1) * block) - b * block)
            self.generators.append(torch.Generator(device).manual_seed(block_seed(seed, b)))
        self.device = torch.device(device)

    @property
    def num(self) -> int:
        return sum(self.sizes)

    def _draw(self, fn, rest: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        parts = [fn((n, *rest), generator=g, device=self.device, dtype=dtype)
                 for n, g in zip(self.sizes, self.generators)]
        return torch.cat(parts)

    def randn(self, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Standard normal ``(num, *rest)``; ``shape[0]`` must equal ``num``."""
        self._check(shape)
        return self._draw(torch.randn, tuple(shape[1:]), dtype)

    def rand(self, shape: tuple[int, ...], dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Uniform on [0, 1) ``(num, *rest)``."""
        self._check(shape)
        return self._draw(torch.rand, tuple(shape[1:]), dtype)

    def map_blocks(self, fn, x: torch.Tensor) -> torch.Tensor:
        """``cat([fn(x_b, generator_b) for each block b])``: e.g. ``dequantize`` block by block."""
        if x.shape[0] != self.num:
            raise ValueError(f"BlockNoise covers {self.num} examples, got {x.shape[0]}")
        chunks = x.split(self.sizes)
        return torch.cat([fn(c, g) for c, g in zip(chunks, self.generators)])

    def _check(self, shape: tuple[int, ...]) -> None:
        if shape[0] != self.num:
            raise ValueError(f"BlockNoise covers {self.num} examples, asked for shape {tuple(shape)}")


@dataclass
class BlockStep(GaussianStep):
    """A ``GaussianStep`` whose ``sample`` draws its ``eps`` from ``noise``."""

    noise: BlockNoise | None = None

    def sample(self, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``s' = mean + sqrt(T var) eps``, ``eps`` from the block generators."""
        assert self.noise is not None
        eps = self.noise.randn(tuple(self.mean.shape), self.mean.dtype)
        return self.mean + self.total_var.sqrt() * eps


def _wrap(step: GaussianStep, noise: BlockNoise) -> BlockStep:
    return BlockStep(step.mean, step.var, step.temperature, noise)


class BlockOperator:
    """``operator(s, T)`` with block noise; ``log_prob`` is the operator's (no randomness)."""

    def __init__(self, operator: TransitionOperator, noise: BlockNoise) -> None:
        self.operator, self.noise = operator, noise

    def __call__(self, s: torch.Tensor, temperature: float | torch.Tensor) -> BlockStep:
        return _wrap(self.operator(s, temperature), self.noise)

    def log_prob(self, s_next: torch.Tensor, s: torch.Tensor, temperature: float) -> torch.Tensor:
        return self.operator.log_prob(s_next, s, temperature)


class BlockHeating:
    """A heating path ``q`` (``step(s, t)``) with block noise."""

    def __init__(self, heating, noise: BlockNoise) -> None:
        self.heating, self.noise = heating, noise
        self.num_steps = heating.num_steps

    def step(self, s: torch.Tensor, t: int) -> BlockStep:
        return _wrap(self.heating.step(s, t), self.noise)


class BlockPrior:
    """``p*`` whose ``sample`` uses block noise: ``mean + sqrt(var) eps``."""

    def __init__(self, prior: GaussianPrior, noise: BlockNoise) -> None:
        self.prior, self.noise = prior, noise

    def sample(self, num: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = self.noise.randn((num, *self.prior.data_shape), self.prior.mean.dtype)
        return self.prior.mean + self.prior.var.sqrt() * eps

    def log_prob(self, s: torch.Tensor) -> torch.Tensor:
        return self.prior.log_prob(s)
