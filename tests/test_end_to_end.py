"""The mog preset, exactly as `make demo` trains it, meets the 2-D targets (~70 s); the rate
network's preset, trained a third as long, meets the same ones (~100 s); so do the two baselines
(the fixed-diffusion arm trained 400 of its 1,000 minibatches, the DDPM as its preset trains)
and the tuned preset after 300 of its 1,000 minibatches (~40 s), whose bound beats both the
mog preset's and the DDPM's; trained at jittered temperatures, its chains stay on the data at
extra temperatures off its schedule."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from walkback import get_preset
from walkback.config import apply_overrides
from walkback.data.toy import make_toy, toy_modes
from walkback.metrics import ModeStats, mode_statistics
from walkback.model import Walkback
from walkback.objective import variational_bound
from walkback.train import train

pytestmark = pytest.mark.slow  # about 1 to 3 minutes each on 2 cores


def _trained_mog_mode_statistics(preset: str, overrides: list[str], run_dir: Path,
                                 num_samples: int) -> list[tuple[int, ModeStats]]:
    """Train ``preset`` on the CPU, then the mode statistics of ``num_samples`` chains at the
    end of annealing (E = 0) and after ``10 K`` extra steps at T = 1, each with seed 0."""
    config = apply_overrides(get_preset(preset), ["train.device=cpu", *overrides])
    return _mode_statistics(train(config, run_dir, progress=False).model, num_samples)


def _mode_statistics(model: Walkback, num_samples: int) -> list[tuple[int, ModeStats]]:
    centres, std = toy_modes("mog")
    k = len(model.active_temperatures)
    result = []
    for extra in (0, 10 * k):
        generator = torch.Generator().manual_seed(0)
        samples = model.sample(num_samples, extra_steps=extra, generator=generator).samples
        result.append((extra, mode_statistics(samples, centres, std)))
    return result


def test_mog_preset_meets_the_targets_at_the_end_of_annealing_and_after_10k_steps(
    tmp_path: Path,
) -> None:
    for extra, stats in _trained_mog_mode_statistics("mog", [], tmp_path / "run", 5000):
        assert stats.modes_covered == 9, (extra, stats)
        assert stats.fraction_within >= 0.9, (extra, stats)
        assert 0.07 <= min(stats.weights) and max(stats.weights) <= 0.15, (extra, stats)


def test_mog_rate_network_meets_the_targets_at_the_end_of_annealing_and_after_10k_steps(
    tmp_path: Path,
) -> None:
    """1,000 of the preset's 3,000 minibatches, the MLP preset's targets. Before
    ``rate.input_scale`` every run ended on the 4 corner modes; before
    ``rate.hidden_min_var`` and f = 1.4 the centre mode took 0.25-0.34."""
    for extra, stats in _trained_mog_mode_statistics("mog-rate", ["train.steps=1000"],
                                                     tmp_path / "run", 5000):
        assert stats.modes_covered == 9, (extra, stats)
        assert stats.fraction_within >= 0.9, (extra, stats)
        assert 0.07 <= min(stats.weights) and max(stats.weights) <= 0.15, (extra, stats)


@pytest.mark.parametrize(("preset", "overrides"), [("mog-fixed", ["train.steps=400"]),
                                                   ("mog-diffusion", [])])
def test_baselines_meet_the_mog_targets_at_the_end_of_annealing_and_after_10k_steps(
    preset: str, overrides: list[str], tmp_path: Path,
) -> None:
    for extra, stats in _trained_mog_mode_statistics(preset, overrides, tmp_path / "run", 5000):
        assert stats.modes_covered == 9, (extra, stats)
        assert stats.fraction_within >= 0.9, (extra, stats)
        assert 0.07 <= min(stats.weights) and max(stats.weights) <= 0.15, (extra, stats)


def _tuned(tmp_path: Path, *overrides: str) -> Walkback:
    """300 of ``mog-tuned``'s minibatches on the CPU."""
    config = apply_overrides(get_preset("mog-tuned"), ["train.device=cpu", "train.steps=300",
                                                       *overrides])
    return train(config, tmp_path, progress=False).model


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> Walkback:
    return _tuned(tmp_path_factory.mktemp("runs") / "tuned")


def _within_after_10k(model: Walkback, extra_temperature: float) -> ModeStats:
    """Mode statistics of 5,000 chains after ``10 K`` steps past K at ``extra_temperature``."""
    samples = model.sample(5000, extra_steps=10 * len(model.active_temperatures),
                           extra_temperature=extra_temperature,
                           generator=torch.Generator().manual_seed(0)).samples
    return mode_statistics(samples, *toy_modes("mog"))


def test_tuned_mog_preset_meets_the_targets_and_beats_the_bounds_of_the_preset_and_the_ddpm(
    tuned: Walkback,
) -> None:
    """300 minibatches of ``mog-tuned``, its chains started from the mixture of 9 fitted at the
    end (seed 0: 0.99 within 3 std at E = 0 and 10K, weights 0.10-0.12, M = 16 bound +0.69 nats
    per point with the mixture, +0.63 with the prior learned in training); at 1.5 minutes the
    mog preset's bound was -0.83 and the DDPM's +0.17 (docs/RESULTS.md, "The tuned presets")."""
    model = tuned
    assert model.start_step == len(model.active_temperatures)  # the saved mixture start
    for extra, stats in _mode_statistics(model, 5000):
        assert stats.modes_covered == 9, (extra, stats)
        assert stats.fraction_within >= 0.9, (extra, stats)
        assert 0.07 <= min(stats.weights) and max(stats.weights) <= 0.15, (extra, stats)
    heldout = make_toy("mog", 2000, generator=torch.Generator().manual_seed(1))
    start = model.start_at(model.start_step)
    result = variational_bound(model.operator, start.prior, model.heating_path(),
                               model.active_temperatures, heldout, num_paths=16,
                               generator=torch.Generator().manual_seed(2))
    assert float(result.log_bound.mean()) >= 0.3


def test_jittered_temperatures_keep_chains_at_off_schedule_temperatures_on_the_data(
    tuned: Walkback, tmp_path: Path,
) -> None:
    """Steps past K at T_E = 1.15 and 1.25, between the schedule's 1, 1.1, 1.21, 1.33: the tuned
    preset, trained at every T (``train.temperature_jitter``), keeps its chains on the data; the
    same operator trained only at the schedule's temperatures leaves it (docs/RESULTS.md, "Steps
    past K at another temperature": at the earlier top 1.2^24, 0.56-0.64 against 0.98-0.99
    within 3 std after 1.5 minutes; seed 0 here: 0.71 and 0.59 against 0.98 and 0.97)."""
    plain = _tuned(tmp_path / "plain", "train.temperature_jitter=false")
    for t_extra in (1.15, 1.25):
        stats = _within_after_10k(tuned, t_extra)
        assert stats.modes_covered == 9 and stats.fraction_within >= 0.9, (t_extra, stats)
        assert _within_after_10k(plain, t_extra).fraction_within < 0.8, t_extra
