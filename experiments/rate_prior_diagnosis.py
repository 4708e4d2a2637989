"""Where the rate network's uneven mog mode weights come from: the start of the cooling chain.

Walks back through T_K..T_1 (no extra steps) from four start distributions and prints the
fraction within 3 std and the 9 mode weights of each (5,000 chains, seed 0):
  prior                 s_K ~ p*, the Gaussian prior over the full state [v; h] (what sampling does)
  prior v, relaxed h    v from p*, h relaxed with v clamped, as the data's are before heating
  heated data           the top of the model's own heating path from data points
  heated v, relaxed h   the same visible units with h relaxed again
The last two are checks, not samplers (they start from data): if the top of the heating path
still remembers each point's mode, walking back from it returns the data's own weights.

Usage: PYTHONPATH=src python experiments/rate_prior_diagnosis.py RUN_DIR [RUN_DIR ...]
"""

import sys

import torch

from walkback import load
from walkback.data.toy import make_toy, toy_modes
from walkback.metrics import mode_statistics
from walkback.trajectory import walk_away

N = 5000


@torch.no_grad()
def walk_back(model, s: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Visible part of the chain after the cooling steps T_K..T_1 from full states ``s``."""
    for temperature in reversed(model.active_temperatures.tolist()):
        s = model.operator.sample(s, temperature, generator=generator)
    return model.visible(s)


@torch.no_grad()
def main(run: str) -> None:
    model = load(run).eval()
    if model.config.data.name != "mog" or not model.hidden_dim:
        raise SystemExit(f"{run}: needs a rate network trained on mog")
    generator = torch.Generator().manual_seed(0)
    data = make_toy("mog", N, generator=generator).float()
    top = walk_away(model.heating_path(), model.lift(data, generator=generator),
                    generator=generator).states[-1]
    prior = model.prior.sample(N, generator=generator)
    starts = {
        "prior": prior,
        "prior v, relaxed h": model.lift(model.visible(prior), generator=generator),
        "heated data": top,
        "heated v, relaxed h": model.lift(model.visible(top), generator=generator),
    }
    centres, std = toy_modes("mog")
    for name, s in starts.items():
        stats = mode_statistics(walk_back(model, s, generator), centres, std)
        weights = " ".join(f"{w:.3f}" for w in stats.weights)
        print(f"{run}: {name:20s} within 3 std {stats.fraction_within:.3f}, weights "
              f"{min(stats.weights):.3f}-{max(stats.weights):.3f} [{weights}]")


if __name__ == "__main__":
    for run_dir in sys.argv[1:]:
        main(run_dir)
