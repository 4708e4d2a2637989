"""The heating's no-grad forwards replayed from CUDA graphs (``train.graph_heating``,
docs/method.md, "What a GPU waits for").

Each heating step of a minibatch is one no-grad forward of the operator on a batch of the same
shape, from the weights being trained. ``GraphedForward`` captures that forward once per input
shape (after a few eager warm-up calls, which also let cuDNN pick its kernels) and then replays
it: the GPU runs the same kernels without the Python and launch cost of each. The graph reads the
weights where they live, and the optimizer updates them in place, so every replay uses the
current weights. Only the network runs in the graph; the noise of each step is drawn outside it
from the run's generators, so the heating paths are those of the eager forward up to the
kernels' rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .transition import GaussianStep, TransitionOperator

__all__ = ["GraphedForward", "per_path_temperature"]

WARMUP_CALLS = 3  # eager calls on a side stream before a capture (the CUDA graphs recipe)


def per_path_temperature(temperature: float | torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``temperature`` (a number, a scalar or one per path) as one value per path, shape
    ``(B,)`` in ``s``'s dtype and device: the operator's step is the same either way."""
    t = torch.as_tensor(temperature, dtype=s.dtype, device=s.device)
    return t.expand(s.shape[0]) if t.dim() == 0 else t


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    s: torch.Tensor
    temperature: torch.Tensor
    out: GaussianStep


class GraphedForward:
    """``operator(s, temperature)`` without gradient, replayed from a CUDA graph per input shape
    (``amp``: the autocast of the captured forward, ``train.amp``). Called with gradients on or
    on another device it runs the operator itself."""

    def __init__(self, operator: TransitionOperator, amp: str) -> None:
        self.operator = operator
        self.amp = amp
        self._captured: dict[tuple, _Captured] = {}

    def __call__(self, s: torch.Tensor, temperature: float | torch.Tensor) -> GaussianStep:
        if s.device.type != "cuda" or torch.is_grad_enabled():
            return self.operator(s, temperature)
        t = per_path_temperature(temperature, s)
        key = (tuple(s.shape), s.dtype, self.operator.training)
        if key not in self._captured:
            self._captured[key] = self._capture(s, t)
        c = self._captured[key]
        c.s.copy_(s)
        c.temperature.copy_(t)
        c.graph.replay()
        # the outputs live in the graph's memory and the next replay overwrites them
        return GaussianStep(mean=c.out.mean.clone(), var=c.out.var.clone(),
                            temperature=c.out.temperature.clone())

    def _forward(self, s: torch.Tensor, t: torch.Tensor) -> GaussianStep:
        # no autocast cache: cast weights cached at capture would not follow the updates
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16,
                                             enabled=self.amp == "bf16", cache_enabled=False):
            return self.operator(s, t)

    def _capture(self, s: torch.Tensor, t: torch.Tensor) -> _Captured:
        static_s, static_t = s.clone(), t.clone()
        side = torch.cuda.Stream(s.device)
        side.wait_stream(torch.cuda.current_stream(s.device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_CALLS):
                self._forward(static_s, static_t)
        torch.cuda.current_stream(s.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = self._forward(static_s, static_t)
        return _Captured(graph, static_s, static_t, out)
