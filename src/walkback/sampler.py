"""Sampling ("walk back"): ``s_K ~ p*``, then ``s_{t-1} ~ p_{T_t}(. | s_t)`` hottest first, then
``E`` extra steps at ``T = 1``, or at ``T_E = extra_temperature`` (docs/method.md, "Sampling").
``noise_scale`` (eta) multiplies the noise standard deviation of the ``K`` cooling steps."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from .prior import GaussianPrior
from .schedule import cooling_temperatures
from .streams import Generator, StackedRandom, block_batches
from .transition import TransitionOperator

__all__ = ["ChainState", "SampleResult", "anneal", "anneal_progressive", "chain_temperatures",
           "states_at"]


@dataclass
class ChainState:
    """One state of the cooling chain: ``index`` counts operator applications (0 = prior draw);
    ``state`` is the sample, ``mean`` the mean of the step that produced it (None at index 0)."""

    index: int
    temperature: float
    state: torch.Tensor
    mean: torch.Tensor | None


@dataclass
class SampleResult:
    """What a sampler gives, ``(N, *shape)`` each: ``samples``, the noise-free output (the mean of
    the last step, as a DDPM's last step adds no noise), and ``states``, the chains' last states
    (that mean plus the last step's noise: where a longer chain would continue from)."""

    samples: torch.Tensor
    states: torch.Tensor


def chain_temperatures(heating: torch.Tensor, extra_steps: int = 0,
                       extra_temperature: float = 1.0) -> torch.Tensor:
    """Temperatures of the whole sampling chain: ``T_K .. T_1`` then ``extra_steps`` times
    ``extra_temperature`` (``T_E``; 1 by default)."""
    if not extra_temperature > 0:
        raise ValueError(f"the extra steps' temperature must be > 0, got {extra_temperature}")
    extra = torch.full((extra_steps,), float(extra_temperature), dtype=heating.dtype)
    return torch.cat([cooling_temperatures(heating), extra])


@torch.no_grad()
def anneal_progressive(
    operator: TransitionOperator,
    prior: GaussianPrior,
    heating: torch.Tensor,
    num_samples: int,
    *,
    extra_steps: int = 0,
    extra_temperature: float = 1.0,
    noise_scale: float = 1.0,
    generator: Generator = None,
) -> Iterator[ChainState]:
    """Yield every state of the cooling chain, from the prior draw to the last extra step; the
    ``K`` cooling steps draw ``mean + eta sqrt(T var) eps`` (``eta = noise_scale``, 1: the
    operator's own law), the extra steps their own law at ``T_E``."""
    if not noise_scale >= 0:
        raise ValueError(f"the cooling steps' noise scale must be >= 0, got {noise_scale}")
    temperatures = chain_temperatures(heating, extra_steps, extra_temperature).tolist()
    s = prior.sample(num_samples, generator=generator)
    yield ChainState(0, float(heating[-1]), s, None)
    for i, temperature in enumerate(temperatures, start=1):
        step = operator(s, temperature)
        s = step.sample(generator=generator, noise_scale=noise_scale if i <= len(heating) else 1.0)
        yield ChainState(i, temperature, s, step.mean)


@torch.no_grad()
def anneal(
    operator: TransitionOperator,
    prior: GaussianPrior,
    heating: torch.Tensor,
    num_samples: int,
    *,
    extra_steps: int = 0,
    extra_temperature: float = 1.0,
    noise_scale: float = 1.0,
    batch_size: int | None = None,
    generator: Generator = None,
    callback: Callable[[ChainState, int], None] | None = None,
) -> SampleResult:
    """Run the cooling chain for ``num_samples`` chains (in batches of ``batch_size``) and return
    the means of the last step (``samples``) and the final states (``states``).

    ``generator``: a ``torch.Generator`` (one stream, batches drawn in turn) or a
    ``StackedRandom`` covering the ``num_samples`` chains (batches of whole blocks: the chains do
    not depend on ``batch_size``). ``callback(state, start)`` sees every state of every batch,
    ``start`` the index of the batch's first chain (k-diffusion's sampler callbacks).
    """
    batch_size = batch_size or num_samples
    if isinstance(generator, StackedRandom):
        if generator.num != num_samples:
            raise ValueError(f"anneal: the streams cover {generator.num} chains, not {num_samples}")
        batches = list(generator.batches(batch_size))
    else:
        batches = [(a, b, generator) for a, b in block_batches(num_samples, batch_size, 1)]
    states, means = [], []
    for start, stop, streams in batches:
        last = None
        for last in anneal_progressive(
            operator, prior, heating, stop - start, extra_steps=extra_steps,
            extra_temperature=extra_temperature, noise_scale=noise_scale, generator=streams,
        ):
            if callback is not None:
                callback(last, start)
        assert last is not None
        states.append(last.state)
        means.append(last.mean if last.mean is not None else last.state)
    return SampleResult(samples=torch.cat(means), states=torch.cat(states))


def states_at(
    operator: TransitionOperator,
    prior: GaussianPrior,
    heating: torch.Tensor,
    num_samples: int,
    indices: set[int],
    *,
    extra_steps: int = 0,
    extra_temperature: float = 1.0,
    generator: Generator = None,
) -> list[torch.Tensor]:
    """The chain states at the chain indices ``indices`` (0 = the prior draw), in chain order:
    ``anneal`` with a callback that keeps them."""
    kept: list[torch.Tensor] = []

    def keep(item: ChainState, start: int) -> None:
        if item.index in indices:
            kept.append(item.state)

    anneal(operator, prior, heating, num_samples, extra_steps=extra_steps,
           extra_temperature=extra_temperature, generator=generator, callback=keep)
    return kept
