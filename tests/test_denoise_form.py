"""``model.mean_scale=denoise`` (docs/method.md, "Denoising form") through config, training and a
saved model; the operator's closed forms are in test_transition.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from walkback.cli import main
from walkback.config import apply_overrides, config_from_saved
from walkback.errors import ConfigError
from walkback.model import build_model, load
from walkback.presets import get_preset
from walkback.runs import load_data


@pytest.mark.parametrize("sets, message", [
    (["model.denoised_clip=1"], "needs model.mean_scale=denoise"),
    (["model.mean_scale=denoise", "model.backbone=rate"], "rate network"),
])
def test_settings_it_cannot_use_are_refused(sets: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_overrides(get_preset("mog"), sets)


def test_the_operator_weighs_by_the_presets_schedule() -> None:
    config = apply_overrides(get_preset("mog"), ["model.form=conditioned",
                                                 "model.mean_scale=denoise"])
    op = build_model(config).operator
    temps = op.temperatures
    assert len(temps) == config.schedule.num_steps
    t = temps[10]
    assert float(op.denoise_weight(t)) == pytest.approx(float(t / temps[temps <= t].sum()))
    assert float(op.denoise_weight(torch.tensor(1.0))) == 1.0  # below T_1 as at T_1


def test_a_trained_denoising_run_saves_and_loads_with_the_same_means(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "--preset", "mog", "--run-dir", str(run), "--set", "train.steps=20",
                 "--set", "model.form=conditioned", "--set", "model.mean_scale=denoise",
                 "--set", "model.denoised_clip=3", "--set", "mlp.hidden=32", "--no-progress"]) == 0
    model = load(run).eval()
    op = model.operator
    assert op.mean_scale == "denoise" and op.clip == 3.0
    # c_in(T)'s statistics were recorded in training and saved: the training data's mean
    # square and a heating noise that grows with T
    data = load_data(config_from_saved(json.loads((run / "config.json").read_text())))
    assert float(op.data_square) == pytest.approx(float(data.train.square().mean()), rel=1e-5)
    noise = op.heat_noise
    assert bool((noise > 0).all()) and float(noise[-1]) > 10 * float(noise[0])
    assert float(op.input_scale(op.temperatures[-1])) < float(op.input_scale(op.temperatures[0]))
    s = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        step = op(s, 50.0)
        again = load(run).eval().operator(s, 50.0)
    torch.testing.assert_close(step.mean, again.mean)
    assert torch.isfinite(step.mean).all() and torch.isfinite(step.var).all()
    result = model.sample(200, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(result.samples).all()
