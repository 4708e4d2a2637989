"""The first heating steps of a trained image model, one at a time (docs/RESULTS.md, "MNIST,
5 minutes each").

Heats ``N`` dequantized held-out images with the model's own operator for ``STEPS`` steps of its
schedule (the first ``schedule.n1`` at T = 1) and prints, per step ``t``: the forward step's
mean noise variance ``T var(s_t-1)``, the walk back's ``T var(s_t)``, the walk back's squared
residual ``(s_t-1 - mean(s_t))^2``, how far the forward mean moves, and the step's term of the
bound, ``-[log p(s_t-1 | s_t) - log q(s_t | s_t-1)]`` in bits per dimension (the numbers the
evaluation's bound breakdown sums over its paths).

Usage: python experiments/walk_at_t1.py RUN_DIR DATA_ROOT [--num N] [--steps STEPS] [--seed S]
"""

from __future__ import annotations

import argparse
import math

import torch

import walkback
from walkback.data.images import dequantize_model_space
from walkback.runs import load_data


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("data_root")
    p.add_argument("--num", type=int, default=100)
    p.add_argument("--steps", type=int, default=7)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    model = walkback.load(args.run_dir).eval()
    config = model.config
    config.data.root = args.data_root
    generator = torch.Generator().manual_seed(args.seed)
    s = dequantize_model_space(load_data(config).heldout[: args.num], generator=generator)
    temps = model.active_temperatures
    dim = s[0].numel()
    print("| t | T | forward T var | walk-back T var | walk-back residual^2 | forward mean move "
          "| term, bits/dim |\n| --- | --- | --- | --- | --- | --- | --- |")
    with torch.inference_mode():
        for t in range(min(args.steps, len(temps))):
            forward = model.operator(s, temps[t])
            s_next = forward.sample(generator=generator)
            back = model.operator(s_next, temps[t])
            term = (forward.log_prob(s_next) - back.log_prob(s)).mean() / (dim * math.log(2))
            print(f"| {t + 1} | {float(temps[t]):.3g} | {forward.total_var.mean():.3g} "
                  f"| {back.total_var.mean():.3g} | {(s - back.mean).square().mean():.3g} "
                  f"| {(forward.mean - s).abs().mean():.3g} | {float(term):+.3f} |")
            s = s_next


if __name__ == "__main__":
    main()
