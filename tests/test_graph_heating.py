"""The heating's CUDA-graphed forward (``train.graph_heating``, ``graphs.GraphedForward``): the
step it replays equals the operator's, it falls back to the operator where it cannot graph, and
the setting is refused where it cannot run. The replay itself needs a GPU (skipped without one)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from walkback.config import apply_overrides
from walkback.errors import ConfigError
from walkback.graphs import GraphedForward, per_path_temperature
from walkback.model import build_model
from walkback.presets import get_preset
from walkback.train import train

SMALL = ["mlp.hidden=16", "mlp.depth=1", "data.num_train=500", "data.num_heldout=100",
         "train.steps=2", "train.batch_size=32", "train.transition_batch=32"]


def _operator(device: str = "cpu"):
    """`mog-tuned`'s operator (told T, noise-scaled mean, floor shrinking with T), its head
    perturbed so that the mean depends on the state and on T."""
    torch.manual_seed(0)
    model = build_model(apply_overrides(get_preset("mog-tuned"), SMALL)).to(device)
    with torch.no_grad():
        model.operator.backbone.head.weight.normal_(0, 0.3)
    return model.operator


@pytest.mark.parametrize("temperature", [1.0, 3.7, 79.0])
def test_one_temperature_per_path_is_the_same_step(temperature: float) -> None:
    """The graph always runs one temperature per path: the step equals the scalar one."""
    op, s = _operator(), torch.randn(64, 2)
    with torch.no_grad():
        scalar = op(s, temperature)
        per_path = op(s, per_path_temperature(temperature, s))
    assert per_path.temperature.shape == (64,)
    torch.testing.assert_close(per_path.mean, scalar.mean, rtol=0, atol=0)
    torch.testing.assert_close(per_path.total_var, scalar.total_var, rtol=0, atol=0)
    temps = torch.linspace(1, 79, 64)
    assert torch.equal(per_path_temperature(temps, s), temps)


def test_off_the_gpu_or_with_gradients_it_is_the_operator() -> None:
    op, s, t = _operator(), torch.randn(16, 2), torch.full((16,), 2.0)
    graphed = GraphedForward(op, "none")
    with torch.no_grad():
        a, b = graphed(s, t), op(s, t)
    assert torch.equal(a.mean, b.mean) and torch.equal(a.var, b.var)
    assert graphed(s, t).mean.requires_grad  # gradients on: the operator's own autograd graph


def test_the_setting_is_refused_where_it_cannot_run(tmp_path: Path) -> None:
    for preset, extra in (("mog-diffusion", []), ("mog-fixed", []),
                          ("mog", ["train.compile=true"])):
        with pytest.raises(ConfigError, match=r"^config key train.graph_heating: replays"):
            apply_overrides(get_preset(preset), ["train.graph_heating=true", *extra])
    config = apply_overrides(get_preset("mog-tuned"),
                             [*SMALL, "train.graph_heating=true", "train.device=cpu"])
    with pytest.raises(ConfigError, match=r"train.graph_heating: needs one process on a GPU, "
                       r"this run has a cpu device"):
        train(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_the_replay_follows_the_operator_and_its_updated_weights() -> None:
    op = _operator("cuda")
    graphed = GraphedForward(op, "bf16")
    s = torch.randn(256, 2, device="cuda")
    for temperature in (torch.linspace(1, 79, 256, device="cuda"), 5.0):
        for _ in range(2):  # the capture, then a replay
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                replayed, eager = graphed(s, temperature), op(s, temperature)
            torch.testing.assert_close(replayed.mean, eager.mean)
            torch.testing.assert_close(replayed.total_var, eager.total_var)
        with torch.no_grad():
            op.backbone.head.weight.add_(0.1)  # an optimizer step, in place
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            torch.testing.assert_close(graphed(s, temperature).mean, op(s, temperature).mean)
