"""Toy metrics: mode statistics, nearest-neighbour distance ratio and unbiased MMD^2."""

from __future__ import annotations

import pytest
import torch

from walkback.data import make_toy, toy_modes
from walkback.metrics import (
    mmd_rbf,
    mode_statistics,
    nearest_centre,
    nearest_distance_ratio,
    nearest_distances,
    subsample,
    toy_metrics,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_mode_statistics_on_exact_mog_data() -> None:
    centres, std = toy_modes("mog")
    stats = mode_statistics(make_toy("mog", 20000, generator=_gen(0)), centres, std)
    assert stats.fraction_within > 0.985  # chi2_2: P(r < 3 std) = 1 - exp(-4.5) = 0.9889
    assert stats.num_modes == 9 and stats.modes_covered == 9
    assert len(stats.weights) == 9
    assert abs(sum(stats.weights) - 1) < 1e-12
    assert all(0.1 <= w <= 0.12 for w in stats.weights)


def test_mode_statistics_collapsed_samples_cover_one_mode() -> None:
    centres, std = toy_modes("mog")
    samples = centres[4].expand(1000, 2) + 0.01 * torch.randn(1000, 2, generator=_gen(0))
    stats = mode_statistics(samples, centres, std)
    assert stats.fraction_within == 1.0
    assert stats.modes_covered == 1
    assert stats.weights[4] == 1.0 and sum(stats.weights) == 1.0


def test_nearest_centre_gives_the_index_and_distance_of_the_closest_centre() -> None:
    centres, _ = toy_modes("mog")
    offsets = torch.tensor([[0.1, 0.0], [0.0, -0.2], [0.05, 0.05]], dtype=torch.float64)
    picks = torch.tensor([0, 4, 8])
    dist, index = nearest_centre(centres[picks] + offsets, centres)
    assert index.tolist() == picks.tolist()
    torch.testing.assert_close(dist, offsets.norm(dim=1))


def test_mode_statistics_far_samples() -> None:
    centres, std = toy_modes("ring8")
    stats = mode_statistics(torch.full((100, 2), 5.0), centres, std)
    assert stats.fraction_within == 0.0 and stats.modes_covered == 0
    assert stats.weights == [0.0] * 8


def test_modes_covered_counts_against_all_samples() -> None:
    # Mode 0 gets 5 samples of 1000 (0.5% < 1%): not covered, although it holds a within-radius weight.
    centres, std = toy_modes("mog")
    samples = torch.cat([centres[0].expand(5, 2), centres[1].expand(995, 2)])
    stats = mode_statistics(samples, centres, std)
    assert stats.modes_covered == 1
    assert stats.weights[0] == pytest.approx(0.005)


def test_nearest_distances_match_brute_force_across_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    import walkback.metrics.toy as toy

    q = torch.randn(300, 2, generator=_gen(0))
    r = torch.randn(700, 2, generator=_gen(1))
    expected = torch.cdist(q.double(), r.double()).min(dim=1).values
    monkeypatch.setattr(toy, "CHUNK_ENTRIES", 7 * 700)  # 7 rows per chunk, ragged last chunk
    torch.testing.assert_close(nearest_distances(q, r), expected)


@pytest.mark.parametrize("name", ["spiral", "mog"])
def test_nearest_distance_ratio_heldout_is_about_one(name: str) -> None:
    data = make_toy(name, 10000, generator=_gen(0))
    heldout = make_toy(name, 2000, generator=_gen(1))
    samples = make_toy(name, 2000, generator=_gen(2))
    result = nearest_distance_ratio(samples, data, heldout)
    assert 0.8 < result.ratio < 1.25
    assert result.ratio == pytest.approx(result.sample_median / result.heldout_median)


def test_nearest_distance_ratio_noisy_samples_is_large() -> None:
    data = make_toy("spiral", 10000, generator=_gen(0))
    heldout = make_toy("spiral", 2000, generator=_gen(1))
    noisy = data[:2000] + 0.05 * torch.randn(2000, 2, generator=_gen(2))
    uniform = torch.rand(2000, 2, generator=_gen(3)) * 2 - 1
    assert nearest_distance_ratio(noisy, data, heldout).ratio > 2
    assert nearest_distance_ratio(uniform, data, heldout).ratio > 2


def test_mmd_same_distribution_near_zero_shifted_positive() -> None:
    x = make_toy("ring8", 1500, generator=_gen(0))
    y = make_toy("ring8", 1500, generator=_gen(1))
    same = mmd_rbf(x, y)
    shifted = mmd_rbf(x, y + torch.tensor([0.3, 0.0]))
    # Over seeds: same-distribution values scatter by about 5e-4; a 0.3 shift gives 0.013-0.021
    # (median bandwidth about 1.4 on ring8).
    assert abs(same) < 2e-3
    assert shifted > 0.008
    assert shifted > 10 * abs(same)


def test_mmd_of_a_set_with_itself_is_the_unbiased_negative_value() -> None:
    # MMD^2_u(x, x) = 2 mean_{i!=j} k - 2 mean_{i,j} k = -2 (1 - mean_{i!=j} k) / n < 0.
    x = torch.randn(200, 2, generator=_gen(0))
    h = 0.7
    k = torch.exp(-torch.cdist(x.double(), x.double()).square() / (2 * h * h))
    off_diagonal = (k.sum() - 200) / (200 * 199)
    expected = float(-2 * (1 - off_diagonal) / 200)
    assert mmd_rbf(x, x.clone(), bandwidth=h) == pytest.approx(expected, rel=1e-9)
    assert mmd_rbf(x, x, bandwidth=h) < 0


def test_mmd_matches_a_direct_formula_with_median_bandwidth() -> None:
    x = torch.randn(120, 2, generator=_gen(0))
    y = torch.randn(90, 2, generator=_gen(1)) + 0.5
    pooled = torch.cat([x, y]).double()
    h = torch.pdist(pooled).median()

    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.exp(-torch.cdist(a.double(), b.double()).square() / (2 * h * h))

    kxx, kyy = k(x, x), k(y, y)
    expected = (kxx.sum() - kxx.trace()) / (120 * 119) + (kyy.sum() - kyy.trace()) / (90 * 89)
    expected = expected - 2 * k(x, y).mean()
    assert mmd_rbf(x, y) == pytest.approx(float(expected), rel=1e-9)


def test_subsample_is_deterministic_and_capped() -> None:
    x = torch.arange(10.0).reshape(10, 1)
    assert torch.equal(subsample(x, 20), x)
    picked = subsample(x, 4)
    assert picked.flatten().tolist() == [0.0, 3.0, 6.0, 9.0]


def test_toy_metrics_keys_and_values() -> None:
    data = make_toy("mog", 4000, generator=_gen(0))
    heldout = make_toy("mog", 1000, generator=_gen(1))
    samples = make_toy("mog", 1000, generator=_gen(2))
    out = toy_metrics("mog", samples, data, heldout)
    assert set(out) == {
        "fraction_within_3std", "mode_weights", "modes_covered", "num_modes",
        "nearest_distance_ratio", "sample_nearest_median", "heldout_nearest_median", "mmd",
    }
    assert out["modes_covered"] == 9 and out["num_modes"] == 9
    assert 0.7 < out["nearest_distance_ratio"] < 1.4
    assert abs(out["mmd"]) < 5e-3
    circle = toy_metrics("circle", samples[:500], make_toy("circle", 2000), make_toy("circle", 500))
    assert "modes_covered" not in circle and circle["nearest_distance_ratio"] > 2
    import json

    json.dumps(out)  # JSON-friendly: plain floats, ints and lists


def test_radius_error_is_zero_on_the_circle_and_measures_a_shift() -> None:
    from walkback.metrics.toy import radius_error_median

    points = make_toy("circle", 1000, generator=torch.Generator().manual_seed(0))
    assert radius_error_median(points) < 1e-6
    assert abs(radius_error_median(points * 1.1) - 0.1) < 1e-6
