"""One set of sampling chains with snapshots (docs/evaluation.md, "Long chains").

``N`` chains start from ``p*``, cool through ``T_K .. T_1`` (``K`` steps) and continue at ``T = 1``;
the images (``report="samples"``: the mean of the step that produced each state, the noise-free
output; ``report="states"``: the chain states themselves, docs/method.md "Sampling") is
captured after ``E`` extra steps for every requested ``E``, all
from the same starting draws (``sampler.anneal_progressive`` with
block noise: nothing depends on the batch size). Mixing, in model space, per dimension:

- ``move_from_previous``: ``mean_i ||s_i(E) - s_i(E_prev)|| / sqrt(D)`` between snapshots;
- ``last_step_move``: the same over the single step that produced the snapshot;
- ``pair_distance``: ``mean_i ||s_i(E) - s_{i+1}(E)|| / sqrt(D)`` between different chains (the
  first ``MIX_KEEP``), the scale a chain must move to forget where it was.
A chain frozen on a fixed point shows ``move_from_previous`` far below ``pair_distance``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from ..data.images import to_display_uint8
from ..errors import ConfigError
from ..sampler import anneal_progressive
from .noise import DEFAULT_BLOCK, BlockNoise, BlockOperator, BlockPrior, block_batches

__all__ = ["Snapshot", "ChainRun", "parse_chain_steps", "run_chains", "MIX_KEEP"]

MIX_KEEP = 1000  # chains whose float states are kept for the pair distance


def parse_chain_steps(spec: str, k: int) -> list[int]:
    """``"0,K,10K,100K"`` -> ``[0, K, 10 K, 100 K]``: integers or multiples of ``K``, sorted."""
    values = set()
    for token in (t.strip() for t in spec.split(",")):
        text = token.upper()
        try:
            value = (int(text[:-1] or 1) * k) if text.endswith("K") else int(text)
        except ValueError:
            raise ConfigError(f"--chain-steps {spec}: {token!r} is not an integer or a multiple of K "
                              "(e.g. 0,K,10K,100K)") from None
        if value < 0:
            raise ConfigError(f"--chain-steps {spec}: {token!r} is negative")
        values.add(value)
    if not values:
        raise ConfigError(f"--chain-steps {spec!r}: no steps given")
    return sorted(values)


@dataclass
class Snapshot:
    """The chain state after ``extra_steps`` E (``chain_index = K + E`` operator applications):
    ``images`` uint8 ``(N, C, H, W)`` (clipped to [-1, 1] and rounded, display / FID input);
    ``kept`` float32 states of the first ``MIX_KEEP`` chains; mixing distances (module docstring;
    ``None`` where undefined); fractions of chains with non-finite values and of pixel values
    outside [-1, 1] (clipped for the images only)."""

    extra_steps: int
    chain_index: int
    images: torch.Tensor
    kept: torch.Tensor
    move_from_previous: float | None
    last_step_move: float
    pair_distance: float | None
    nonfinite_fraction: float
    outside_fraction: float


@dataclass
class ChainRun:
    num_chains: int
    k: int
    snapshots: list[Snapshot]

    def at(self, extra_steps: int) -> Snapshot:
        return next(s for s in self.snapshots if s.extra_steps == extra_steps)


@dataclass
class _Acc:
    images: list[torch.Tensor] = field(default_factory=list)
    kept: list[torch.Tensor] = field(default_factory=list)
    move: float = 0.0
    last: float = 0.0
    nonfinite: int = 0
    outside: int = 0


def _distance_per_dim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``||a_i - b_i|| / sqrt(D)`` per chain, float64."""
    return (a - b).flatten(1).double().norm(dim=1) / math.sqrt(a[0].numel())


def _capture(acc: _Acc, state: torch.Tensor, shown: torch.Tensor, previous: torch.Tensor,
             last_snapshot: torch.Tensor | None, start: int) -> None:
    """Add one batch of chains (global indices from ``start``) to a snapshot's accumulator:
    ``shown`` (the state or its step's mean) becomes the images, mixing uses the states."""
    acc.images.append(to_display_uint8(torch.nan_to_num(shown, nan=0.0)).cpu())
    if start < MIX_KEEP:
        acc.kept.append(state[: MIX_KEEP - start].to("cpu", torch.float32))
    acc.last += float(_distance_per_dim(state, previous).sum())
    if last_snapshot is not None:
        acc.move += float(_distance_per_dim(state, last_snapshot).sum())
    acc.nonfinite += int((~torch.isfinite(shown).flatten(1).all(1)).sum())
    acc.outside += int((shown.abs() > 1).sum())


def _pair_distance(kept: torch.Tensor) -> float | None:
    if len(kept) < 2:
        return None
    return float(_distance_per_dim(kept, kept.roll(1, 0)).mean())


def _finish(acc: dict[int, _Acc], num: int, k: int) -> ChainRun:
    snapshots, first = [], True
    for e in sorted(acc):
        a = acc[e]
        images, kept = torch.cat(a.images), torch.cat(a.kept)
        snapshots.append(Snapshot(
            extra_steps=e, chain_index=k + e, images=images, kept=kept,
            move_from_previous=None if first else a.move / num, last_step_move=a.last / num,
            pair_distance=_pair_distance(kept), nonfinite_fraction=a.nonfinite / num,
            outside_fraction=a.outside / images.numel()))
        first = False
    return ChainRun(num, k, snapshots)


@torch.no_grad()
def run_chains(model, num: int, extra_steps: Sequence[int], *, seed: int, batch_size: int,
               block: int = DEFAULT_BLOCK, progress: bool = False, report: str = "samples") -> ChainRun:
    """Run ``num`` chains of ``model`` (a ``Walkback``) to ``K + max(extra_steps)`` steps and keep
    the snapshots at each ``E`` in ``extra_steps``; ``report``: "samples" (the mean of the step
    that produced each state) or "states" (the chain states) becomes the snapshot's images."""
    if report not in ("samples", "states"):
        raise ValueError(f"report must be 'samples' or 'states', got {report!r}")
    wanted = sorted(set(extra_steps))
    temps, device = model.active_temperatures, model.prior.mean.device
    k, e_max = len(temps), wanted[-1]
    acc = {e: _Acc() for e in wanted}
    bar = tqdm(total=num * (k + e_max + 1), disable=not progress, desc=f"chains (K={k}, E<={e_max})",
               unit="state", unit_scale=True)
    for start, stop in block_batches(num, batch_size, block):
        noise = BlockNoise(seed, start, stop, block=block, device=device)
        chain = anneal_progressive(BlockOperator(model.operator, noise), BlockPrior(model.prior, noise),
                                   temps, stop - start, extra_steps=e_max)
        previous, last_snapshot = None, None
        for item in chain:
            if item.index - k in acc:
                shown = item.mean if report == "samples" and item.mean is not None else item.state
                _capture(acc[item.index - k], item.state, shown, previous, last_snapshot, start)
                last_snapshot = item.state
            previous = item.state
            bar.update(stop - start)
    bar.close()
    return _finish(acc, num, k)
