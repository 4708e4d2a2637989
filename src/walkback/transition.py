"""The transition operator ``p_T(s' | s) = N(s'; mean(s, T), T * var(s, T))`` (docs/method.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from .streams import Generator, randn

__all__ = ["GaussianStep", "TransitionOperator", "denoised_mean", "gaussian_log_prob",
           "log_temperature_embedding"]

OperatorForm = Literal["2017", "conditioned"]
MeanScale = Literal["none", "noise", "denoise"]
LOG_2PI = math.log(2 * math.pi)


def gaussian_log_prob(
    x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """``log N(x; mean, diag(var))`` summed over all but the batch dimension, shape ``(B,)``.

    ``weights`` (broadcast to one state) weigh the per-dimension terms of the sum.
    """
    per_dim = -0.5 * (LOG_2PI + var.log() + (x - mean).square() / var)
    if weights is not None:
        per_dim = per_dim * weights
    return per_dim.flatten(1).sum(1)


@dataclass
class GaussianStep:
    """One step of the operator at temperature ``T``: ``N(mean, T * var)``.

    ``mean`` and ``var`` have the state's shape ``(B, *data_shape)``; ``temperature`` is a
    scalar or has shape ``(B,)``.
    """

    mean: torch.Tensor
    var: torch.Tensor
    temperature: torch.Tensor

    @property
    def total_var(self) -> torch.Tensor:
        """``T * var``, broadcast to the state's shape."""
        t = self.temperature.to(self.var.dtype)
        return self.var * t.reshape(t.shape + (1,) * (self.var.dim() - t.dim()))

    def log_prob(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """``log p_T(x | s)`` per example, shape ``(B,)`` (per-dimension ``weights``: see
        ``gaussian_log_prob``)."""
        return gaussian_log_prob(x, self.mean, self.total_var, weights)

    def sample(self, *, generator: Generator = None, noise_scale: float = 1.0) -> torch.Tensor:
        """Draw ``s' = mean + eta sqrt(T * var) * eps`` (``generator``: see ``streams``;
        ``eta = noise_scale``, 1 for the operator's own law)."""
        eps = randn(self.mean.shape, generator=generator, device=self.mean.device,
                    dtype=self.mean.dtype)
        std = self.total_var.sqrt()
        return self.mean + (std if noise_scale == 1 else noise_scale * std) * eps


def denoised_mean(s: torch.Tensor, d: torch.Tensor, lam: float | torch.Tensor) -> torch.Tensor:
    """``s + lambda (D - s)``: the step toward the denoised estimate ``D``. For a
    variance-exploding diffusion ``s_t = x + sigma_t eps`` and ``lambda = (sigma_t^2 -
    sigma_{t-1}^2) / sigma_t^2`` this is ``E[s_{t-1} | s_t]`` when ``D = E[x | s_t]``
    (docs/method.md, "Denoising form")."""
    return s + lam * (d - s)


def log_temperature_embedding(temperature: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of ``log T``, shape ``(B, dim)`` (``dim`` even)."""
    half = dim // 2
    freqs = torch.exp(torch.linspace(0.0, math.log(100.0), half, device=temperature.device))
    angles = temperature.float().log()[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class TransitionOperator(nn.Module):
    """A diagonal-Gaussian transition operator built around a backbone ``(s, cond) -> (F, G)``.

    ``var = var_scale * (softplus(G) + min_var)``, noise ``T * var`` (``min_var``: a number, or a
    tensor of one state's shape that gives each unit its own floor; ``var_scale`` is 1 for VW, and
    ``c`` for an operator that walks back the fixed diffusion ``beta_t = c T_t``, so that its
    step variance is measured in units of the heating step's own ``beta_t``; ``min_var_at_1``:
    a floor that depends on T, see ``variance_floor``), and
    ``mean_scale="none"``: ``mean = alpha * s + (1 - alpha) * F`` (the 2017 form), or
    ``mean_scale="noise"``: ``mean = s + (1 - alpha) * sqrt(T * var) * (F - s)``: the backbone's
    residual ``F - s`` is measured in units of the step's own noise standard deviation (a
    preconditioning: the same family of Gaussians, but the backbone's outputs and gradients stay
    of order one from ``T = 1`` to the hottest step instead of scaling like ``1 / sqrt(T var)``).
    ``mean_scale="denoise"`` (EDM-style, docs/method.md, "Denoising form"): the backbone sees
    ``c_in(T) s`` (``input_scale``: about unit mean square, from the data's mean square and the
    heating noise recorded in training, ``record_heating``), its ``F`` is a denoised estimate
    ``D`` of the data, and ``mean = s + lambda(T) (D - s)`` with ``lambda(T) = T / sum_{T_j <=
    T} T_j`` over the heating schedule ``temperatures`` (``denoise_weight``): the posterior mean
    of a variance-exploding diffusion with step variances proportional to T, exact for Gaussian
    data and the optimal ``D``. ``clip > 0`` clamps ``D`` to ``[-clip, clip]`` outside training
    (sampling, the bound), ``alpha`` is not used.
    form ``"2017"``: the backbone does not see T (``cond=None``), as in the 2017 code.
    form ``"conditioned"``: the backbone gets an embedding of ``log T`` (``cond``, width
    ``cond_dim``).
    """

    def __init__(
        self,
        backbone: nn.Module,
        data_shape: tuple[int, ...],
        *,
        form: OperatorForm = "2017",
        alpha: float = 0.5,
        min_var: float | torch.Tensor = 1e-6,
        cond_dim: int = 32,
        mean_scale: MeanScale = "none",
        var_scale: float = 1.0,
        min_var_at_1: float | None = None,
        top_temperature: float = 1.0,
        temperatures: torch.Tensor | None = None,
        clip: float = 0.0,
    ) -> None:
        super().__init__()
        if form not in ("2017", "conditioned"):
            raise ValueError(f"form must be '2017' or 'conditioned', got {form!r}")
        if mean_scale not in ("none", "noise", "denoise"):
            raise ValueError(f"mean_scale must be 'none', 'noise' or 'denoise', got "
                             f"{mean_scale!r}")
        if mean_scale == "denoise" and temperatures is None:
            raise ValueError("mean_scale='denoise' needs the heating schedule's temperatures")
        self.mean_scale = mean_scale
        self.clip = clip
        if temperatures is not None:  # built from the config on load
            self.register_buffer("temperatures", torch.as_tensor(temperatures).detach().clone(),
                                 persistent=False)
        if mean_scale == "denoise":  # c_in's statistics: saved with the weights
            self.register_buffer("data_square", torch.ones(()))
            self.register_buffer("heat_noise", torch.zeros(len(self.temperatures)))
        self.backbone = backbone
        self.data_shape = tuple(data_shape)
        self.form = form
        self.alpha = alpha
        self.var_scale = var_scale
        self.min_var: float | torch.Tensor
        if isinstance(min_var, torch.Tensor):  # per-unit floors; built from the config on load
            self.register_buffer("min_var", min_var.detach().clone(), persistent=False)
        else:
            self.min_var = min_var
        self.min_var_at_1 = min_var_at_1
        self.top_temperature = float(top_temperature)
        if min_var_at_1 is not None:
            tops = min_var if isinstance(min_var, torch.Tensor) else torch.tensor(float(min_var))
            if not min_var_at_1 > 0 or not bool((tops > 0).all()):
                raise ValueError(f"a floor that depends on T needs min_var > 0 and "
                                 f"min_var_at_1 > 0, got {min_var} and {min_var_at_1}")
            if not self.top_temperature > 1:
                raise ValueError(f"a floor that depends on T needs top_temperature > 1, "
                                 f"got {top_temperature}")
        self.cond_dim = cond_dim

    def variance_floor(self, temperature: torch.Tensor) -> float | torch.Tensor:
        """The floor of ``var`` at ``temperature`` (a scalar tensor or shape ``(B,)``): ``min_var``
        at every T, or with ``min_var_at_1`` set, geometric in T from ``min_var_at_1`` at T = 1
        to ``min_var`` at ``T_K = top_temperature``, constant outside ``[1, T_K]``:
        ``floor(T) = min_var_at_1 (min_var / min_var_at_1) ** u``, ``u = clamp(log T / log T_K,
        0, 1)``. A scalar ``temperature`` gives a scalar (or one state's shape for per-unit
        floors), shape ``(B,)`` a floor of shape ``(B, 1, ...)`` (or ``(B, *data_shape)``)."""
        if self.min_var_at_1 is None:
            return self.min_var
        u = self._per_example(
            (temperature.log() / math.log(self.top_temperature)).clamp(0.0, 1.0))
        top = self.min_var
        if isinstance(top, torch.Tensor):
            log_ratio = (top.to(u.dtype) / self.min_var_at_1).log()
        else:
            log_ratio = math.log(top / self.min_var_at_1)
        return self.min_var_at_1 * torch.exp(u * log_ratio)

    def _per_example(self, value: torch.Tensor) -> torch.Tensor:
        """A scalar as it is; one value per example ``(B,)`` as ``(B, 1, ...)``, broadcasting
        over a state."""
        return value.reshape(value.shape + (1,) * len(self.data_shape)) if value.dim() else value

    def denoise_weight(self, temperature: torch.Tensor) -> torch.Tensor:
        """``lambda(T) = T / (T + sum of the schedule's T_j < T)``, shape of ``temperature``: the
        share of the noise accumulated up to ``T`` that the step at ``T`` added, when step ``j``
        adds noise of variance proportional to ``T_j`` (1 at and below the first temperature)."""
        t = temperature.to(self.temperatures.dtype)
        return (t / (t + self._below(self.temperatures, t, strict=True))).to(temperature.dtype)

    def _below(self, values: torch.Tensor, t: torch.Tensor, *,
               strict: bool = False) -> torch.Tensor:
        """``sum_j values_j`` over the schedule's steps with ``T_j <= t`` (``T_j < t`` when
        ``strict``), shape of ``t``."""
        temps = self.temperatures.reshape((1,) * t.dim() + (-1,))
        values = values.to(t.dtype).reshape((1,) * t.dim() + (-1,))
        inside = temps < t.unsqueeze(-1) if strict else temps <= t.unsqueeze(-1)
        return torch.where(inside, values, torch.zeros_like(values)).sum(-1)

    def input_scale(self, temperature: torch.Tensor) -> torch.Tensor:
        """``c_in(T) = (E[x^2] + sum_{T_j <= T} n_j)^(-1/2)``: ``n_j`` the heating noise variance
        of step ``j`` (``record_heating``), ``E[x^2]`` the data's mean square; a function of T
        alone, so the backbone, which sees T, loses nothing."""
        t = temperature.to(self.temperatures.dtype)
        return (self.data_square + self._below(self.heat_noise, t)).rsqrt()

    @torch.no_grad()
    def record_heating(self, noise: torch.Tensor, momentum: float) -> None:
        """Move ``heat_noise`` toward one heating path's per-step noise variances (the first
        path is taken whole); steps the path did not reach keep their value."""
        k = len(noise)
        seen = self.heat_noise[:k]
        if not bool(self.heat_noise.any()):
            seen.copy_(noise)
        else:
            seen.lerp_(noise.to(seen.dtype), 1 - momentum)

    def forward(self, s: torch.Tensor, temperature: float | torch.Tensor) -> GaussianStep:
        """The Gaussian ``p_T(. | s)`` for states ``s`` of shape ``(B, *data_shape)``."""
        dtype = s.dtype if s.is_floating_point() else torch.float32
        t = torch.as_tensor(temperature, dtype=dtype, device=s.device)
        cond = None
        if self.form == "conditioned":
            cond = log_temperature_embedding(t.expand(s.shape[0]), self.cond_dim).to(dtype)
        if self.mean_scale == "denoise":  # the backbone sees s at about unit mean square
            c_in = self._per_example(self.input_scale(t).to(s.dtype))
            f, g = self.backbone(s * c_in, cond)
        else:
            f, g = self.backbone(s, cond)
        min_var = self.variance_floor(t)
        if isinstance(min_var, torch.Tensor):
            min_var = min_var.to(s.dtype)
        var = (F.softplus(g.to(s.dtype)) + min_var) * self.var_scale
        step = GaussianStep(mean=s, var=var, temperature=t)
        if self.mean_scale == "noise":
            step.mean = s + (1 - self.alpha) * step.total_var.sqrt() * (f.to(s.dtype) - s)
        elif self.mean_scale == "denoise":
            d = f.to(s.dtype)
            if self.clip > 0 and not self.training:
                d = d.clamp(-self.clip, self.clip)
            step.mean = denoised_mean(s, d, self._per_example(self.denoise_weight(t)))
        else:
            step.mean = self.alpha * s + (1 - self.alpha) * f.to(s.dtype)
        return step

    def log_prob(
        self, s_next: torch.Tensor, s: torch.Tensor, temperature: float | torch.Tensor,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``log p_T(s_next | s)`` per example, shape ``(B,)`` (per-dimension ``weights``: see
        ``gaussian_log_prob``)."""
        return self(s, temperature).log_prob(s_next, weights)

    def sample(
        self,
        s: torch.Tensor,
        temperature: float | torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Draw ``s' ~ p_T(. | s)``."""
        return self(s, temperature).sample(generator=generator)
