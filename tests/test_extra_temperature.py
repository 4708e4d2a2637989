"""The steps past K at a temperature ``T_E`` (``sample.extra_temperature``, ``--extra-temperature``):
the setting's checks, the sample command, the 2-D evaluation and the DDPM's refusal; and the
sample command's noise scale of the cooling steps (``--noise-scale``). The closed forms (the
exact marginal, the stationary law at ``T_E``, the scaled cooling noise) are in
test_sampler.py."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import walkback
from walkback import get_preset
from walkback.cli import SAMPLE_BLOCK, main
from walkback.config import apply_overrides
from walkback.errors import ConfigError
from walkback.evaluation import evaluate
from walkback.runs import extra_temperature
from walkback.streams import StackedRandom
from walkback.train import train

# 20 updates from a near-identity operator with little noise at T = 1 (init_var)
SETS = ["train.steps=20", "train.device=cpu", "mlp.hidden=16", "mlp.depth=1", "model.init_var=1e-4",
        "data.num_train=2000", "schedule.num_steps=5", "schedule.n1=1"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("runs") / "mog"
    train(apply_overrides(get_preset("mog"), SETS), path, progress=False)
    return path


def test_the_setting_is_checked_and_the_ddpm_refuses_it() -> None:
    for bad in ("0", "-1", "nan"):
        with pytest.raises(ConfigError, match="sample.extra_temperature"):
            apply_overrides(get_preset("mog"), [f"sample.extra_temperature={bad}"])
    with pytest.raises(ConfigError, match=r"sample\.extra_temperature: method=ddpm does not read"):
        apply_overrides(get_preset("mog-diffusion"), ["sample.extra_temperature=1.2"])
    config = apply_overrides(get_preset("mog"), ["sample.extra_temperature=1.2"])
    assert extra_temperature(config) == 1.2 and extra_temperature(config, 1.5) == 1.5
    assert extra_temperature(get_preset("mog-diffusion")) == 1.0
    with pytest.raises(ConfigError, match=r"^--extra-temperature: for method=walkback only"):
        extra_temperature(get_preset("mog-diffusion"), 1.2)


def test_a_conditioned_operator_off_its_schedule_is_warned_about() -> None:
    # conditioned, T_t = 1 (6 times), 1.2, 1.44, ...
    jittered = apply_overrides(get_preset("mog-tuned"), ["schedule.factor=1.2"])
    tuned = apply_overrides(get_preset("mog-tuned"), ["schedule.factor=1.2",
                                                      "train.temperature_jitter=false"])
    with pytest.warns(UserWarning, match=r"--extra-temperature 1.1: .*nearest: 1 and 1\.2"):
        extra_temperature(tuned, 1.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for config, value in ((tuned, 1.44), (tuned, 1.0), (jittered, 1.1),
                              (get_preset("mog"), 1.1)):  # the 2017 form is blind to T
            assert extra_temperature(config, value) == value


def _sample_command(run_dir: Path, out: Path, num: int, extra: int, *flags: str
                    ) -> tuple[dict, np.ndarray]:
    """``walkback sample`` of ``num`` chains with ``extra`` steps past K and ``flags``: the
    written file's meta and samples."""
    assert main(["sample", "--run-dir", str(run_dir), "--num-samples", str(num), "--extra-steps",
                 str(extra), *flags, "--out", str(out)]) == 0
    with np.load(out) as npz:
        return json.loads(str(npz["meta"])), npz["samples"]


def _assert_the_api_draws(run_dir: Path, samples: np.ndarray, **options) -> None:
    """``samples`` are what ``Walkback.sample`` draws with ``options`` and the command's streams."""
    streams = StackedRandom(0, 0, len(samples), block=SAMPLE_BLOCK)
    expected = walkback.load(run_dir).sample(len(samples), generator=streams, **options)
    np.testing.assert_array_equal(samples, expected.samples.numpy())


def _assert_refused(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, flag: str,
                    *values: str) -> None:
    """Each of ``values`` for ``flag`` exits with code 2, naming the flag, and writes nothing."""
    capsys.readouterr()
    for value in values:
        with pytest.raises(SystemExit) as exit_:
            _sample_command(run_dir, tmp_path / "x.npz", 10, 1, flag, value)
        assert exit_.value.code == 2 and flag in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


def test_sample_command_runs_the_steps_past_k_at_t_extra(run_dir: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    meta, samples = _sample_command(run_dir, tmp_path / "hot.npz", 60, 4,
                                    "--extra-temperature", "1.5")
    assert meta["T_E"] == 1.5 and meta["E"] == 4
    _assert_the_api_draws(run_dir, samples, extra_steps=4, extra_temperature=1.5)
    meta, cold = _sample_command(run_dir, tmp_path / "cold.npz", 60, 4)
    assert meta["T_E"] == 1.0 and not np.array_equal(cold, samples)
    _assert_refused(run_dir, tmp_path, capsys, "--extra-temperature", "0")


def test_the_2d_evaluation_records_t_extra_and_keeps_the_chain_to_k(run_dir: Path) -> None:
    cold = evaluate(run_dir, metrics="chain", num_samples=300, progress=False)
    hot = evaluate(run_dir, metrics="chain", num_samples=300, progress=False,
                   extra_temperature=2.0)
    assert cold["chain"]["protocol"]["T_E"] == 1.0 and hot["chain"]["protocol"]["T_E"] == 2.0
    by_e = [{s["E"]: s["metrics"] for s in r["chain"]["snapshots"]} for r in (cold, hot)]
    assert by_e[1][0] == by_e[0][0]  # E = 0: the same chains, draw for draw
    assert by_e[1][50]["mmd"] != by_e[0][50]["mmd"]  # E = 10K: hotter steps


def test_chains_at_a_very_high_t_extra_hop_between_modes(run_dir: Path) -> None:
    """``mode_change_fraction``: the chains whose nearest mog centre changed since the previous
    snapshot. At ``T = 1`` this operator's steps are small and the chains stay; at
    ``T_E = 1000`` each step's noise is 1000 times larger and they wander across the modes."""
    hops = []
    for t_extra in (1.0, 1000.0):
        result = evaluate(run_dir, metrics="chain", num_samples=400, progress=False,
                          extra_temperature=t_extra)
        mixing = [s["mixing"] for s in result["chain"]["snapshots"]]
        assert mixing[0]["mode_change_fraction"] is None  # E = 0: no earlier snapshot
        assert all(0 <= m["mode_change_fraction"] <= 1 for m in mixing[1:])
        hops.append(mixing[2]["mode_change_fraction"])
    assert hops[1] > 0.5 and hops[1] > hops[0] + 0.3, hops


def test_sample_command_scales_the_cooling_noise(run_dir: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    meta, samples = _sample_command(run_dir, tmp_path / "cool.npz", 40, 2, "--noise-scale", "0.5")
    assert meta["noise_scale"] == 0.5
    _assert_the_api_draws(run_dir, samples, extra_steps=2, noise_scale=0.5)
    meta, own = _sample_command(run_dir, tmp_path / "own.npz", 40, 2, "--noise-scale", "1")
    assert "noise_scale" not in meta and not np.array_equal(own, samples)
    _assert_refused(run_dir, tmp_path, capsys, "--noise-scale", "-1", "nan", "inf")
