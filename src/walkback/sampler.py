"""Sampling ("walk back"): ``s_K ~ p*``, then ``s_{t-1} ~ p_{T_t}(. | s_t)`` hottest first, then
``E`` extra steps at ``T = 1`` (docs/method.md, "Sampling")."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .prior import GaussianPrior
from .schedule import cooling_temperatures
from .transition import TransitionOperator

__all__ = ["ChainState", "SampleResult", "anneal", "anneal_progressive", "chain_temperatures"]


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


def chain_temperatures(heating: torch.Tensor, extra_steps: int = 0) -> torch.Tensor:
    """Temperatures of the whole sampling chain: ``T_K .. T_1`` then ``extra_steps`` ones."""
    return torch.cat([cooling_temperatures(heating), torch.ones(extra_steps, dtype=heating.dtype)])


@torch.no_grad()
def anneal_progressive(
    operator: TransitionOperator,
    prior: GaussianPrior,
    heating: torch.Tensor,
    num_samples: int,
    *,
    extra_steps: int = 0,
    generator: torch.Generator | None = None,
) -> Iterator[ChainState]:
    """Yield every state of the cooling chain, from the prior draw to the last extra step."""
    s = prior.sample(num_samples, generator=generator)
    yield ChainState(0, float(heating[-1]), s, None)
    for i, temperature in enumerate(chain_temperatures(heating, extra_steps).tolist(), start=1):
        step = operator(s, temperature)
        s = step.sample(generator=generator)
        yield ChainState(i, temperature, s, step.mean)


@torch.no_grad()
def anneal(
    operator: TransitionOperator,
    prior: GaussianPrior,
    heating: torch.Tensor,
    num_samples: int,
    *,
    extra_steps: int = 0,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
) -> SampleResult:
    """Run the cooling chain for ``num_samples`` chains (in batches of ``batch_size``) and return
    the means of the last step (``samples``) and the final states (``states``)."""
    batch_size = batch_size or num_samples
    states, means = [], []
    for start in range(0, num_samples, batch_size):
        n = min(batch_size, num_samples - start)
        last = None
        for last in anneal_progressive(
            operator, prior, heating, n, extra_steps=extra_steps, generator=generator
        ):
            pass
        assert last is not None
        states.append(last.state)
        means.append(last.mean if last.mean is not None else last.state)
    return SampleResult(samples=torch.cat(means), states=torch.cat(states))
