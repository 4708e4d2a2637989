"""Detailed-balance baseline (docs/method.md, "Non-equilibrium"): an energy ``E_theta`` trained by denoising
score matching on the 3x3 MoG, sampled by MALA from a broad Gaussian. Reports the MoG metrics, the
acceptance rate and the MH entropy production ``E[log K(s'|s) - log K(s|s')]`` with its 95%
interval, which must contain 0 (MALA obeys detailed balance w.r.t. ``exp(-E_theta)``).

DSM fits the noise-convolved density, whose modes have std ``sqrt(0.05^2 + SIGMA^2)`` (0.071 for
SIGMA = 0.05), so the expected fraction within 3 * 0.05 of a centre is ``1 - exp(-(0.15/0.071)^2 / 2)``
(about 0.89), not 0.99. Chains cannot cross the barriers between modes, so the mode weights reflect
the basins of the starting Gaussian.

Usage: python experiments/detailed_balance_baseline.py   (about 1-3 minutes on 2 CPU cores)
"""

import time

import torch

from walkback.baselines import EnergyMLP, MALAKernel, mh_entropy_production, train_energy_dsm
from walkback.data import make_toy
from walkback.metrics import toy_metrics

SIGMA, TRAIN_STEPS, BATCH, LR = 0.05, 3000, 512, 1e-3
CHAINS, START_STD, STEP_SIZE, SAMPLE_STEPS = 2000, 1.0, 5e-4, 1500
EP_CHAINS, EP_BURN, EP_STEPS = 500, 0, 300


def main() -> None:
    """Train, sample, measure; print one summary block."""
    t0 = time.time()
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    data = make_toy("mog", 20000, generator=g)
    heldout = make_toy("mog", 5000, generator=g)
    energy = EnergyMLP(hidden=128, depth=3)
    losses = train_energy_dsm(energy, data, sigma=SIGMA, steps=TRAIN_STEPS, batch_size=BATCH,
                              lr=LR, generator=g)
    energy.requires_grad_(False)
    t_train = time.time() - t0
    kernel = MALAKernel(energy, step_size=STEP_SIZE)
    s = START_STD * torch.randn(CHAINS, 2, generator=g)
    rates = []
    for _ in range(SAMPLE_STEPS):
        s, accepted = kernel.step(s, generator=g)
        rates.append(accepted.float().mean().item())
    tail = rates[len(rates) // 2:]
    metrics = toy_metrics("mog", s, data, heldout)
    ep = mh_entropy_production(kernel, s[:EP_CHAINS], burn_in=EP_BURN, steps=EP_STEPS, generator=g)
    weights = metrics["mode_weights"]
    print("== detailed-balance baseline: DSM energy + MALA on mog ==")
    print(f"energy: EnergyMLP(128, 3), DSM sigma={SIGMA}, {TRAIN_STEPS} steps x {BATCH}; "
          f"loss first/last 100: {sum(losses[:100]) / 100:.4g} / {sum(losses[-100:]) / 100:.4g} "
          f"({t_train:.0f} s)")
    print(f"MALA: h={STEP_SIZE}, {CHAINS} chains from N(0, {START_STD}^2 I), {SAMPLE_STEPS} steps; "
          f"acceptance (second half) {sum(tail) / len(tail):.3f}")
    print(f"fraction within 3 std {metrics['fraction_within_3std']:.3f}, modes covered "
          f"{metrics['modes_covered']}/{metrics['num_modes']}, mode weight min/max "
          f"{min(weights):.3f}/{max(weights):.3f}, nearest-distance ratio "
          f"{metrics['nearest_distance_ratio']:.3f}, MMD {metrics['mmd']:.4g}")
    print(f"EP = {ep.mean:.3g} nats/step, 95% CI [{ep.ci_low:.3g}, {ep.ci_high:.3g}] "
          f"({ep.num_chains} chains, {EP_STEPS} steps after the {SAMPLE_STEPS} sampling steps); "
          f"contains 0: {ep.ci_low <= 0.0 <= ep.ci_high}")
    print(f"total time {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
