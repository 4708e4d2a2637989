"""Entropy production per step (nats) of trained operators at T = 1, with a 95% interval from
independent chains (docs/method.md, "Non-equilibrium"): the chains start from annealed samples, run
BURN steps at T = 1, then STEPS steps over which the exact Gaussian pair terms are averaged.

Usage: python experiments/entropy_production.py RUN_DIR [RUN_DIR ...]
"""

import sys

import torch

from walkback import load
from walkback.metrics import entropy_production, weight_asymmetry
from walkback.sampler import anneal

CHAINS, BURN, STEPS = 2000, 300, 300

if __name__ == "__main__":
    for run in sys.argv[1:]:
        model = load(run).eval()
        generator = torch.Generator().manual_seed(0)
        # full operator states (for the rate network [v; h], not model.sample's visible part)
        start = anneal(model.operator, model.prior, model.active_temperatures, CHAINS,
                       generator=generator).states
        ep = entropy_production(model.operator, start, temperature=1.0, burn_in=BURN,
                                steps=STEPS, generator=generator)
        print(f"{run}: EP = {ep.mean:.4g} nats/step, 95% CI [{ep.ci_low:.4g}, {ep.ci_high:.4g}] "
              f"({ep.num_chains} chains, burn-in {ep.burn_in}, {STEPS} steps)")
        weight = getattr(model.operator.backbone, "weight", None)
        if isinstance(weight, torch.Tensor):  # the rate network's W
            print(f"{run}: weight_asymmetry ||W - W^T|| / ||W + W^T|| = "
                  f"{weight_asymmetry(weight.detach()):.4g}")
