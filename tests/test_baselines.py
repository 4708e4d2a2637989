"""Tests of the detailed-balance baseline: DSM energy, MALA kernel and its entropy production."""

import torch

from walkback.baselines import EnergyMLP, MALAKernel, mh_entropy_production, train_energy_dsm


def quadratic(s: torch.Tensor) -> torch.Tensor:
    """``E(s) = |s|^2 / 2`` (standard normal target)."""
    return 0.5 * s.square().sum(1)


def test_dsm_learns_gaussian_score():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    std = torch.tensor([1.0, 0.5])
    data = torch.randn(2000, 2, generator=g) * std
    sigma = 0.5  # large enough that the DSM target eps / sigma is not too noisy for a quick fit
    energy = EnergyMLP(hidden=64, depth=2)
    losses = train_energy_dsm(energy, data, sigma=sigma, steps=400, batch_size=512, lr=3e-3, generator=g)
    assert sum(losses[-50:]) / 50 < sum(losses[:20]) / 20
    points = torch.tensor([[0.5, 0.0], [0.0, 0.3], [-0.5, -0.2], [0.3, -0.3]]).requires_grad_(True)
    score = -torch.autograd.grad(energy(points).sum(), points)[0]
    expected = -points.detach() / (std.square() + sigma**2)  # score of N(0, diag(std^2) + sigma^2 I)
    err = (score - expected).norm(dim=1) / expected.norm(dim=1)
    assert err.max() < 0.3, (score, expected)


def test_mala_quadratic_stationary_and_zero_ep():
    g = torch.Generator().manual_seed(1)
    kernel = MALAKernel(quadratic, step_size=0.3)
    s = 3.0 * torch.randn(1000, 2, generator=g, dtype=torch.float64)
    acc = []
    for _ in range(200):
        s, accepted = kernel.step(s, generator=g)
        acc.append(accepted.double().mean().item())
    rate = sum(acc[50:]) / len(acc[50:])
    assert 0.0 < rate < 1.0
    assert s.mean(0).abs().max() < 0.15
    assert (s.var(0) - 1.0).abs().max() < 0.15
    ep = mh_entropy_production(kernel, s, burn_in=10, steps=100, generator=g)
    assert ep.ci_low <= 0.0 <= ep.ci_high
    assert abs(ep.mean) < 0.05
    assert ep.num_pairs == 1000 * 100


def test_pair_log_ratio_is_mh_identity():
    g = torch.Generator().manual_seed(2)
    kernel = MALAKernel(quadratic, step_size=0.5)
    s = 2.0 * torch.randn(500, 2, generator=g, dtype=torch.float64)
    s_next, accepted = kernel.step(s, generator=g)
    assert accepted.any() and not accepted.all()
    ratio = kernel.pair_log_ratio(s, s_next, accepted)
    expected = quadratic(s) - quadratic(s_next)
    assert torch.allclose(ratio[accepted], expected[accepted], atol=1e-5, rtol=0)
    assert (ratio[~accepted] == 0).all()
