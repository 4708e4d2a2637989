"""Temperature schedules (pure functions returning tensors).

Heating (docs/method.md): ``T_t = T_0 * f^(t-1)`` for the geometric part, optionally preceded by
``N1`` steps at ``T = 1`` (the paper's Algorithm 1). Cooling is the heating schedule reversed.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "heating_temperatures",
    "jittered_temperatures",
    "cooling_temperatures",
    "steps_until_variance",
    "heating_stops",
    "fixed_diffusion_betas",
]


def heating_temperatures(
    num_steps: int, *, t0: float = 1.0, factor: float = 2.0, n1: int = 0
) -> torch.Tensor:
    """Heating temperatures ``T_1..T_K`` (float64, shape ``(K,)``) with ``K = num_steps``.

    The first ``n1`` steps are at ``T = 1``; the remaining ``K - n1`` follow
    ``T_0 * f^j`` for ``j = 0 .. K - n1 - 1``.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if not 0 <= n1 <= num_steps:
        raise ValueError(f"n1 must be in [0, num_steps={num_steps}], got {n1}")
    if t0 <= 0 or factor < 1:
        raise ValueError(f"need t0 > 0 and factor >= 1, got t0={t0}, factor={factor}")
    warm = torch.ones(n1, dtype=torch.float64)
    geometric = t0 * factor ** torch.arange(num_steps - n1, dtype=torch.float64)
    return torch.cat([warm, geometric])


def jittered_temperatures(heating: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Per-path heating temperatures ``(K, B)``: path ``b`` moves each ``T_t`` the fraction
    ``u_b`` in ``[0, 1)`` of the way to the next temperature in ``log T``,
    ``T_t^(1 - u) T_{t+1}^u``, with ``T_{K+1} = T_K^2 / T_{K-1}`` (the schedule's last ratio).
    ``u = 0`` is the schedule itself; over ``u`` the steps cover every temperature from ``T_1``
    to ``T_{K+1}`` once (``train.temperature_jitter``)."""
    log_t = heating.to(torch.float64).log()
    last = 2 * log_t[-1:] - log_t[-2:-1] if len(log_t) > 1 else log_t[-1:]
    step = torch.cat([log_t[1:], last]) - log_t  # log T_{t+1} - log T_t, (K,)
    frac = u.to(torch.float64)
    return (log_t[:, None] + step[:, None] * frac[None, :]).exp()


def cooling_temperatures(heating: torch.Tensor) -> torch.Tensor:
    """The cooling schedule: heating temperatures hottest first (``T_K .. T_1``)."""
    return heating.flip(0)


def heating_stops(noise_variance: float | torch.Tensor, max_variance: float | None) -> bool:
    """The ``sigma2_max`` stop rule of one heating step: heating stops after the first step whose
    (batch-mean) noise variance ``T_t * var`` reaches ``max_variance`` (``None`` or 0: never; a
    tensor variance is then not even read, so the rule costs no GPU synchronisation)."""
    return bool(max_variance) and bool(noise_variance >= max_variance)


def steps_until_variance(
    temperatures: torch.Tensor, variance: float | torch.Tensor, max_variance: float
) -> int:
    """Number of heating steps to take under the stop rule ``T_t * var >= sigma2_max``.

    ``variance`` is the operator's (mean) variance at T = 1, a scalar or one value per step.
    Heating includes the first step whose noise variance reaches ``max_variance`` and stops
    there; if none does, all ``K`` steps are taken.
    """
    noise = temperatures * torch.as_tensor(variance, dtype=temperatures.dtype)
    for t, value in enumerate(noise.tolist()):
        if heating_stops(value, max_variance):
            return t + 1
    return len(temperatures)


def fixed_diffusion_betas(temperatures: torch.Tensor, final_signal: float = 0.05) -> torch.Tensor:
    """Noise rates ``beta_t = c * T_t`` of a parameter-free Gaussian diffusion (NET-style).

    ``q(s_t | s_{t-1}) = N(sqrt(1 - beta_t) s_{t-1}, beta_t I)``. The constant ``c`` is chosen by
    bisection so that the data's remaining signal amplitude ``prod_t sqrt(1 - beta_t)`` equals
    ``final_signal``: the same temperature shape as the learned heating, a fixed end point.
    """
    if not 0 < final_signal < 1:
        raise ValueError(f"final_signal must be in (0, 1), got {final_signal}")
    temps = temperatures.to(torch.float64)
    target = 2 * math.log(final_signal)

    def log_signal2(c: float) -> float:
        return float(torch.log1p(-(c * temps).clamp(max=1 - 1e-12)).sum())

    lo, hi = 0.0, 1.0 / float(temps.max())
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if log_signal2(mid) > target else (lo, mid)
    return (0.5 * (lo + hi) * temps).clamp(max=1 - 1e-12)
