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
  heated:    the end points themselves (what a perfect prior would give);
  mixture:   a mixture of ``C`` diagonal Gaussians (``MixturePrior``, what ``walkback fit-prior
             --start-step K --components C`` saves) fitted to ``--fit-points`` heated training
             images (not the held-out ones).
``--arms`` picks them (default: all but the mixture); the held-out images are heated only for
``heated``, ``low-rank`` and ``refit``.
It reports the end points' covariance spectrum, the KL divergence from the low-rank-plus-diagonal
Gaussian to its diagonal (nats, and bits per dimension) and, for each arm's ``samples``, the
MNIST classifier's feature FID, class shares and the pixels outside [-1, 1].

Usage: python experiments/prior_mismatch.py RUN_DIR DATA_ROOT OUT_DIR [--num N] [--rank R]
       [--arms LIST] [--components C] [--fit-points N] [--threads T] [--cache-dir DIR]
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


ARMS = ("heated", "diagonal", "low-rank", "refit", "mixture")


def _heat(model: walkback.Walkback, x: torch.Tensor, seed: int) -> torch.Tensor:
    clock = time.perf_counter()
    with torch.inference_mode():
        ends = walk_away(model.heating_path(model.active_temperatures), x,
                         generator=torch.Generator().manual_seed(seed)).states[-1].float()
    print(f"heated {len(x)} images in {time.perf_counter() - clock:.0f} s", flush=True)
    return ends


def _spectrum(model: walkback.Walkback, ends: torch.Tensor,
              fit: walkback.LowRankGaussianPrior) -> dict:
    """The end points' covariance spectrum and the KL of their low-rank ``fit`` to its diagonal."""
    flat = ends.flatten(1).double()
    spectrum = torch.linalg.eigvalsh(torch.cov(flat.T, correction=0)).flip(0)
    kl = _kl_to_diagonal(fit)
    return {
        "saved_prior_var_mean": float(model.prior.var.mean()),
        "ends_var_mean": float(flat.var(0, unbiased=False).mean()),
        "ends_top_eigenvalues": [round(float(v), 3) for v in spectrum[:10]],
        "ends_median_eigenvalue": float(spectrum[: len(ends) - 1].median()),
        "variance_in_top_rank": float(spectrum[: fit.rank].sum() / spectrum.sum()),
        "kl_lowrank_to_diagonal_nats": kl,
        "kl_bits_per_dim": kl / (ends[0].numel() * math.log(2)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("data_root")
    p.add_argument("out_dir")
    p.add_argument("--num", type=int, default=600)
    p.add_argument("--rank", type=int, default=50)
    p.add_argument("--components", type=int, default=10, help="the mixture arm's C")
    p.add_argument("--fit-points", type=int, default=2000, help="training images heated to fit "
                   "the mixture arm (walkback fit-prior heats 10,000)")
    p.add_argument("--arms", default="heated,diagonal,low-rank,refit",
                   help=f"comma list of {', '.join(ARMS)}")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache-dir", help="the classifier and reference statistics (default: "
                   "OUT_DIR/cache)")
    args = p.parse_args()
    arms = args.arms.split(",")
    if unknown := set(arms) - set(ARMS):
        p.error(f"--arms: unknown {sorted(unknown)}")
    torch.set_num_threads(args.threads)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = walkback.load(args.run_dir).eval()
    config = model.config
    config.data.root = args.data_root
    data = load_data(config)
    temps = model.active_temperatures
    report: dict = {"run_dir": args.run_dir, "num": args.num, "rank": args.rank, "K": len(temps),
                    "top_temperature": float(temps[-1]), "arms": {}}
    priors: dict = {}
    if {"heated", "low-rank", "refit"} & set(arms):
        ends = _heat(model, data.heldout[: args.num], seed=1)
        low_rank = walkback.LowRankGaussianPrior(ends.shape[1:], args.rank).fit(ends)
        report.update(_spectrum(model, ends, low_rank))
        print(json.dumps({k: v for k, v in report.items() if k != "arms"}, indent=1), flush=True)
        priors = {"heated": _Fixed(ends), "low-rank": low_rank,
                  "refit": walkback.GaussianPrior(ends.shape[1:]).fit(ends)}
    priors["diagonal"] = model.prior
    if "mixture" in arms:  # fitted to heated training images, not to the held-out ones
        fit_ends = _heat(model, data.train[: args.fit_points], seed=2)
        priors["mixture"] = walkback.MixturePrior(fit_ends.shape[1:], args.components).fit(
            fit_ends, generator=torch.Generator().manual_seed(3))
        report.update(components=args.components, fit_points=len(fit_ends))
    # in the order asked for (the perfect prior first, then the saved one, by default)
    for name in arms:
        prior = priors[name]
        clock = time.perf_counter()
        with torch.inference_mode():
            result = anneal(model.operator, prior, temps, args.num,
                            generator=torch.Generator().manual_seed(0))
        seconds = time.perf_counter() - clock
        samples = result.samples.float()
        path = out / f"{name}.npz"
        write_samples(path, samples.clamp(-1, 1), meta={"data": "mnist", "N": args.num, "seed": 0})
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
