"""Heating ("walk away"): the inference path ``q(s_1..s_K | s_0 = x)``, sampled without gradient.

Two heating paths share one interface, ``step(s, t) -> GaussianStep`` for ``t = 0..K-1``:
- ``OperatorHeating``: the model's OWN operator at the heating temperatures (Variational Walkback);
- ``FixedDiffusionHeating``: a parameter-free Gaussian diffusion (NET-style ablation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from .schedule import heating_stops
from .streams import Generator
from .transition import GaussianStep, TransitionOperator

__all__ = [
    "HeatingPath",
    "OperatorHeating",
    "FixedDiffusionHeating",
    "Trajectory",
    "walk_away",
]


class HeatingPath(Protocol):
    """A Markov heating kernel ``q(s_t | s_{t-1})``, indexed by step ``t = 0..num_steps-1``."""

    num_steps: int

    def step(self, s: torch.Tensor, t: int) -> GaussianStep: ...


class OperatorHeating:
    """``q(s_t | s_{t-1}) = p_{T_t}(s_t | s_{t-1})``: the model's own operator, heated.
    ``temperatures``: ``(K,)``, or ``(K, B)`` for one temperature per path and step; ``forward``
    computes the operator's step (default: the operator; training may pass its CUDA-graphed
    no-grad forward, ``graphs.GraphedForward``)."""

    def __init__(self, operator: TransitionOperator, temperatures: torch.Tensor,
                 forward: Callable[[torch.Tensor, float | torch.Tensor], GaussianStep] | None = None
                 ) -> None:
        self.operator = operator
        self.temperatures = temperatures
        self.num_steps = len(temperatures)
        self.forward = forward or operator

    def step(self, s: torch.Tensor, t: int) -> GaussianStep:
        temperature = self.temperatures[t]
        if temperature.dim():  # one per path
            return self.forward(s, temperature.to(s.device, s.dtype))
        return self.forward(s, float(temperature))


class FixedDiffusionHeating:
    """``q(s_t | s_{t-1}) = N(sqrt(1 - beta_t) s_{t-1}, beta_t I)`` with fixed ``betas``."""

    def __init__(self, betas: torch.Tensor) -> None:
        self.betas = betas
        self.num_steps = len(betas)

    def step(self, s: torch.Tensor, t: int) -> GaussianStep:
        beta = float(self.betas[t])
        return GaussianStep(
            mean=(1 - beta) ** 0.5 * s,
            var=torch.full_like(s, beta),
            temperature=torch.tensor(1.0, device=s.device),
        )


@dataclass
class Trajectory:
    """A sampled heating path.

    ``states``: ``(K+1, B, *data_shape)`` with ``states[0] = x``; ``log_q``: ``(K, B)`` holding
    ``log q(s_t | s_{t-1})``; ``noise_var``: ``(K,)`` batch-mean variance of each heating step.
    """

    states: torch.Tensor
    log_q: torch.Tensor
    noise_var: torch.Tensor

    @property
    def num_steps(self) -> int:
        return self.log_q.shape[0]


def walk_away(
    heating: HeatingPath,
    x: torch.Tensor,
    *,
    generator: Generator = None,
    max_variance: float | None = None,
    reparameterized: bool = False,
) -> Trajectory:
    """Sample ``s_t ~ q(. | s_{t-1})`` for ``t = 1..K`` from ``s_0 = x``.

    Without gradient (the paper's training and every evaluation), or with ``reparameterized``:
    ``s_t = mean + sqrt(T var) * eps`` stays in the autograd graph, so ``states`` and ``log_q``
    carry gradients into the operator's weights (the ``bound`` objective).
    With ``max_variance`` (the paper's ``sigma2_max``), heating stops after the first step whose
    batch-mean noise variance reaches it, so ``K`` can vary from run to run.
    """
    states, log_q, noise_var = [x], [], []
    s = x
    with torch.set_grad_enabled(reparameterized and torch.is_grad_enabled()):
        for t in range(heating.num_steps):
            step = heating.step(s, t)
            s = step.sample(generator=generator)
            states.append(s)
            log_q.append(step.log_prob(s))
            noise_var.append(step.total_var.mean().detach())
            if heating_stops(noise_var[-1], max_variance):
                break
    return Trajectory(torch.stack(states), torch.stack(log_q), torch.stack(noise_var))
