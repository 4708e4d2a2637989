"""Bits per dimension of the variational bound on dequantized 8-bit images (docs/evaluation.md, "The bound").

Data ``x`` in {0..255}^D is dequantized to ``v = (x + u) / 256``, ``u ~ U[0, 1)^D``
(``data.images.dequantize``), a density on [0, 1)^D, and mapped to model space ``y = 2 v - 1``
(training uses ``x / 127.5 - 1``, within 1/256 of this). With ``L_y(y)`` the model's bound on
``log p(y)`` in nats (``objective.variational_bound``, M heating paths, M = 1 the plain bound):

- density of ``v``: ``p_v(v) = 2^D p_y(2 v - 1)``, so ``L_v = L_y + D ln 2``;
- ``bits/dim = 8 - L_v / (D ln 2) = 7 - L_y / (D ln 2)``;
- per-step breakdown of the plain bound
  ``L_y = log p*(s_K) + sum_t [log p_{T_t}(s_{t-1}|s_t) - log q(s_t|s_{t-1})]``:
  ``bits/dim = (7 - log p*(s_K) / (D ln 2)) + sum_t (-step_t / (D ln 2))``, step ``t`` "costs"
  ``-step_t / (D ln 2)`` bits per dimension.

Randomness (dequantization, heating paths) comes from per-example streams (``streams.StackedRandom``):
the estimate does not depend on the batch size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
from tqdm import tqdm

from .. import distributed
from ..data.images import dequantize
from ..streams import DEFAULT_BLOCK, StackedRandom, block_batches
from ..objective import variational_bound
from ..prior import GaussianPrior
from ..transition import TransitionOperator

__all__ = [
    "LN2", "BoundModel", "BoundEstimate", "unit_log_density", "bits_per_dim",
    "model_space_bits_per_dim", "term_bits_per_dim", "dequantize_to_model_space",
    "estimate_bound", "estimate_bound_model_space",
]

LN2 = math.log(2.0)
BITS_PER_PIXEL = 8  # 8-bit data: log2(256)


class BoundModel(Protocol):
    """What the estimator needs of a model (``walkback.model.Walkback`` has it)."""

    operator: TransitionOperator
    prior: GaussianPrior

    @property
    def active_temperatures(self) -> torch.Tensor: ...

    def heating_path(self, temperatures: torch.Tensor | None = None): ...


def unit_log_density(log_density_y: torch.Tensor | float, dim: int) -> torch.Tensor | float:
    """``L_v = L_y + D ln 2``: a log-density of ``y = 2 v - 1`` as a log-density of ``v``."""
    return log_density_y + dim * LN2


def bits_per_dim(log_density_v: torch.Tensor | float, dim: int) -> torch.Tensor | float:
    """``8 - L_v / (D ln 2)``: bits/dim of 8-bit data from a log-density on [0, 1)^D (nats)."""
    return BITS_PER_PIXEL - log_density_v / (dim * LN2)


def model_space_bits_per_dim(log_density_y: torch.Tensor | float, dim: int) -> torch.Tensor | float:
    """bits/dim from a model-space log-density: ``8 - (L_y + D ln 2) / (D ln 2)``."""
    return bits_per_dim(unit_log_density(log_density_y, dim), dim)


def term_bits_per_dim(term_nats: torch.Tensor | float, dim: int) -> torch.Tensor | float:
    """The bits/dim a log-density term adds to the total: ``-term / (D ln 2)``."""
    return -term_nats / (dim * LN2)


def dequantize_to_model_space(images: torch.Tensor, noise: StackedRandom) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` -> ``y = 2 (x + u) / 256 - 1`` float32, ``u`` from ``noise``."""
    return 2.0 * dequantize(images, generator=noise) - 1.0


@dataclass
class BoundEstimate:
    """Data-set mean of the bound, in bits/dim (8-bit data) unless named ``nats``.

    ``bits_per_dim``: mean of the per-example IW bound (M paths), ``bits_per_dim_stderr`` its
    standard error over examples; ``elbo_bits_per_dim``: the plain bound (mean of ``log w`` over
    paths; equal to ``bits_per_dim`` when M = 1); ``step_bits_per_dim`` ``(K,)``, ``prior_bits_per_dim``
    and ``constant_bits_per_dim`` (= 7) sum to ``elbo_bits_per_dim``; ``log_bound_nats``: mean
    ``L_y`` per example in model space; ``per_example_bits`` ``(N,)``.
    """

    num_points: int
    num_paths: int
    dim: int
    bits_per_dim: float
    bits_per_dim_stderr: float
    elbo_bits_per_dim: float
    log_bound_nats: float
    step_bits_per_dim: list[float]
    prior_bits_per_dim: float
    constant_bits_per_dim: float
    per_example_bits: torch.Tensor = field(repr=False)

    def as_dict(self) -> dict:
        """JSON-friendly fields (without ``per_example_bits``)."""
        return {k: v for k, v in self.__dict__.items() if k != "per_example_bits"}


def _finish(dim: int, num_paths: int, bits: list[torch.Tensor], elbo: list[torch.Tensor],
            steps: list[torch.Tensor], prior: list[torch.Tensor],
            nats: list[torch.Tensor]) -> BoundEstimate:
    """Reduce per-example terms (float64, CPU) to the data-set means."""
    per_example = torch.cat(bits)
    n = per_example.numel()
    stderr = float(per_example.std(unbiased=True) / math.sqrt(n)) if n > 1 else math.nan
    constant = float(model_space_bits_per_dim(0.0, dim))
    return BoundEstimate(
        num_points=n, num_paths=num_paths, dim=dim, bits_per_dim=float(per_example.mean()),
        bits_per_dim_stderr=stderr, elbo_bits_per_dim=float(torch.cat(elbo).mean()),
        log_bound_nats=float(torch.cat(nats).mean()),
        step_bits_per_dim=term_bits_per_dim(torch.cat(steps, 1).mean(1), dim).tolist(),
        prior_bits_per_dim=float(term_bits_per_dim(torch.cat(prior).mean(), dim)),
        constant_bits_per_dim=constant, per_example_bits=per_example,
    )


@torch.no_grad()
def _bound_loop(model: BoundModel, data: torch.Tensor,
                prepare: Callable[[torch.Tensor, StackedRandom], torch.Tensor], *, num_paths: int,
                seed: int, batch_size: int, block: int, progress: bool) -> BoundEstimate | None:
    """Estimate the bound of ``prepare(batch, noise)`` (model-space states) over ``data`` in
    batches of whole noise blocks. Under torchrun each process scores its share of whole blocks
    (``distributed.share``) and rank 0 gets the estimate (``None`` on the others)."""
    if num_paths < 1 or len(data) < 1:
        raise ValueError(f"need num_paths >= 1 and at least one point, got {num_paths}, {len(data)}")
    device, dtype = model.prior.mean.device, model.prior.mean.dtype
    temps = model.active_temperatures
    dim = math.prod(data.shape[1:])
    first, last = distributed.share(len(data), block)
    parts: tuple[list[torch.Tensor], ...] = ([], [], [], [], [])
    bar = tqdm(total=last - first, disable=not progress, desc=f"bound M={num_paths}", unit="img")
    for start, stop in block_batches(last - first, batch_size, block):
        start, stop = first + start, first + stop
        noise = StackedRandom(seed, start, stop, block=block, device=device)
        y = prepare(data[start:stop].to(device), noise).to(dtype)
        r = variational_bound(model.operator, model.prior, model.heating_path(temps), temps, y,
                              num_paths=num_paths, generator=noise)
        for store, value in zip(parts, (model_space_bits_per_dim(r.log_bound, dim),
                                        model_space_bits_per_dim(r.elbo, dim), r.step_terms,
                                        r.prior_term, r.log_bound)):
            store.append(value.detach().to("cpu", torch.float64))
        bar.update(stop - start)
    bar.close()
    gathered = distributed.gather(parts)
    if gathered is None:
        return None
    return _finish(dim, num_paths, *([t for share in gathered for t in share[i]] for i in range(5)))


def estimate_bound(model: BoundModel, images: torch.Tensor, *, num_paths: int = 1, seed: int = 0,
                   batch_size: int = 500, block: int = DEFAULT_BLOCK,
                   progress: bool = False) -> BoundEstimate | None:
    """Bits/dim of the bound on uint8 images ``(N, C, H, W)``, dequantized (module docstring)."""
    if images.dtype != torch.uint8:
        raise TypeError(f"estimate_bound: expected uint8 images, got {images.dtype}")
    return _bound_loop(model, images, dequantize_to_model_space, num_paths=num_paths, seed=seed,
                       batch_size=batch_size, block=block, progress=progress)


def estimate_bound_model_space(model: BoundModel, y: torch.Tensor, *, num_paths: int = 1,
                               seed: int = 0, batch_size: int = 500, block: int = DEFAULT_BLOCK,
                               progress: bool = False) -> BoundEstimate | None:
    """The same estimator on continuous model-space states ``y`` ``(N, *shape)`` (no
    dequantization): bits/dim as if ``y = 2 v - 1`` with ``v`` the dequantized data."""
    return _bound_loop(model, y, lambda batch, noise: batch, num_paths=num_paths, seed=seed,
                       batch_size=batch_size, block=block, progress=progress)
