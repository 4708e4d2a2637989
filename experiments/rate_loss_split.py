"""The walk-back loss of a trained rate network split into its visible and hidden units' terms
(docs/RESULTS.md, "Rate network: the hidden units' share of the loss"): heat 2,000 training points once with the model's
own operator, then sum -log p_T(s_{t-1} | s_t) over the K steps, per unit group. Also prints the
mean |h| of the data's lifted states and the visible noise variance at T = 1.

Usage: python experiments/rate_loss_split.py RUN_DIR [RUN_DIR ...]   (2-D toy runs)
"""

import json
import sys
from pathlib import Path

import torch

from walkback import load
from walkback.data.toy import make_toy
from walkback.objective import unit_weights
from walkback.trajectory import walk_away

POINTS = 2000

if __name__ == "__main__":
    for run in sys.argv[1:]:
        model = load(run).eval()
        name = json.loads((Path(run) / "config.json").read_text())["data"]["name"]
        x = make_toy(name, POINTS, generator=torch.Generator().manual_seed(1))
        d, h = model.visible_dim, model.hidden_dim
        only_visible = unit_weights(d, h, 0.0)  # None without hidden units: all terms visible
        with torch.no_grad():
            s0 = model.lift(x, generator=torch.Generator().manual_seed(2))
            path = walk_away(model.heating_path(), s0, generator=torch.Generator().manual_seed(3))
            temps = model.temperatures
            visible = total = 0.0
            for t in range(path.num_steps):  # -log p_T(s_{t-1} | s_t), one operator pass each
                step = model.operator(path.states[t + 1], float(temps[t]))
                visible -= float(step.log_prob(path.states[t], only_visible).mean())
                total -= float(step.log_prob(path.states[t]).mean())
            var_v = model.operator(s0, 1.0).total_var[:, :d].mean()
        hidden = f"mean |h| of lifted data {s0[:, d:].abs().mean():.3f}; " if h else ""
        print(f"{run}: walk-back terms over K = {path.num_steps} steps, nats/point: visible "
              f"{visible:.1f}, hidden {total - visible:.1f}; {hidden}visible noise variance at "
              f"T = 1 {var_v:.4f}")
