"""The one chain driver of the evaluation (docs/evaluation.md, "Long chains").

``N`` chains start from ``p*``, cool through ``T_K .. T_1`` (``K`` steps) and continue at ``T = 1``
(``sampler.anneal`` with a callback). A snapshot is taken after ``E`` extra steps for every
requested ``E`` (negative ``E``: during cooling, chain index ``K + E``), all from the same starting
draws. What a snapshot holds (``report="samples"``: the mean of the step that produced each
state, the noise-free output; ``"states"``: the chain states themselves, docs/method.md
"Sampling"), in data space (the visible part of a state):

- ``shown``: float32 values of the first ``keep`` chains (all with ``keep=None``);
- ``images``: uint8 of every chain (image data), clipped to [-1, 1] and rounded;
- ``kept``: float32 chain states of the first ``MIX_KEEP`` chains.

Mixing, over every chain, in model space, per dimension:

- ``move_from_previous``: ``mean_i ||s_i(E) - s_i(E_prev)|| / sqrt(D)`` between snapshots;
- ``last_step_move``: the same over the single step that produced the snapshot;
- ``pair_distance``: ``mean_i ||s_i(E) - s_{i+1}(E)|| / sqrt(D)`` between different chains (the
  first ``MIX_KEEP``), the scale a chain must move to forget where it was.
A chain frozen on a fixed point shows ``move_from_previous`` far below ``pair_distance``.
With ``StackedRandom`` streams nothing depends on the batch size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from ..data.images import to_display_uint8
from ..errors import ConfigError
from ..sampler import ChainState, anneal
from .. import distributed
from ..streams import Generator, StackedRandom

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
    """The chains after ``extra_steps`` E (``chain_index = K + E`` operator applications): what is
    shown (module docstring), the mixing distances (``None`` where undefined), and the fractions of
    chains with non-finite values and of values outside [-1, 1]."""

    extra_steps: int
    chain_index: int
    shown: torch.Tensor
    images: torch.Tensor | None
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
    shown: list[torch.Tensor] = field(default_factory=list)
    images: list[torch.Tensor] = field(default_factory=list)
    kept: list[torch.Tensor] = field(default_factory=list)
    move: float = 0.0
    last: float = 0.0
    nonfinite: int = 0
    outside: int = 0
    values: int = 0


def _distance_per_dim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``||a_i - b_i|| / sqrt(D)`` per chain, float64."""
    return (a - b).flatten(1).double().norm(dim=1) / math.sqrt(a[0].numel())


def _pair_distance(kept: torch.Tensor) -> float | None:
    if len(kept) < 2:
        return None
    return float(_distance_per_dim(kept, kept.roll(1, 0)).mean())


class _Capture:
    """The ``anneal`` callback: accumulates each wanted chain index over the batches (chain
    indices from ``offset``: where this process's share of the chains starts)."""

    def __init__(self, model, indices: list[int], report: str, keep: int | None, images: bool,
                 bar: tqdm, offset: int) -> None:
        self.model, self.report, self.keep, self.images, self.bar = model, report, keep, images, bar
        self.offset = offset
        self.acc = {i: _Acc() for i in indices}
        self.previous: torch.Tensor | None = None
        self.last_snapshot: torch.Tensor | None = None

    def __call__(self, item: ChainState, start: int) -> None:
        if item.index == 0:
            self.previous, self.last_snapshot = None, None
        if item.index in self.acc:
            self._add(self.acc[item.index], item, start)
            self.last_snapshot = item.state
        self.previous = item.state
        self.bar.update(len(item.state))

    def _add(self, acc: _Acc, item: ChainState, start: int) -> None:
        start += self.offset
        use_mean = self.report == "samples" and item.mean is not None
        shown = self.model.visible(item.mean if use_mean else item.state)
        if self.keep is None or start < self.keep:
            stop = None if self.keep is None else self.keep - start
            acc.shown.append(shown[:stop].to("cpu", torch.float32))
        if self.images:
            acc.images.append(to_display_uint8(torch.nan_to_num(shown, nan=0.0)).cpu())
        if start < MIX_KEEP:
            acc.kept.append(item.state[: MIX_KEEP - start].to("cpu", torch.float32))
        if self.previous is not None:
            acc.last += float(_distance_per_dim(item.state, self.previous).sum())
        if self.last_snapshot is not None:
            acc.move += float(_distance_per_dim(item.state, self.last_snapshot).sum())
        acc.nonfinite += int((~torch.isfinite(shown).flatten(1).all(1)).sum())
        acc.outside += int((shown.abs() > 1).sum())
        acc.values += shown.numel()

    @staticmethod
    def finish(accs: list[dict[int, _Acc]], num: int, k: int) -> ChainRun:
        """The snapshots of the shares' accumulators ``accs`` (in chain order)."""
        snapshots, first = [], True
        for index in sorted(accs[0]):
            a = _Acc()
            for share in accs:
                b = share[index]
                a.shown += b.shown
                a.images += b.images
                a.kept += b.kept
                a.move, a.last = a.move + b.move, a.last + b.last
                a.nonfinite, a.outside = a.nonfinite + b.nonfinite, a.outside + b.outside
                a.values += b.values
            kept = torch.cat(a.kept)[:MIX_KEEP]
            snapshots.append(Snapshot(
                extra_steps=index - k, chain_index=index, shown=torch.cat(a.shown),
                images=torch.cat(a.images) if a.images else None,
                move_from_previous=None if first else a.move / num,
                last_step_move=math.nan if index == 0 else a.last / num,
                kept=kept, pair_distance=_pair_distance(kept),
                nonfinite_fraction=a.nonfinite / num, outside_fraction=a.outside / a.values))
            first = False
        return ChainRun(num, k, snapshots)


@torch.no_grad()
def run_chains(model, num: int, extra_steps: Sequence[int], *, generator: Generator,
               batch_size: int, progress: bool = False, report: str = "samples",
               keep: int | None = MIX_KEEP, images: bool = True,
               extra_temperature: float = 1.0) -> ChainRun:
    """Run ``num`` chains of ``model`` (a ``Walkback``) to ``K + max(extra_steps)`` steps, in
    batches of ``batch_size``, and keep a snapshot at each ``E`` in ``extra_steps`` (``-K <= E``);
    ``report``: "samples" or "states" become what is shown (module docstring); the steps past
    ``K`` run at ``T_E = extra_temperature``.

    ``generator``: a ``torch.Generator`` (one stream for all chains, one process), or the
    ``StackedRandom`` streams of this process's share of the chains (``distributed.share``):
    under torchrun each process runs its share and every process gets the whole run (the
    numbers of one process)."""
    if report not in ("samples", "states"):
        raise ValueError(f"report must be 'samples' or 'states', got {report!r}")
    temps = model.active_temperatures
    k = len(temps)
    wanted = sorted({k + e for e in extra_steps})
    if wanted[0] < 0:
        raise ValueError(f"extra steps must be at least -K = {-k}, got {wanted[0] - k}")
    e_max = max(0, wanted[-1] - k)
    shared = isinstance(generator, StackedRandom)
    first, stop = (generator.start, generator.stop) if shared else (0, num)
    bar = tqdm(total=(stop - first) * (k + e_max + 1), disable=not progress,
               desc=f"chains (K={k}, E<={e_max})", unit="state", unit_scale=True)
    capture = _Capture(model, wanted, report, keep, images, bar, first)
    if stop > first:
        anneal(model.operator, model.prior, temps, stop - first, extra_steps=e_max,
               extra_temperature=extra_temperature, batch_size=batch_size,
               generator=generator, callback=capture)
    bar.close()
    accs = distributed.all_gather(capture.acc) if shared else [capture.acc]
    return _Capture.finish(accs, num, k)
