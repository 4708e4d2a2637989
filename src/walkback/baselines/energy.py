"""A detailed-balance baseline: an energy ``E_theta`` learned by denoising score matching and
sampled by Metropolis-adjusted Langevin (MALA).

MALA proposes ``s' ~ q(.|s) = N(s - h grad E(s), 2h I)`` and accepts with probability
``a(s, s') = min(1, r)``, ``r = exp(E(s) - E(s')) q(s|s') / q(s'|s)``. The resulting kernel
``K(s'|s) = q(s'|s) a(s, s') + [1 - A(s)] delta_s(s')`` satisfies detailed balance with respect
to ``pi(s) ∝ exp(-E(s))``, so its entropy production per step must be 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..metrics.nonequilibrium import EntropyProduction, chain_estimate, check_protocol

__all__ = ["EnergyMLP", "MALAKernel", "MALAStep", "mh_entropy_production", "train_energy_dsm"]

Energy = Callable[[torch.Tensor], torch.Tensor]


class EnergyMLP(nn.Module):
    """``E_theta(s)``: a smooth (SiLU) MLP from ``(B, 2)`` to one scalar energy per example ``(B,)``."""

    def __init__(self, hidden: int = 128, depth: int = 3, dim: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """Energy per example, shape ``(B,)``."""
        return self.net(s).squeeze(-1)


def energy_grad(energy: Energy, s: torch.Tensor, *, create_graph: bool = False) -> torch.Tensor:
    """``grad_s E(s)`` per example (the energies of different rows are independent)."""
    with torch.enable_grad():
        x = s.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(energy(x).sum(), x, create_graph=create_graph)
    return grad


def dsm_loss(energy: Energy, x: torch.Tensor, sigma: float, eps: torch.Tensor) -> torch.Tensor:
    """Denoising score matching (Vincent 2011) with ``score = -grad E``:

    ``L = E_{x, eps} || score(x + sigma eps) + eps / sigma ||^2 / 2``, whose minimiser is the score
    of the noise-convolved data density ``p_sigma = p_data * N(0, sigma^2 I)``.
    """
    score = -energy_grad(energy, x + sigma * eps, create_graph=True)
    return 0.5 * (score + eps / sigma).square().sum(1).mean()


def train_energy_dsm(
    energy: nn.Module,
    data: torch.Tensor,
    *,
    sigma: float = 0.05,
    steps: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator | None = None,
) -> list[float]:
    """Fit ``energy`` to ``data`` ``(N, 2)`` by DSM with Adam; returns the loss of every step."""
    opt = torch.optim.Adam(energy.parameters(), lr=lr)
    losses: list[float] = []
    for _ in range(steps):
        idx = torch.randint(len(data), (batch_size,), generator=generator)
        x = data[idx]
        eps = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        loss = dsm_loss(energy, x, sigma, eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@dataclass
class MALAStep:
    """One MALA step: the new states, the accepted mask and the acceptance probabilities."""

    s_next: torch.Tensor
    accepted: torch.Tensor
    accept_prob: torch.Tensor


class MALAKernel:
    """Metropolis-adjusted Langevin on ``pi ∝ exp(-E)``, step size ``h``:
    ``q(s'|s) = N(s'; s - h grad E(s), 2h I)``, ``a(s, s') = min(1, exp(E(s) - E(s')) q(s|s') / q(s'|s))``.
    """

    def __init__(self, energy: Energy, step_size: float) -> None:
        if step_size <= 0:
            raise ValueError(f"step_size must be positive, got {step_size}")
        self.energy = energy
        self.step_size = float(step_size)

    def _mean(self, s: torch.Tensor) -> torch.Tensor:
        """Proposal mean ``s - h grad E(s)``."""
        return s - self.step_size * energy_grad(self.energy, s)

    def log_q(self, s_to: torch.Tensor, s_from: torch.Tensor) -> torch.Tensor:
        """``log q(s_to | s_from) = log N(s_to; s_from - h grad E(s_from), 2h I)``, shape ``(B,)``."""
        var = 2 * self.step_size
        diff = (s_to - self._mean(s_from)).flatten(1)
        return -0.5 * (diff.square().sum(1) / var + diff.shape[1] * math.log(2 * math.pi * var))

    def log_accept(self, s: torch.Tensor, s_new: torch.Tensor) -> torch.Tensor:
        """``log a(s, s') = min(0, E(s) - E(s') + log q(s|s') - log q(s'|s))``."""
        with torch.no_grad():
            log_r = self.energy(s) - self.energy(s_new)
        log_r = log_r + self.log_q(s, s_new) - self.log_q(s_new, s)
        return log_r.clamp(max=0.0)

    def propose_and_accept(self, s: torch.Tensor, *, generator: torch.Generator | None = None) -> MALAStep:
        """Draw a proposal, accept it with probability ``a(s, s')``; rejected rows stay at ``s``."""
        noise = torch.randn(s.shape, generator=generator, dtype=s.dtype, device=s.device)
        proposal = (self._mean(s) + math.sqrt(2 * self.step_size) * noise).detach()
        log_a = self.log_accept(s, proposal).detach()
        u = torch.rand(log_a.shape, generator=generator, dtype=log_a.dtype, device=s.device)
        accepted = u.log() < log_a
        mask = accepted.reshape(-1, *([1] * (s.dim() - 1)))
        return MALAStep(torch.where(mask, proposal, s).detach(), accepted, log_a.exp())

    def step(self, s: torch.Tensor, *, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One MH step: ``(s_next, accepted_mask)``."""
        out = self.propose_and_accept(s, generator=generator)
        return out.s_next, out.accepted

    def pair_log_ratio(self, s: torch.Tensor, s_next: torch.Tensor, accepted: torch.Tensor) -> torch.Tensor:
        """``log K(s'|s) - log K(s|s')`` per pair, shape ``(B,)``.

        Accepted moves (``s' != s``, the absolutely continuous part of ``K``):
        ``log q(s'|s) + log a(s, s') - log q(s|s') - log a(s', s)``. Since ``min(1, r) / min(1, 1/r) = r``
        this equals ``log pi(s') - log pi(s) = E(s) - E(s')`` (the MH identity), so at stationarity
        (``s`` and ``s'`` both ``~ pi``) its expectation is exactly 0. Rejected moves (``s' = s``): the
        point masses of both directions coincide and the term is 0.
        """
        fwd = self.log_q(s_next, s) + self.log_accept(s, s_next)
        bwd = self.log_q(s, s_next) + self.log_accept(s_next, s)
        return torch.where(accepted, fwd - bwd, torch.zeros_like(fwd)).detach()


def mh_entropy_production(
    kernel: MALAKernel,
    start: torch.Tensor,
    *,
    burn_in: int,
    steps: int,
    generator: torch.Generator | None = None,
) -> EntropyProduction:
    """``EP = E[log K(s'|s) - log K(s|s')]`` of an MH kernel from ``N`` independent chains, with the
    protocol of ``walkback.metrics.entropy_production`` (burn-in, per-chain means, 95% interval
    ``mean -/+ 1.96 std(chain means) / sqrt(N)``). ``temperature`` is recorded as 1.

    Each chain's sum telescopes to ``E(s_burn) - E(s_end)``, so the estimate is ``O(1 / steps)``
    and 0 in expectation at stationarity.
    """
    check_protocol(start.shape[0], steps=steps, burn_in=burn_in)
    s = start
    for _ in range(burn_in):
        s, _ = kernel.step(s, generator=generator)
    total = torch.zeros(start.shape[0], dtype=torch.float64, device=start.device)
    for _ in range(steps):
        s_next, accepted = kernel.step(s, generator=generator)
        total += kernel.pair_log_ratio(s, s_next, accepted).double()
        s = s_next
    return chain_estimate(total, steps=steps, burn_in=burn_in, temperature=1.0)
