"""The mog preset, exactly as `make demo` trains it, meets the core issue's 2-D targets (~70 s)."""

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
