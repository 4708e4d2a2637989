"""The diffusion baseline (docs/method.md, "Baselines"): a standard DDPM in the same framework.

Forward process: the fixed variance-preserving chain of ``N`` levels,
``q(x_n | x_{n-1}) = N(sqrt(1 - beta_n) x_{n-1}, beta_n I)``, whose marginal is
``q(x_n | x_0) = N(sqrt(abar_n) x_0, (1 - abar_n) I)`` with ``abar_n = prod_{m <= n} (1 - beta_m)``
(Ho et al. 2020). The network predicts the noise ``eps`` from ``x_n`` and an embedding of the
noise level ``log((1 - abar_n) / abar_n)`` (where VW's operator embeds ``log T``) and is trained
with the simple loss ``||eps_theta(x_n, n) - eps||^2`` at uniformly drawn levels.

Sampling walks a grid of ``K`` levels ``n_K = N > ... > n_1 = 1`` (``sampling_levels``) with the
DDIM update (Song et al. 2021); ``eta = 0`` is deterministic DDIM, ``eta = 1`` the ancestral
DDPM step ``q(x_{n'} | x_n, x0_hat)``. ``DiffusionOperator`` puts this behind the interface of
``TransitionOperator``: ``operator(s, level)`` is the Gaussian step from level ``level`` to the
grid level below it, so the sampler, the chains, the bound and the evaluation serve both.
Levels play the role of VW's temperatures: the grid is the model's ``temperatures``, the lowest
level is 1 (so "extra steps at T = 1" are steps at the lowest noise level), and the bound's
heating path is the forward process restricted to the grid (``grid_betas``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .streams import Generator, randint, randn
from .transition import GaussianStep, log_temperature_embedding

__all__ = [
    "vp_alphas_bar", "sampling_levels", "grid_betas", "vp_marginal", "ddim_variance",
    "exact_gaussian_eps", "DiffusionOperator", "denoising_loss",
]

BETA_SCHEDULES = ("linear", "cosine")
COSINE_OFFSET = 0.008  # s in Nichol & Dhariwal (2021), eq. 17
MAX_BETA = 0.999


def vp_alphas_bar(num_levels: int, schedule: str = "linear", *, beta_start: float = 1e-4,
                  beta_end: float = 0.02) -> torch.Tensor:
    """``abar_0 .. abar_N`` (float64, shape ``(N + 1,)``, ``abar_0 = 1``) of a VP schedule.

    ``linear``: ``beta_n`` evenly spaced from ``beta_start`` to ``beta_end`` (Ho et al. 2020);
    ``cosine``: ``abar(n) = cos^2(pi/2 (n/N + s) / (1 + s))`` normalised to ``abar(0) = 1``, each
    ``beta_n`` clipped at 0.999 (Nichol & Dhariwal 2021).
    """
    if num_levels < 1:
        raise ValueError(f"diffusion.levels must be >= 1, got {num_levels}")
    if schedule == "linear":
        if not 0 < beta_start <= beta_end < 1:
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
        betas = torch.linspace(beta_start, beta_end, num_levels, dtype=torch.float64)
    elif schedule == "cosine":
        n = torch.arange(num_levels + 1, dtype=torch.float64) / num_levels
        f = torch.cos((n + COSINE_OFFSET) / (1 + COSINE_OFFSET) * math.pi / 2).square()
        betas = (1 - f[1:] / f[:-1]).clamp(max=MAX_BETA)
    else:
        raise ValueError(f"beta schedule must be one of {', '.join(BETA_SCHEDULES)}, "
                         f"got {schedule!r}")
    return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])


def sampling_levels(num_levels: int, num_steps: int) -> torch.Tensor:
    """The ``K = num_steps`` sampling levels, lowest first: ``1 = n_1 < ... < n_K = N``, evenly
    spaced and rounded (float64, as the temperatures they stand in for). The top level is
    ``N`` itself, so the chain starts where the prior ``N(0, I)`` is closest to ``q(x_N)``."""
    if not 1 <= num_steps <= num_levels:
        raise ValueError(f"sampling steps must be in 1..diffusion.levels={num_levels}, "
                         f"got {num_steps}")
    if num_steps == 1:
        return torch.tensor([float(num_levels)], dtype=torch.float64)
    levels = torch.linspace(1, num_levels, num_steps, dtype=torch.float64).round()
    if len(levels.unique()) != num_steps:
        raise ValueError(f"{num_steps} sampling steps do not fit in {num_levels} levels")
    return levels


def _previous_levels(grid: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """For each level, the highest grid level below it (0, the data, below the lowest)."""
    below = torch.searchsorted(grid, level.contiguous())  # grid entries < level
    padded = torch.cat([grid.new_zeros(1), grid])
    return padded[below]


def grid_betas(alphas_bar: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """The forward process restricted to ``levels`` (ascending) is again a VP chain, with
    ``beta_k = 1 - abar_{n_k} / abar_{n_{k-1}}`` (``abar_{n_0} = abar_0 = 1``); shape ``(K,)``."""
    idx = levels.round().long().cpu()
    upper = alphas_bar.cpu()[idx]
    lower = alphas_bar.cpu()[_previous_levels(idx, idx)]
    return 1 - upper / lower


def vp_marginal(x0: torch.Tensor, alpha_bar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """``x_n = sqrt(abar_n) x_0 + sqrt(1 - abar_n) eps``: a draw from ``q(x_n | x_0)``
    (``alpha_bar`` a scalar or one value per example)."""
    a = alpha_bar.to(x0.dtype).reshape(-1, *([1] * (x0.dim() - 1)))
    return a.sqrt() * x0 + (1 - a).sqrt() * eps


def ddim_variance(a_t: torch.Tensor, a_prev: torch.Tensor, eta: float) -> torch.Tensor:
    """The DDIM step's noise variance ``eta^2 (1 - abar') / (1 - abar) (1 - abar / abar')``
    (Song et al. 2021, eq. 16): at ``eta = 1`` the variance of the forward posterior
    ``q(x_{n'} | x_n, x_0)``. Into the data (``abar' = 1``) it is ``eta^2 (1 - abar)``, the
    variance ``beta_1`` that DDPM's last step takes where the posterior's is 0."""
    posterior = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
    return eta**2 * torch.where(a_prev >= 1, 1 - a_t, posterior)


def exact_gaussian_eps(x: torch.Tensor, alpha_bar: torch.Tensor, mean: float,
                       var: float) -> torch.Tensor:
    """``E[eps | x_n]`` when the data are ``N(mean, var I)``: the optimal noise predictor
    ``sqrt(1 - abar) (x - sqrt(abar) mean) / (abar var + 1 - abar)`` (a closed form for tests)."""
    a = alpha_bar.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
    return (1 - a).sqrt() * (x - a.sqrt() * mean) / (a * var + 1 - a)


class DiffusionOperator(nn.Module):
    """A DDPM's reverse process with the ``TransitionOperator`` interface.

    ``operator(s, level)`` is the DDIM step (``eta``) from ``level`` to the grid level below it;
    ``log_prob`` always scores the ancestral step (``eta = 1``), the reverse kernel whose
    variational bound the evaluation reports. ``clip > 0`` clamps the denoised estimate
    ``x0_hat`` to ``[-clip, clip]`` (images: the data range) before the step.
    ``alphas_bar`` (``(N + 1,)``) and the grid are built from the config, not saved.
    """

    alphas_bar: torch.Tensor
    grid: torch.Tensor

    def __init__(self, backbone: nn.Module, data_shape: tuple[int, ...], alphas_bar: torch.Tensor,
                 grid: torch.Tensor, *, cond_dim: int = 32, eta: float = 0.0,
                 clip: float = 0.0) -> None:
        super().__init__()
        self.backbone = backbone
        self.data_shape = tuple(data_shape)
        self.cond_dim, self.eta, self.clip = cond_dim, eta, clip
        self.register_buffer("alphas_bar", alphas_bar.to(torch.float64), persistent=False)
        self.register_buffer("grid", grid.round().long(), persistent=False)

    @property
    def num_levels(self) -> int:
        return len(self.alphas_bar) - 1

    def _levels(self, s: torch.Tensor, level: float | torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(level, device=s.device)
        t = (t.round() if t.is_floating_point() else t).long().expand(s.shape[0])
        if bool(((t < 1) | (t > self.num_levels)).any()):
            raise ValueError(f"noise levels must be in 1..{self.num_levels}")
        return t

    def predict_eps(self, s: torch.Tensor, level: float | torch.Tensor) -> torch.Tensor:
        """``eps_theta(x_n, n)``: the backbone's first output, given the embedding of
        ``log((1 - abar_n) / abar_n)``."""
        a = self.alphas_bar[self._levels(s, level)]
        cond = log_temperature_embedding((1 - a) / a, self.cond_dim).to(s.dtype)
        f, _ = self.backbone(s, cond)
        return f.to(s.dtype)

    def step(self, s: torch.Tensor, level: float | torch.Tensor, eta: float) -> GaussianStep:
        """The Gaussian step from ``level`` to the grid level below it (0: the data)."""
        t = self._levels(s, level)
        shape = (-1, *([1] * (s.dim() - 1)))
        a_t = self.alphas_bar[t].to(s.dtype).reshape(shape)
        a_prev = self.alphas_bar[_previous_levels(self.grid, t)].to(s.dtype).reshape(shape)
        eps = self.predict_eps(s, t)
        x0 = (s - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        if self.clip > 0:
            x0 = x0.clamp(-self.clip, self.clip)
            eps = (s - a_t.sqrt() * x0) / (1 - a_t).sqrt()
        var = ddim_variance(a_t, a_prev, eta)
        mean = a_prev.sqrt() * x0 + (1 - a_prev - var).clamp(min=0).sqrt() * eps
        return GaussianStep(mean=mean, var=var.expand_as(s), temperature=s.new_ones(()))

    def forward(self, s: torch.Tensor, level: float | torch.Tensor) -> GaussianStep:
        return self.step(s, level, self.eta)

    def log_prob(self, s_next: torch.Tensor, s: torch.Tensor, level: float | torch.Tensor,
                 weights: torch.Tensor | None = None) -> torch.Tensor:
        """``log p(s_next | s)`` of the ancestral step (``eta = 1``), shape ``(B,)``."""
        return self.step(s, level, 1.0).log_prob(s_next, weights)

    def sample(self, s: torch.Tensor, level: float | torch.Tensor, *,
               generator: Generator = None) -> torch.Tensor:
        return self(s, level).sample(generator=generator)


def denoising_loss(operator: DiffusionOperator, x: torch.Tensor, *,
                   generator: Generator = None) -> torch.Tensor:
    """The simple loss per example, ``mean_d (eps_theta(x_n, n) - eps)^2`` (shape ``(B,)``), at a
    level ``n ~ U{1..N}`` and noise ``eps ~ N(0, I)`` drawn per example."""
    levels = randint(1, operator.num_levels + 1, (x.shape[0],), generator=generator,
                     device=x.device)
    eps = randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    x_n = vp_marginal(x, operator.alphas_bar[levels], eps)
    return (operator.predict_eps(x_n, levels) - eps).square().flatten(1).mean(1)
