"""Does the diagonal prior limit a trained MNIST model's samples? (docs/RESULTS.md, "The prior
at a low heating top")

The cooling chain starts from ``p*(s_K)``, a diagonal Gaussian fitted to the heating end points.
At a low top (the tuned presets) the heated images keep part of the digits' pixel correlations,
which a diagonal Gaussian drops. This script heats ``N`` held-out images with the model's own
heating (draws of the true ``s_K`` marginal) and cools ``N`` chains from each of:
  diagonal:  the saved prior (what ``walkback sample`` starts from; trained as a moving average of
             the training operator's end points, while the saved operator is the weights' EMA);
  refit:     a diagonal Gaussian with the end points' own mean and variance;
  low-rank:  a Gaussian with the end points' mean and covariance (top ``R`` principal directions
             plus the diagonal rest: ``LowRankGaussianPrior``, what ``walkback fit-prior
             --start-step K --rank R`` saves);
  heated:    the end points themselves (what a perfect prior would give).
It reports the end points' covariance spectrum, the KL divergence from the low-rank-plus-diagonal
Gaussian to its diagonal (nats, and bits per dimension) and, for each arm's ``samples``, the
MNIST classifier's feature FID, class shares and the pixels outside [-1, 1].

Usage: python experiments/prior_mismatch.py RUN_DIR DATA_ROOT OUT_DIR [--num N] [--rank R]
       [--threads T] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

import walkback
from walkback.evaluation import EvalOptions
from walkback.evaluation.images import evaluate_samples_file
from walkback.evaluation.samples import write_samples
from walkback.runs import load_data
from walkback.sampler import anneal
from walkback.trajectory import walk_away


class _Fixed:
    """A prior whose draws are given states (the heated end points)."""

    def __init__(self, states: torch.Tensor) -> None:
        self.states = states

    def sample(self, num: int, *, generator=None) -> torch.Tensor:
        assert num == len(self.states)
        return self.states.clone()


def _kl_to_diagonal(prior: walkback.LowRankGaussianPrior) -> float:
    """``KL(N(m, C) || N(m, diag C))`` in nats, ``C`` the prior's low-rank-plus-diagonal
    covariance."""
    factor = prior.factor.double()
    cov = torch.diag(prior.var.flatten().double()) + factor.T @ factor
    return 0.5 * float(torch.log(torch.diagonal(cov)).sum() - torch.logdet(cov))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("data_root")
    p.add_argument("out_dir")
    p.add_argument("--num", type=int, default=600)
    p.add_argument("--rank", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache-dir", help="the classifier and reference statistics (default: "
                   "OUT_DIR/cache)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = walkback.load(args.run_dir).eval()
    config = model.config
    config.data.root = args.data_root
    held = load_data(config).heldout[: args.num]
    temps = model.active_temperatures
    clock = time.perf_counter()
    with torch.inference_mode():
        ends = walk_away(model.heating_path(temps), held,
                         generator=torch.Generator().manual_seed(1)).states[-1].float()
    print(f"heated {len(held)} held-out images in {time.perf_counter() - clock:.0f} s", flush=True)
    fit = walkback.LowRankGaussianPrior(ends.shape[1:], args.rank).fit(ends)
    flat = ends.flatten(1).double()
    spectrum = torch.linalg.eigvalsh(torch.cov(flat.T, correction=0)).flip(0)
    dim = ends[0].numel()
    kl = _kl_to_diagonal(fit)
    report: dict = {
        "run_dir": args.run_dir, "num": len(held), "rank": args.rank, "K": len(temps),
        "top_temperature": float(temps[-1]),
        "saved_prior_var_mean": float(model.prior.var.mean()),
        "ends_var_mean": float(flat.var(0, unbiased=False).mean()),
        "ends_top_eigenvalues": [round(float(v), 3) for v in spectrum[:10]],
        "ends_median_eigenvalue": float(spectrum[: len(held) - 1].median()),
        "variance_in_top_rank": float(spectrum[: args.rank].sum() / spectrum.sum()),
        "kl_lowrank_to_diagonal_nats": kl,
        "kl_bits_per_dim": kl / (dim * math.log(2)),
        "arms": {},
    }
    print(json.dumps({k: v for k, v in report.items() if k != "arms"}, indent=1), flush=True)
    refit = walkback.GaussianPrior(ends.shape[1:]).fit(ends)
    # the perfect prior first, then the saved one: the comparison that matters most comes first
    priors = {"heated": _Fixed(ends), "diagonal": model.prior, "low-rank": fit, "refit": refit}
    for name, prior in priors.items():
        clock = time.perf_counter()
        with torch.inference_mode():
            result = anneal(model.operator, prior, temps, len(held),
                            generator=torch.Generator().manual_seed(0))
        seconds = time.perf_counter() - clock
        samples = result.samples.float()
        path = out / f"{name}.npz"
        write_samples(path, samples.clamp(-1, 1), meta={"data": "mnist", "N": len(held), "seed": 0})
        scored = evaluate_samples_file(path, data="mnist", data_root=args.data_root, options=EvalOptions(
            metrics="classes", device="cpu", floor=False, progress=False,
            cache_dir=args.cache_dir or out / "cache"))
        classes = scored["classes"]
        report["arms"][name] = {
            "classifier_fid": classes["classifier_fid"],
            "smallest_class": classes["min_fraction"], "largest_class": classes["max_fraction"],
            "class_fractions": classes["fractions"],
            "outside_fraction": float((samples.abs() > 1).float().mean()),
            "cooling_seconds": seconds,
        }
        print(name, json.dumps(report["arms"][name]), flush=True)
        (out / "report.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
