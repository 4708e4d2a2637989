"""Closed forms for a linear-Gaussian operator: exact log-likelihood and exact variational bound.

Operator (``walkback.models.LinearGaussianBackbone`` in the 2017 form):
``p_T(s' | s) = N(s'; M s + c, T D)``, ``M = a I + (1 - a) W``, ``c = (1 - a) b``, ``D = diag(var)``.
Heating temperatures ``T_1..T_K``, prior ``p*(s_K) = N(mu*, diag(v*))``.

- Cooling model ``p(s_0) = int p*(s_K) prod_t p_{T_t}(s_{t-1} | s_t) ds_1..K`` is Gaussian:
  ``mu_K = mu*, Sigma_K = diag(v*)``; ``mu_{t-1} = M mu_t + c``, ``Sigma_{t-1} = M Sigma_t M^T + T_t D``.
- Heating path ``q``: ``s_0 = x``, ``s_t = M s_{t-1} + c + N(0, T_t D)``; jointly Gaussian with
  ``m_t = M m_{t-1} + c``, ``P_t = M P_{t-1} M^T + T_t D`` (``P_0 = 0``), ``Cov(s_t, s_{t-1}) = M P_{t-1}``.
- Bound ``L(x) = E_q[log p*(s_K) + sum_t log p_{T_t}(s_{t-1}|s_t) - sum_t log p_{T_t}(s_t|s_{t-1})]``,
  each term from ``E[log N(u; A v + c, S)] = -1/2 [d log 2 pi + log|S| + tr(S^-1 C) + m^T S^-1 m]``
  with ``m = E[u - A v - c]``, ``C = Cov(u - A v)``.

Everything is computed in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from ..models.linear import LinearGaussianBackbone
from ..transition import TransitionOperator

__all__ = [
    "LinearGaussian",
    "expected_gaussian_log_density",
    "cooling_moments",
    "heating_moments",
    "exact_log_likelihood",
    "exact_bound",
]

LOG_2PI = math.log(2 * math.pi)
_F64 = torch.float64


@dataclass
class LinearGaussian:
    """``s' = M s + c + N(0, T D)``: ``matrix`` M ``(d, d)``, ``offset`` c ``(d,)``, ``var`` diag(D) ``(d,)``."""

    matrix: torch.Tensor
    offset: torch.Tensor
    var: torch.Tensor

    def __post_init__(self) -> None:
        self.matrix = torch.as_tensor(self.matrix, dtype=_F64)
        self.offset = torch.as_tensor(self.offset, dtype=_F64)
        self.var = torch.as_tensor(self.var, dtype=_F64)

    @property
    def dim(self) -> int:
        return self.offset.shape[0]

    @classmethod
    @torch.no_grad()
    def from_operator(cls, operator: TransitionOperator) -> LinearGaussian:
        """Read ``M = a I + (1 - a) W``, ``c = (1 - a) b``, ``var = softplus(g) + min_var``."""
        backbone = operator.backbone
        if not isinstance(backbone, LinearGaussianBackbone):
            raise TypeError("closed forms need a TransitionOperator with a LinearGaussianBackbone")
        a = operator.alpha
        eye = torch.eye(backbone.dim, dtype=_F64)
        return cls(
            matrix=a * eye + (1 - a) * backbone.weight.double(),
            offset=(1 - a) * backbone.bias.double(),
            var=F.softplus(backbone.g.double()) + operator.min_var,
        )

    def noise_cov(self, temperature: float) -> torch.Tensor:
        """``T D``, shape ``(d, d)``."""
        return float(temperature) * torch.diag(self.var)


def expected_gaussian_log_density(
    resid_mean: torch.Tensor, resid_cov: torch.Tensor, noise_cov: torch.Tensor
) -> torch.Tensor:
    """``E[log N(r; 0, S)]`` for ``r`` with mean ``m`` ``(..., d)`` and covariance ``C`` ``(d, d)``:
    ``-1/2 [d log 2 pi + log|S| + tr(S^-1 C) + m^T S^-1 m]``, shape ``(...)``."""
    d = noise_cov.shape[0]
    chol = torch.linalg.cholesky(noise_cov)
    logdet = 2 * torch.log(torch.diagonal(chol)).sum()
    trace = torch.trace(torch.cholesky_solve(resid_cov, chol))
    solved = torch.cholesky_solve(resid_mean.reshape(-1, d).T, chol).T.reshape(resid_mean.shape)
    quad = (resid_mean * solved).sum(-1)
    return -0.5 * (d * LOG_2PI + logdet + trace + quad)


def _residual_moments(
    u_mean: torch.Tensor, u_cov: torch.Tensor, v_mean: torch.Tensor, v_cov: torch.Tensor,
    cross_uv: torch.Tensor, matrix: torch.Tensor, offset: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance of ``r = u - A v - c`` given ``Cov(u, v) = cross_uv``:
    ``E r = E u - A E v - c``, ``Cov r = U - X A^T - A X^T + A V A^T``."""
    mean = u_mean - v_mean @ matrix.T - offset
    cov = u_cov - cross_uv @ matrix.T - matrix @ cross_uv.T + matrix @ v_cov @ matrix.T
    return mean, cov


def cooling_moments(
    op: LinearGaussian, temperatures: torch.Tensor, prior_mean: torch.Tensor,
    prior_var: torch.Tensor, *, extra_steps: int = 0, extra_temperature: float = 1.0,
    noise_scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``(d,)`` and covariance ``(d, d)`` of ``s_0`` under the cooling chain, then
    ``extra_steps`` more steps at ``T_E = extra_temperature``: ``mu <- M mu + c``,
    ``Sigma <- M Sigma M^T + g T D`` for ``T = T_K, ..., T_1, T_E, ..., T_E``, with ``g =
    noise_scale^2`` on the cooling steps and 1 on the extra ones."""
    mean = torch.as_tensor(prior_mean, dtype=_F64).clone()
    cov = torch.diag(torch.as_tensor(prior_var, dtype=_F64))
    cooling = temperatures.to(_F64).flip(0).tolist()
    gains = [noise_scale**2] * len(cooling) + [1.0] * extra_steps
    for temperature, gain in zip(cooling + [float(extra_temperature)] * extra_steps, gains):
        mean = op.matrix @ mean + op.offset
        cov = op.matrix @ cov @ op.matrix.T + gain * op.noise_cov(temperature)
    return mean, cov


def heating_moments(
    op: LinearGaussian, temperatures: torch.Tensor, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Means ``(K+1, *x.shape)`` and covariances ``(K+1, d, d)`` of ``s_0..s_K`` under ``q``:
    ``m_0 = x``, ``P_0 = 0``; ``m_t = M m_{t-1} + c``, ``P_t = M P_{t-1} M^T + T_t D``."""
    means = [torch.as_tensor(x, dtype=_F64)]
    covs = [torch.zeros(op.dim, op.dim, dtype=_F64)]
    for temperature in temperatures.to(_F64).tolist():
        means.append(means[-1] @ op.matrix.T + op.offset)
        covs.append(op.matrix @ covs[-1] @ op.matrix.T + op.noise_cov(temperature))
    return torch.stack(means), torch.stack(covs)


def exact_log_likelihood(
    op: LinearGaussian, temperatures: torch.Tensor, prior_mean: torch.Tensor,
    prior_var: torch.Tensor, x: torch.Tensor,
) -> torch.Tensor:
    """``log p(x) = log N(x; mu_0, Sigma_0)`` of the cooling model; ``x`` ``(d,)`` or ``(B, d)``."""
    mean, cov = cooling_moments(op, temperatures, prior_mean, prior_var)
    resid = torch.as_tensor(x, dtype=_F64) - mean
    return expected_gaussian_log_density(resid, torch.zeros_like(cov), cov)


def exact_bound(
    op: LinearGaussian, temperatures: torch.Tensor, prior_mean: torch.Tensor,
    prior_var: torch.Tensor, x: torch.Tensor,
) -> torch.Tensor:
    """The variational bound ``L(x)`` (module docstring) in closed form; ``x`` ``(d,)`` or ``(B, d)``.

    ``E log p*(s_K)`` + ``sum_t E log N(s_{t-1}; M s_t + c, T_t D)`` (cross cov ``P_{t-1} M^T``)
    ``- sum_t E log N(s_t; M s_{t-1} + c, T_t D)`` (cross cov ``M P_{t-1}``).
    """
    means, covs = heating_moments(op, temperatures, x)
    prior_mean = torch.as_tensor(prior_mean, dtype=_F64)
    prior_cov = torch.diag(torch.as_tensor(prior_var, dtype=_F64))
    total = expected_gaussian_log_density(means[-1] - prior_mean, covs[-1], prior_cov)
    for t, temperature in enumerate(temperatures.to(_F64).tolist(), start=1):
        noise = op.noise_cov(temperature)
        back_mean, back_cov = _residual_moments(
            means[t - 1], covs[t - 1], means[t], covs[t], covs[t - 1] @ op.matrix.T,
            op.matrix, op.offset,
        )
        fwd_mean, fwd_cov = _residual_moments(
            means[t], covs[t], means[t - 1], covs[t - 1], op.matrix @ covs[t - 1],
            op.matrix, op.offset,
        )
        total = total + expected_gaussian_log_density(back_mean, back_cov, noise)
        total = total - expected_gaussian_log_density(fwd_mean, fwd_cov, noise)
    return total
