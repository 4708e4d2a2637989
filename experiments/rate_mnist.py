"""The recurrent rate network on MNIST (docs/method.md, "The rate network"): for each run,
the class histogram of N chains (the visible part of the last step's mean, as an image) at
E = 0, K and 10K extra steps at T = 1, the entropy production per step at T = 1 with its 95%
interval, the weight asymmetry ||W - W^T|| / ||W + W^T||, and a 10x10 grid of the E = 0 means.
Runs on the CPU (the network is one 1040 x 1040 matrix) unless DEVICE names another.

Usage: python experiments/rate_mnist.py OUT_DIR RUN_DIR [RUN_DIR ...]
Environment: DATA (MNIST .gz folder, default .data/mnist), CACHE (classifier cache,
default ~/.cache/walkback), N (chains, default 10000), DEVICE (the chains' device, default cpu).
"""

import json
import os
import sys
from pathlib import Path

import torch
from PIL import Image

from walkback import load
from walkback.data.images import load_image_dataset, to_display_uint8
from walkback.metrics import entropy_production, weight_asymmetry
from walkback.metrics.classifier import cached_classifier, class_histogram, predict
from walkback.sampler import anneal, anneal_progressive

DATA = os.environ.get("DATA", ".data/mnist")
CACHE = os.environ.get("CACHE", "~/.cache/walkback")
N = int(os.environ.get("N", "10000"))
DEVICE = os.environ.get("DEVICE", "cpu")
EP_CHAINS, EP_BURN, EP_STEPS = 2000, 300, 300


def visible_images(model, states: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 1, 28, 28) display images of the visible units of full states."""
    return to_display_uint8(model.visible(states).reshape(len(states), 1, 28, 28)).cpu()


def main(out: Path, runs: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    classifier, _ = cached_classifier(CACHE, load_image_dataset("mnist", "train", root=DATA),
                                      load_image_dataset("mnist", "test", root=DATA))
    results = {}
    for run in runs:
        model = load(run, device=DEVICE).eval()
        k = len(model.active_temperatures)
        wanted = {0: None, k: None, 10 * k: None}
        generator = torch.Generator(device=DEVICE).manual_seed(0)
        with torch.no_grad():
            for item in anneal_progressive(model.operator, model.prior, model.active_temperatures,
                                           N, extra_steps=10 * k, generator=generator):
                if item.index - k in wanted:
                    wanted[item.index - k] = visible_images(model, item.mean)
        entry = {"K": k, "num_chains": N, "reported": "visible part of the last step's mean"}
        for e, images in wanted.items():
            hist = class_histogram(*predict(classifier, images))
            entry[f"E{e}"] = {"fractions": [round(f, 4) for f in hist.fractions],
                              "min_fraction": hist.min_fraction, "min_class": hist.min_class,
                              "mean_confidence": hist.mean_confidence}
        grid = wanted[0][:100].reshape(10, 10, 28, 28).permute(0, 2, 1, 3).reshape(280, 280)
        name = Path(run).name
        Image.fromarray(grid.numpy()).save(out / f"{name}_samples.png")
        start = anneal(model.operator, model.prior, model.active_temperatures, EP_CHAINS,
                       generator=generator).states  # full states [v; h]
        ep = entropy_production(model.operator, start, temperature=1.0, burn_in=EP_BURN,
                                steps=EP_STEPS, generator=generator)
        entry["ep_nats_per_step"] = {"mean": ep.mean, "ci95": [ep.ci_low, ep.ci_high],
                                     "chains": ep.num_chains, "burn_in": EP_BURN, "steps": EP_STEPS}
        entry["weight_asymmetry"] = weight_asymmetry(model.operator.backbone.weight.detach())
        results[run] = entry
        print(run, json.dumps(entry), flush=True)
    (out / "rate_mnist.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
