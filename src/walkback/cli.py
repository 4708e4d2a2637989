"""Command line: ``walkback train | sample | evaluate | show-config``.

User errors (``WalkbackError``, bad values, unreadable files) print ONE line
``walkback: error: <message>`` to stderr and return the error's exit code (2 for configuration
errors); set ``WALKBACK_DEBUG=1`` to get the traceback instead.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from . import distributed
from .config import Config, apply_overrides, config_to_json
from .errors import ConfigError, WalkbackError
from .data.images import IMAGE_DATASETS
from .data.toy import TOY_DATASETS
from .evaluation import EvalOptions, evaluate, evaluate_samples_file
from .evaluation.options import DEFAULT_CHAIN_STEPS, IMAGE_METRICS, TOY_METRICS
from .evaluation.report import image_summary
from .evaluation.samples import write_samples
from .evaluation.toy import REPORTED, REPORTED_STATES
from .presets import PRESETS, get_preset
from .model import START_FIT_POINTS, START_PRIOR_FILE
from .prior import describe_form
from .runs import (enable_fast_kernels, extra_temperature, load_data, load_run_config,
                   load_run_model, resolve_device, run_device)
from .streams import StackedRandom
from .train import train

__all__ = ["main", "build_parser"]


SAMPLE_BLOCK = 50  # chains per random stream of `walkback sample`
DIST_TIMEOUT_S = 300.0  # torchrun: how long a process waits for the others
START_HELP = ("start the chains at heating step S <= K, from the Gaussian fit to training data "
              "heated S steps that is saved with the model (S cooling steps instead of K)")


def _count(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer ``>= minimum``."""

    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {raw!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _resolve_config(preset: str | None, sets: list[str]) -> Config:
    """``get_preset(preset)`` with the ``--set`` overrides applied."""
    if preset is None:
        raise ConfigError("--preset is required (choose one of: " + ", ".join(sorted(PRESETS)) + ")")
    return apply_overrides(get_preset(preset), sets)


def _train(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    if args.resume:
        config = load_run_config(run_dir)
        if args.preset is not None and args.preset != config.preset:
            raise ConfigError(f"--preset {args.preset} differs from the run's preset {config.preset}")
        config = apply_overrides(config, args.set)
    else:
        config = _resolve_config(args.preset, args.set)
    result = train(config, run_dir, resume=args.resume, overwrite=args.overwrite,
                   progress=not args.no_progress)
    if not distributed.world().main:
        return 0
    print(f"trained {config.preset} to step {result.step} in {run_dir}")
    print(f"  config:      {run_dir / 'config.json'}")
    print(f"  metrics:     {run_dir / 'metrics.jsonl'}")
    print(f"  checkpoints: {run_dir / 'checkpoints'}")
    print(f"  model (EMA): {run_dir / 'model'}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    """Samples from the saved model alone: its prior, temperatures and (when saved) the prior of
    its part-way start; a toy run's scatter shows generated training points beside them."""
    out = Path(args.out)
    if out.suffix != ".npz":
        raise ConfigError(f"--out {out}: must name an .npz file (the picture is written beside it "
                          f"as {out.with_suffix('.png').name})")
    taken = [p for p in (out, out.with_suffix(".png")) if p.exists()]
    if taken and not args.overwrite:
        raise ConfigError(f"{taken[0]} already exists; pass --overwrite to replace it")
    config = load_run_config(Path(args.run_dir))
    # where and with which kernels `walkback evaluate` draws the same chains
    wanted = run_device(args.device, config.data.name)
    here = distributed.init(wanted, DIST_TIMEOUT_S)
    device = distributed.local_device(wanted)
    enable_fast_kernels(device)
    model = load_run_model(args.run_dir, device=str(device)).eval()
    config = model.config if model.config is not None else config
    if args.sampler is not None:
        if config.method != "ddpm":
            raise ConfigError("--sampler: only for method=ddpm runs (DDIM or ancestral steps)")
        model.operator.eta = 0.0 if args.sampler == "ddim" else 1.0
    extra = args.extra_steps if args.extra_steps is not None else config.sample.extra_steps
    t_extra = extra_temperature(config, args.extra_temperature)
    batch = args.batch_size if args.batch_size is not None else config.sample.batch_size
    start = args.start_step if args.start_step is not None else model.start_step
    # chain i draws from stream i // SAMPLE_BLOCK: the same chains for any batch size and any
    # number of processes (each runs its share of whole blocks; rank 0 gathers and writes)
    first, stop = distributed.share(args.num_samples, SAMPLE_BLOCK)
    parts = ([], [])
    if stop > first:
        streams = StackedRandom(args.seed, first, stop, block=SAMPLE_BLOCK, device=device)
        with torch.no_grad():
            result = model.sample(stop - first, extra_steps=extra, extra_temperature=t_extra,
                                  batch_size=batch, generator=streams, start_step=start,
                                  noise_scale=args.noise_scale)
        parts = ([result.samples.cpu()], [result.states.cpu()])
    gathered = distributed.gather(parts)
    if not here.main:
        return 0
    samples = torch.cat([t for p in gathered for t in p[0]])
    states = torch.cat([t for p in gathered for t in p[1]])
    k = start or len(model.active_temperatures)
    meta = {"run_dir": str(args.run_dir), "data": config.data.name, "method": config.method,
            "K": k, "E": extra, "T_E": t_extra, "seed": args.seed, "N": args.num_samples,
            "reported": REPORTED,
            "states": REPORTED_STATES, "streams": f"chain i: seed {args.seed}, block "
            f"{SAMPLE_BLOCK} (streams.StackedRandom)", **({"start_step": start} if start else {}),
            **({"sampler": args.sampler} if args.sampler else {}),
            **({"noise_scale": args.noise_scale} if args.noise_scale != 1 else {})}
    toy = config.data.name in TOY_DATASETS
    reference = load_data(config).train[: args.num_samples] if toy else None  # generated
    write_samples(out, samples, states=states, meta=meta, reference=reference)
    print(f"wrote {args.num_samples} samples (K={k}, E={extra}, seed {args.seed}) to {out}"
          f" and {out.with_suffix('.png')}")
    return 0


def _fit_prior(args: argparse.Namespace) -> int:
    """Fit the prior of a part-way start once, from the training data, and save it with the
    model, so that sampling from that step needs the saved model alone."""
    run_dir = Path(args.run_dir)
    device = str(resolve_device(args.device, setting="--device"))
    model = load_run_model(run_dir, device=device).eval()
    config = model.config if model.config is not None else load_run_config(run_dir)
    folder = run_dir / "model" if (run_dir / "model").is_dir() else run_dir
    if model.start_step and not args.overwrite:
        raise ConfigError(f"{folder / START_PRIOR_FILE} already holds the prior of start step "
                          f"{model.start_step}; pass --overwrite to replace it")
    root = [f"data.root={args.data_root}"] if args.data_root is not None else []
    train_x = load_data(apply_overrides(config, root)).train
    if args.rank is None and args.components is None:  # the run's own
        rank, components = config.sample.start_rank, config.sample.start_components
    else:
        rank, components = args.rank or 0, args.components or 0
    with torch.no_grad():
        model.fit_start_prior(args.start_step, train_x, seed=args.seed,
                              batch_size=config.sample.batch_size, rank=rank,
                              components=components)
    model.save_start_prior(folder)
    points = min(len(train_x), START_FIT_POINTS)
    print(f"fitted the prior of start step {args.start_step} ({describe_form(rank, components)})"
          f" to {points} heated training points; wrote {folder / START_PRIOR_FILE}")
    return 0


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def _summary(result: dict) -> list[str]:
    """A short human summary of an ``eval.json`` dict."""
    lines = [f"{result['data']['name']}: K={result['K']}, seed {result['seed']}"]
    if "chain" in result:
        chain = result["chain"]["protocol"]
        lines[0] += f", {chain['num_samples']} chains; reported: {chain['reported']}"
    for snap in result.get("chain", {}).get("snapshots", []):
        m, parts = snap["metrics"], [f"  {snap['label']:<6} (E={snap['E']})"]
        if "mode_weights" in m:
            weights = [w for w in m["mode_weights"] if w is not None]
            parts.append(f"within 3 std {_fmt(m['fraction_within_3std'])}, modes "
                         f"{m['modes_covered']}/{m['num_modes']}, weight min "
                         f"{_fmt(min(weights, default=None))} max {_fmt(max(weights, default=None))}")
        parts.append(f"nearest ratio {_fmt(m['nearest_distance_ratio'])}, MMD {_fmt(m['mmd'], '.2e')}")
        if "radius_error_median" in m:
            parts.append(f"median |r - 1| {_fmt(m['radius_error_median'], '.4f')}")
        moved = snap["mixing"]["mean_move_from_previous"]
        if moved is not None:
            parts.append(f"moved {_fmt(moved)} since E={snap['mixing']['previous_E']}")
        lines.append("; ".join(parts))
    if "bound" in result:
        bound = result["bound"]["protocol"]
        estimates = ", ".join(f"M={b['num_paths']} {_fmt(b['log_bound'])}"
                              for b in result["bound"]["estimates"])
        lines.append(f"  bound on {bound['num_points']} held-out points (nats/point): {estimates}")
    return lines


IMAGE_FLAGS = ("bound_points", "chain_steps", "batch_size", "fid_weights", "cache_dir",
               "data", "data_root", "resolution", "out_dir", "amp", "start_step")


def _eval_options(args: argparse.Namespace, command: str) -> EvalOptions:
    return EvalOptions(
        metrics=args.metrics, num_samples=args.num_samples, num_paths=args.num_paths,
        bound_points=args.bound_points, chain_steps=args.chain_steps or DEFAULT_CHAIN_STEPS,
        seed=args.seed, device=args.device or "auto", batch_size=args.batch_size,
        cache_dir=args.cache_dir, fid_weights=args.fid_weights, data_root=args.data_root,
        resolution=args.resolution, progress=not args.no_progress, command=command,
        amp=args.amp or "none", floor=not args.no_floor, report=args.report or "samples",
        start_step=args.start_step, extra_temperature=args.extra_temperature)


def _guard_evaluation(out: Path, overwrite: bool) -> None:
    """An evaluation writes ``eval.json`` and ``figures/`` together: refuse to replace an earlier
    one unless ``--overwrite``, before anything is computed or written."""
    if (out / "eval.json").exists() and not overwrite:
        raise ConfigError(f"{out / 'eval.json'} already exists; pass --overwrite to replace it and "
                          "the figures beside it")


def _evaluate(args: argparse.Namespace) -> int:
    """A run -> ``evaluation.evaluate``; ``--samples`` -> ``evaluation.evaluate_samples_file``."""
    command = "walkback " + shlex.join(args.argv)
    if args.samples is None:
        for flag in ("data", "resolution", "out_dir"):
            if getattr(args, flag) is not None:
                raise ConfigError(f"--{flag.replace('_', '-')} is for --samples; a run's data set "
                                  "and folder come from the run")
        config = load_run_config(Path(args.run_dir))
        _guard_evaluation(Path(args.run_dir), args.overwrite)
        if config.data.name in TOY_DATASETS:
            given = [f"--{n.replace('_', '-')}" for n in IMAGE_FLAGS if getattr(args, n) is not None]
            if given:
                raise ConfigError(f"{' '.join(given)}: only for image runs and samples files, "
                                  f"not the toy run in {args.run_dir}")
        result = evaluate(args.run_dir, options=_eval_options(args, command))
        out = Path(args.run_dir)
        if not result:  # torchrun: another process (rank 0) reports
            return 0
        if config.data.name in TOY_DATASETS:
            print("\n".join(_summary(result)))
            print(f"wrote {out / 'eval.json'} and {out / 'figures'}/")
            return 0
    else:
        if args.data is None:
            raise ConfigError("--samples needs --data NAME (the data set to compare with)")
        if args.report is not None or args.start_step is not None:
            raise ConfigError("--report and --start-step are for a run's chains; a samples file is "
                              "scored as stored")
        samples = Path(args.samples)
        out = Path(args.out_dir) if args.out_dir else samples.parent / f"{samples.stem}_eval"
        _guard_evaluation(out, args.overwrite)
        result = evaluate_samples_file(samples, data=args.data, data_root=args.data_root or "data",
                                       options=_eval_options(args, command), out_dir=out,
                                       key=args.samples_key)
    if not result:  # torchrun: another process (rank 0) reports
        return 0
    print("\n".join(image_summary(result)))
    print(f"wrote {out / 'eval.json'} and {out / 'figures'}/")
    return 0


def _finite(*, zero: bool) -> Callable[[str], float]:
    """An argparse type: a finite number > 0 (``>= 0`` with ``zero``)."""

    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {raw!r}") from None
        if not (0 <= value if zero else 0 < value) or not value < math.inf:
            raise argparse.ArgumentTypeError(
                f"must be a finite number {'>=' if zero else '>'} 0, got {raw}")
        return value

    return parse


_positive = _finite(zero=False)
_non_negative = _finite(zero=True)


def _positive_minutes(raw: str) -> float:
    """An argparse type: one number of minutes > 0."""
    values = _minutes_list(raw)
    if len(values) != 1:
        raise argparse.ArgumentTypeError(f"expected one number of minutes, got {raw!r}")
    return values[0]


def _minutes_list(raw: str) -> list[float]:
    """An argparse type: comma-separated positive minutes."""
    try:
        values = [float(v) for v in raw.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected minutes such as 1,2,5, got {raw!r}") from None
    if not values or any(not 0 < v < float("inf") for v in values):
        raise argparse.ArgumentTypeError(f"minutes must be > 0, got {raw!r}")
    return values


def _variants(specs: list[list[str]]) -> dict[str, tuple[str, list[str]]]:
    """``--variant LABEL PRESET KEY=VALUE ...`` items as ``label -> (preset, overrides)``."""
    variants: dict[str, tuple[str, list[str]]] = {}
    for spec in specs:
        if len(spec) < 2:
            raise ConfigError(f"--variant {' '.join(spec)}: needs LABEL PRESET [KEY=VALUE ...]")
        label, preset, *sets = spec
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", label):
            raise ConfigError(f"--variant {label!r}: a label is letters, digits, '.', '_', '-'")
        if label in variants:
            raise ConfigError(f"--variant {label!r} is given twice")
        bad = [item for item in sets if "=" not in item]
        if bad:
            raise ConfigError(f"--variant {label}: {bad[0]!r} is not KEY=VALUE")
        variants[label] = (preset, sets)
    return variants


def _compare(args: argparse.Namespace) -> int:
    from .compare import CompareOptions, compare

    presets = [p.strip() for p in (args.presets or "").split(",") if p.strip()]
    variants = _variants(args.variant)
    for name in [*presets, *(preset for preset, _ in variants.values())]:
        get_preset(name)  # unknown names fail before any training
    if not presets and not variants:
        raise ConfigError("compare: give --presets or --variant")
    if (args.minutes is None) == (args.steps is None):
        raise ConfigError("compare: give --minutes (equal time) or --steps (equal minibatches)")
    if args.gpus is not None and args.gpus > args.jobs:
        raise ConfigError(f"compare: --gpus {args.gpus} is more than --jobs {args.jobs}")
    out = Path(args.out_dir)
    if (out / "compare.json").exists() and not args.overwrite:
        raise ConfigError(f"{out / 'compare.json'} already exists; pass --overwrite to replace "
                          "the table (finished arms are kept and not retrained)")
    options = CompareOptions(
        presets=presets, minutes=args.minutes, steps=args.steps, variants=variants, out_dir=out,
        seeds=[int(s) for s in args.seeds.split(",")], save_at=args.save_at, sets=args.set,
        num_samples=args.num_samples, bound_points=args.bound_points, device=args.device,
        fid_weights=args.fid_weights, cache_dir=args.cache_dir, data_root=args.data_root,
        amp=args.amp or "none", progress=not args.no_progress,
        command="walkback " + shlex.join(args.argv), jobs=args.jobs, gpus=args.gpus,
        chain_steps=args.chain_steps)
    result = compare(options)
    print((out / "compare.md").read_text().rstrip())
    print(f"wrote {out / 'compare.json'}, {out / 'compare.md'} and {out / 'compare.png'} "
          f"({len(result['arms'])} arms)")
    return 0


def _show_config(args: argparse.Namespace) -> int:
    if args.run_dir is not None:
        if args.preset is not None:
            raise ConfigError("show-config takes --preset or --run-dir, not both")
        config = apply_overrides(load_run_config(Path(args.run_dir)), args.set)
    else:
        config = _resolve_config(args.preset, args.set)
    print(config_to_json(config))
    return 0


def _add_config_args(parser: argparse.ArgumentParser, *, preset_required: bool) -> None:
    parser.add_argument("--preset", required=preset_required, metavar="NAME",
                        help="one of: " + ", ".join(sorted(PRESETS)))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. train.steps=500 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="walkback", description="Variational Walkback (Goyal et al. 2017)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a preset into a run folder")
    _add_config_args(p, preset_required=False)
    p.add_argument("--run-dir", required=True, metavar="DIR")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the run in DIR")
    mode.add_argument("--overwrite", action="store_true", help="replace the run in DIR")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_train)

    p = sub.add_parser("sample", help="draw samples from a trained run")
    p.add_argument("--run-dir", required=True, metavar="DIR")
    p.add_argument("--num-samples", required=True, type=_count(1), metavar="N")
    p.add_argument("--extra-steps", type=_count(0), metavar="E", help="steps at T=1 after cooling")
    p.add_argument("--extra-temperature", type=_positive, metavar="T",
                   help="VW: the temperature of those steps (default: the run's "
                   "sample.extra_temperature, 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=_count(1), metavar="B")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="default: cpu for toy runs, auto (the GPU if there is one) for images")
    p.add_argument("--out", required=True, metavar="FILE.npz")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out and its .png")
    p.add_argument("--start-step", type=_count(0), metavar="S", help=START_HELP + "; 0 or K: "
                   "from the top (default: the saved start step, if any)")
    p.add_argument("--sampler", choices=("ddim", "ancestral"),
                   help="method=ddpm runs: DDIM steps (eta = 0) or ancestral DDPM steps "
                   "(default: the run's diffusion.eta)")
    p.add_argument("--noise-scale", type=_non_negative, default=1.0, metavar="ETA",
                   help="multiply the noise standard deviation of the K cooling steps by ETA "
                   "(default 1: the operator's own law; 0: each step moves to its mean)")
    p.set_defaults(handler=_sample)

    p = sub.add_parser("fit-prior", help="fit and save the prior of a part-way start (reads the "
                       "training data once)")
    p.add_argument("--run-dir", required=True, metavar="DIR")
    p.add_argument("--start-step", required=True, type=_count(1), metavar="S",
                   help="the heating step the chains will start from")
    p.add_argument("--data-root", metavar="DIR", help="the training data (default: the run's "
                   "data.root)")
    p.add_argument("--rank", type=_count(0), metavar="R", help="principal directions of the "
                   "heated points' covariance added to the diagonal (default: the run's "
                   "sample.start_rank)")
    p.add_argument("--components", type=_count(0), metavar="C", help="a mixture of C diagonal "
                   "Gaussians fitted by EM instead (default: the run's sample.start_components; "
                   "either flag sets the other's default to 0)")
    p.add_argument("--seed", type=int, default=0, help="the fit's heating noise: seed + 5")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--overwrite", action="store_true", help="replace a saved start prior")
    p.set_defaults(handler=_fit_prior)

    p = sub.add_parser("evaluate", help="metrics and figures of a trained run or a samples file")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-dir", metavar="DIR", help="a trained run (toy or image)")
    source.add_argument("--samples", metavar="FILE.npz",
                        help="score a samples file: float (N, C, H, W) in [-1, 1], uint8 (N, C, H, W) "
                             "or uint8 (N, H, W, C); needs --data")
    p.add_argument("--samples-key", default="samples", metavar="KEY", help="array in the .npz")
    p.add_argument("--data", choices=IMAGE_DATASETS, help="--samples: the data set to compare with")
    p.add_argument("--data-root", metavar="DIR", help="image data folder (default: the run's "
                   "data.root; for --samples: data)")
    p.add_argument("--resolution", type=_count(8), metavar="PX", help="--samples of CelebA: side (64)")
    p.add_argument("--out-dir", metavar="DIR", help="--samples: output folder (default <stem>_eval)")
    p.add_argument("--metrics", metavar="LIST",
                   help="comma list; 2-D runs: " + ",".join(TOY_METRICS) + " (default both); "
                   "images: " + ",".join(IMAGE_METRICS)
                   + " (default fid,kid[,classes for MNIST][,bound,chain for a run])")
    p.add_argument("--num-samples", type=_count(2), metavar="N")
    p.add_argument("--num-paths", type=_count(1), metavar="M", help="heating paths of the IW bound")
    p.add_argument("--bound-points", type=_count(1), metavar="N", help="images: first N test images")
    p.add_argument("--chain-steps", metavar="LIST",
                   help=f"images: extra steps E at T=1, integers or multiples of K ({DEFAULT_CHAIN_STEPS})")
    p.add_argument("--extra-temperature", type=_positive, metavar="T",
                   help="VW runs: the temperature of the steps past K (default: the run's "
                   "sample.extra_temperature, 1)")
    p.add_argument("--batch-size", type=_count(1), metavar="B", help="images (results do not depend on it)")
    p.add_argument("--fid-weights", metavar="PATH", help="FID Inception weights (.npz, .pt, .pth)")
    p.add_argument("--no-floor", action="store_true",
                   help="images: skip the real-vs-real floor (it reads the floor split)")
    p.add_argument("--amp", choices=("none", "bf16"),
                   help="images: sample under bf16 autocast (GPU; the bound stays float32)")
    p.add_argument("--report", choices=("samples", "states"),
                   help="runs: score the samples (the last step's means, the noise-free output; "
                   "default) or the chain states")
    p.add_argument("--start-step", type=_count(0), metavar="S", help="image runs: " + START_HELP
                   + " (saved, or fitted now to the training images); 0: from the top")
    p.add_argument("--cache-dir", metavar="DIR", help="reference statistics and the MNIST classifier "
                   "(default $WALKBACK_CACHE or ~/.cache/walkback)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"),
                   help="default: cpu for toy runs, auto (the GPU if there is one) for images")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier evaluation (eval.json and figures/) in the output folder")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_evaluate)

    p = sub.add_parser("compare", help="train presets for the same minutes each, evaluate them as "
                       "users get them, and write a table and a plot")
    p.add_argument("--presets", metavar="A,B,...", help="presets on one data set")
    p.add_argument("--variant", nargs="+", action="append", default=[],
                   metavar="LABEL PRESET KEY=VALUE",
                   help="one more arm: PRESET with these overrides, named LABEL (repeatable)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=_positive_minutes, metavar="M",
                        help="training minutes per arm")
    budget.add_argument("--steps", type=_count(1), metavar="N",
                        help="instead of --minutes: minibatches per arm (a screening at equal "
                        "updates)")
    p.add_argument("--seeds", default="0", metavar="LIST", help="seeds per preset (e.g. 0,1,2)")
    p.add_argument("--save-at", type=_minutes_list, metavar="LIST",
                   help="minutes at which each arm's model is saved and scored (default: M/5 ...)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key in every arm (repeatable)")
    p.add_argument("--out-dir", required=True, metavar="DIR")
    p.add_argument("--overwrite", action="store_true", help="replace an existing table")
    p.add_argument("--num-samples", type=_count(2), metavar="N")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--fid-weights", metavar="PATH")
    p.add_argument("--cache-dir", metavar="DIR")
    p.add_argument("--data-root", metavar="DIR")
    p.add_argument("--amp", choices=("none", "bf16"), help="images: sample under bf16 autocast")
    p.add_argument("--chain-steps", default="0,K,10K", metavar="LIST",
                   help="images: extra T = 1 steps at which the chains are scored (K: the "
                   "heating length)")
    p.add_argument("--bound-points", type=_count(1), default=1000, metavar="N",
                   help="images: test images of the bound (one path each)")
    p.add_argument("--jobs", type=_count(1), default=1, metavar="N",
                   help="train N arms at once, each in its own process on its own GPU")
    p.add_argument("--gpus", type=_count(1), metavar="G",
                   help="the GPUs the --jobs processes share (arm i on GPU i mod G; default: "
                   "one per job); with --steps several arms may share one GPU")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_compare)

    p = sub.add_parser("show-config", help="print the resolved config as JSON")
    _add_config_args(p, preset_required=False)
    p.add_argument("--run-dir", metavar="DIR", help="show the config of this run instead")
    p.set_defaults(handler=_show_config)
    return parser


def _fail(message: str, code: int) -> int:
    print("walkback: error: " + " ".join(message.split()), file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``walkback`` command; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    warnings.formatwarning = lambda message, *rest, **kw: f"walkback: warning: {message}\n"
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.handler(args)
    except BrokenPipeError:  # e.g. `walkback show-config ... | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        if os.environ.get("WALKBACK_DEBUG"):
            raise
        if isinstance(exc, WalkbackError):
            return _fail(str(exc), exc.exit_code)
        if isinstance(exc, ValueError):  # the library's checks of user-given values
            return _fail(str(exc), 2)
        if isinstance(exc, OSError):  # unreadable / unwritable paths
            return _fail(str(exc), 1)
        raise
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    finally:
        distributed.shutdown()  # under torchrun: leave the process group


if __name__ == "__main__":
    sys.exit(main())
