"""Sampling needs the saved model alone: the prior of a part-way start is fitted once (at the end
of training or by ``walkback fit-prior``) and saved beside the weights; ``samples`` is the
noise-free output and ``states`` the chains' states."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import walkback
from walkback import get_preset
from walkback.cli import SAMPLE_BLOCK, main
from walkback.config import apply_overrides
from walkback.sampler import anneal_progressive
from walkback.streams import StackedRandom
from walkback.train import train

SETS = ["train.steps=30", "train.device=cpu", "mlp.hidden=16", "mlp.depth=1",
        "data.num_train=2000", "schedule.num_steps=6", "schedule.n1=1"]


@pytest.fixture(scope="module")
def started_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A mog run whose sampler starts at heating step 4 of K = 6 (prior fitted at the end)."""
    config = apply_overrides(get_preset("mog"), [*SETS, "sample.start_step=4"])
    path = tmp_path_factory.mktemp("runs") / "started"
    train(config, path, progress=False)
    return path


def _no_data(*args, **kwargs):
    raise AssertionError("sampling read the training data")


def test_saved_start_prior_round_trips_and_sampling_reads_no_data(
        started_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (started_run / "model" / "start_prior.safetensors").is_file()
    monkeypatch.setattr("walkback.runs.load_splits", _no_data)
    monkeypatch.setattr("walkback.runs.load_image_splits", _no_data)
    model = walkback.load(started_run)
    assert model.start_step == 4 and model.start_prior is not None
    started = model.start_at(4)
    assert len(started.active_temperatures) == 4
    assert torch.equal(started.prior.mean, model.start_prior.mean)
    # the fitted prior is that of the heated data at step 4, not the top prior learned in training
    assert not torch.allclose(model.start_prior.var, model.prior.var)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    default = model.sample(50, generator=gen())
    explicit = model.sample(50, generator=gen(), start_step=4)
    top = model.sample(50, generator=gen(), start_step=0)
    assert torch.equal(default.samples, explicit.samples)
    assert not torch.equal(default.samples, top.samples)
    with pytest.raises(walkback.ConfigError, match="fit-prior"):
        model.sample(5, start_step=2)


def test_samples_are_the_last_steps_mean_and_states_the_last_state(started_run: Path) -> None:
    """Replaying the chain with the same generator: ``samples`` equals the mean of the last step,
    ``states`` the last state, for ``E = 0`` and ``E = 3`` (from the saved start, step 4)."""
    model = walkback.load(started_run)
    started = model.start_at(4)
    for extra in (0, 3):
        result = model.sample(40, extra_steps=extra, generator=torch.Generator().manual_seed(7))
        chain = list(anneal_progressive(started.operator, started.prior, started.active_temperatures,
                                        40, extra_steps=extra, generator=torch.Generator().manual_seed(7)))
        assert torch.equal(result.samples, chain[-1].mean)
        assert torch.equal(result.states, chain[-1].state)
        assert not torch.equal(result.samples, result.states)


def test_cli_sample_writes_samples_and_states_and_guards_the_picture(
        started_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "s.npz"
    assert main(["sample", "--run-dir", str(started_run), "--num-samples", "30", "--out", str(out)]) == 0
    with np.load(out) as npz:
        assert npz["samples"].shape == npz["states"].shape == (30, 2)
        meta = json.loads(str(npz["meta"]))
    assert meta["K"] == 4 and meta["start_step"] == 4 and meta["reported"].startswith("samples")
    model = walkback.load(started_run)
    # chain i draws from stream i // 50 of seed 0 (the command's per-chain streams)
    expected = model.sample(30, generator=StackedRandom(0, 0, 30, block=SAMPLE_BLOCK))
    np.testing.assert_array_equal(np.load(out)["samples"], expected.samples.numpy())
    capsys.readouterr()
    # a picture name is refused; an existing picture beside the npz is not replaced
    assert main(["sample", "--run-dir", str(started_run), "--num-samples", "3", "--out",
                 str(tmp_path / "pic.png")]) == 2
    assert ".npz" in capsys.readouterr().err
    other = tmp_path / "other.npz"
    other.with_suffix(".png").write_bytes(b"keep")
    assert main(["sample", "--run-dir", str(started_run), "--num-samples", "3", "--out", str(other)]) == 2
    assert other.with_suffix(".png").read_bytes() == b"keep" and not other.exists()


def test_fit_prior_saves_and_refuses_to_replace(started_run: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(started_run, run)
    assert main(["fit-prior", "--run-dir", str(run), "--start-step", "2", "--device", "cpu"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["fit-prior", "--run-dir", str(run), "--start-step", "2", "--device", "cpu",
                 "--overwrite"]) == 0
    assert walkback.load(run).start_step == 2
