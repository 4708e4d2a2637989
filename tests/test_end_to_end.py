"""The mog preset, exactly as `make demo` trains it, meets the core issue's 2-D targets (~70 s);
the rate network's preset, trained a third as long, meets the ones it meets (~100 s)."""

from __future__ import annotations

from pathlib import Path

import torch

from walkback import get_preset
from walkback.config import apply_overrides
from walkback.data.toy import toy_modes
from walkback.metrics import mode_statistics
from walkback.train import train


def test_mog_preset_meets_the_targets_at_the_end_of_annealing_and_after_10k_steps(
    tmp_path: Path,
) -> None:
    config = apply_overrides(get_preset("mog"), ["train.device=cpu"])
    model = train(config, tmp_path / "run", progress=False).model
    centres, std = toy_modes("mog")
    k = len(model.active_temperatures)
    for extra in (0, 10 * k):
        generator = torch.Generator().manual_seed(0)
        samples = model.sample(5000, extra_steps=extra, generator=generator).samples
        stats = mode_statistics(samples, centres, std)
        assert stats.modes_covered == 9, (extra, stats)
        assert stats.fraction_within >= 0.9, (extra, stats)
        assert 0.07 <= min(stats.weights) and max(stats.weights) <= 0.15, (extra, stats)


def test_mog_rate_network_covers_all_modes_and_stays_on_them(tmp_path: Path) -> None:
    """1,000 of the preset's 3,000 minibatches. Before ``model.input_scale`` (session 6) every
    run ended on the 4 corner modes. The mode-weight target is missed by the rate network
    (docs/RESULTS.md), so it is not asserted here."""
    config = apply_overrides(get_preset("mog-rate"), ["train.device=cpu", "train.steps=1000"])
    model = train(config, tmp_path / "run", progress=False).model
    centres, std = toy_modes("mog")
    k = len(model.active_temperatures)
    for extra in (0, 10 * k):
        generator = torch.Generator().manual_seed(0)
        samples = model.sample(2000, extra_steps=extra, generator=generator).samples
        stats = mode_statistics(samples, centres, std)
        assert stats.modes_covered == 9, (extra, stats)
        assert stats.fraction_within >= 0.9, (extra, stats)
