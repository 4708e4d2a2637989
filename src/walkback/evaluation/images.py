"""Evaluation of image runs and samples files (docs/evaluation.md): FID / KID with the FID Inception,
the MNIST class histogram and classifier FID, the variational bound in bits/dim, long chains with
mixing, and the legacy Parzen log-likelihood; ``eval.json`` (every number with its protocol) and
figures.

- ``evaluate_image_run(run_dir, options)`` (reached through ``evaluation.evaluate``): one set of
  chains from the run's model gives the samples (``E = sample.extra_steps``) and the chain
  snapshots; writes ``run_dir/eval.json`` and ``run_dir/figures/``. ``--metrics bound`` alone
  runs no chain.
- ``evaluate_samples_file(path, data=..., data_root=..., options=...)``: scores any generator's
  samples (``evaluation.samples`` lists the accepted layouts); writes ``<stem>_eval/`` beside it.
Nothing is written before every metric was computed; nothing depends on the batch size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from .. import distributed
from ..atomic import sha256_file
from ..config import Config
from ..data.images import CELEBA_DEFAULT_RESOLUTION, IMAGE_DATASETS, to_model_space
from ..errors import ConfigError
from ..inpaint import half_mask, inpaint
from ..metrics.fid import MetricsError
from ..model import (
    IMAGE_SHAPES, MODEL_FILE, START_FIT_POINTS, START_FIT_SEED_OFFSET, START_PRIOR_FILE, Walkback,
    start_part_way,
)
from ..pictures import chain_gif, inpaint_figure, walk_strip
from ..prior import describe_form
from ..runs import (amp_autocast, enable_fast_kernels, extra_temperature, load_run_config,
                    load_run_model, resolve_device)
from ..streams import StackedRandom
from . import figures as F
from .chains import parse_chain_steps, run_chains
from .context import ImageData, build_context, fid_splits, real_floor
from .features import default_cache_dir
from .options import EvalOptions, resolve_metrics
from .plans import chain_figures, class_fractions, sample_figures
from .quality import QualityContext, sample_quality
from .report import caption, machine, read_metrics, write_outputs
from .samples import load_samples_file
from .sections import (
    REPORTED, REPORTED_STATES, bound_section, chain_section, parzen_section, quality_sections,
)

__all__ = ["evaluate_image_run", "evaluate_samples_file"]

DIST_TIMEOUT_S = 600.0  # torchrun: how long a process waits for the others


def _cache_dir(options: EvalOptions) -> Path:
    return Path(options.cache_dir).expanduser() if options.cache_dir else default_cache_dir()


def _context(data: ImageData, metrics: Sequence[str], options: EvalOptions,
             device: torch.device) -> tuple[QualityContext, dict]:
    return build_context(data, set(metrics), cache_dir=_cache_dir(options), device=device,
                         seed=options.seed + 3, progress=options.progress,
                         fid_weights=options.fid_weights,
                         feature_net=options.feature_net, classifier=options.classifier,
                         classifier_epochs=options.classifier_epochs)


def _header(kind: str, device: torch.device, options: EvalOptions, metrics: list[str]) -> dict:
    return {"kind": kind, "command": options.command, "machine": machine(device),
            "seed": options.seed, "metrics": metrics, "sampling_amp": options.amp}


def _copy(data: ImageData, metrics: Sequence[str]) -> dict:
    """The data copy a figure refers to: the reference split of the sample metrics, else test."""
    split = fid_splits(data.name)[0] if {"fid", "kid", "classes", "parzen"} & set(metrics) else "test"
    images = data.split(split)
    return {"data": data.name, "split": split, "source": images.source, "checksum": images.checksum}


def _quality_results(images: torch.Tensor, ctx: QualityContext, networks: dict, data: ImageData,
                     base: dict, metrics: list[str], options: EvalOptions,
                     quality: dict | None = None) -> tuple[dict, dict]:
    """Sample-quality sections (with the real-vs-real floor), Parzen, and their figures."""
    quality = quality if quality is not None else sample_quality(images, ctx)[0]
    sample_metrics = {"fid", "kid", "classes"} & set(metrics)
    quality = {k: v for k, v in quality.items() if k in sample_metrics}
    floor = (real_floor(data, ctx, len(images), cache_dir=_cache_dir(options))
             if quality and options.floor else None)
    result = quality_sections(quality, floor, base, networks)
    if "parzen" in metrics:
        result["parzen"] = parzen_section(images, data, base, device=ctx.device,
                                          progress=options.progress)
    labels = data.split("test").labels if "classes" in quality else None
    if labels is not None:
        result["classes"]["reference"] = {"split": "test", "labels": "true labels",
                                          "fractions": class_fractions(labels)}
    return result, sample_figures(images, quality, floor, base, labels)


def _check_shape(model, data: ImageData, split: str) -> None:
    want, have = tuple(model.prior.data_shape), data.split(split).image_shape
    if want != have:
        raise MetricsError(f"{data.split(split).source}: images {have} but the model works on {want}")


def _bound_results(model, data: ImageData, options: EvalOptions, config: Config,
                   batch: int) -> tuple[dict, dict]:
    """The bound for M = 1 and M = num_paths on the test split, and bound_steps.png (M = 1)."""
    ms = list(dict.fromkeys((1, options.num_paths or config.sample.num_paths)))
    section = bound_section(model.bound_model(), data, "test", options.bound_points, ms,
                            seed=options.seed + 1, batch_size=batch, block=options.block,
                            progress=options.progress)
    if section is None:  # torchrun: rank 0 reports the gathered estimate
        return None, {}
    est, p = section["estimates"][0], section["protocol"]
    title = caption(p) + f", M=1: {est['bits_per_dim']:.3f} bits/dim"

    def draw(path: Path) -> None:
        F.plot_step_bits(est["step_bits_per_dim"], est["prior_bits_per_dim"],
                         est["constant_bits_per_dim"], path, title=title)

    return section, {"bound_steps": (draw, {**p, "M": 1})}


def _run_header(run_dir: Path, device: torch.device, options: EvalOptions, metrics: list[str],
                k: int) -> dict:
    return {**_header("image run", device, options, metrics), "run_dir": str(run_dir),
            "model_sha256": sha256_file(run_dir / "model" / MODEL_FILE),
            "train_step": _train_step(run_dir), "K": k}


def evaluate_image_run(run_dir: str | Path, options: EvalOptions | None = None) -> dict:
    """Evaluate the image run in ``run_dir`` (module docstring); returns the eval.json dict."""
    options, run_dir = options or EvalOptions(), Path(run_dir)
    config: Config = load_run_config(run_dir)
    metrics = resolve_metrics(options.metrics, config.data.name, has_model=True)
    here = distributed.init(resolve_device(options.device, setting="--device"), DIST_TIMEOUT_S)
    device = distributed.local_device(resolve_device(options.device, setting="--device"))
    enable_fast_kernels(device)
    model = load_run_model(run_dir, device=str(device)).eval()
    data = ImageData(config.data.name, options.data_root or config.data.root,
                     config.data.resolution or None)
    _check_shape(model, data, "test")
    start = None
    if options.start_step is not None or model.start_step:
        model, start = _start_part_way(model, data, options, device)
    k = len(model.active_temperatures)
    batch = options.batch_size or config.sample.batch_size
    result = {**_run_header(run_dir, device, options, metrics, k),
              **({"start": start} if start else {})}
    figures: dict = {}
    sampling = bool(set(metrics) - {"bound"})  # every metric but the bound scores samples
    t_extra = extra_temperature(config, options.extra_temperature) if sampling else 1.0
    if sampling:
        sections, figures = _sample_results(model, data, options, metrics, config, device,
                                            t_extra)
        result.update(sections)
    if "bound" in metrics:
        result["bound"], bound_figures = _bound_results(model, data, options, config, batch)
        figures.update(bound_figures)
    if not here.main:  # torchrun: the chains and the bound were shared; rank 0 reports
        return {}
    if sampling:
        figures.update(_pictures(model, data, options.seed))
    result["data"] = data.describe()
    with _sampling_autocast(options, device):
        result = write_outputs(run_dir, result, figures)
        if sampling:
            chain_gif(model, run_dir / "figures" / "chain.gif", steps_past_k=10 * k,
                      frames=min(60, 11 * k + 1),
                      extra_temperature=t_extra,
                      generator=torch.Generator(device).manual_seed(options.seed))
    return result


def _shared_context(data: ImageData, metrics: list[str], options: EvalOptions,
                    device: torch.device) -> tuple[QualityContext, dict]:
    """The quality context on every process: rank 0 first (it computes and caches the reference
    features and the MNIST classifier when they are not cached yet), then the others (which read
    them); the sample features are then shared (``QualityContext.shared``)."""
    main = distributed.world().main
    ctx, networks = _context(data, metrics, options, device) if main else (None, None)
    distributed.barrier()
    if not main:
        ctx, networks = _context(data, metrics, options, device)
    ctx.shared = True
    return ctx, networks


def _sample_results(model: Walkback, data: ImageData, options: EvalOptions, metrics: list[str],
                    config: Config, device: torch.device,
                    t_extra: float) -> tuple[dict, dict]:
    """One set of chains gives the samples (``E = sample.extra_steps``) and every chain snapshot
    (the steps past K at ``T_E = t_extra``); their quality sections and figures."""
    k = len(model.active_temperatures)
    es = parse_chain_steps(options.chain_steps, k) if "chain" in metrics else []
    n, e_main = options.num_samples or config.sample.num_samples, config.sample.extra_steps
    first, stop = distributed.share(n, options.block)  # this process's chains (all, alone)
    streams = StackedRandom(options.seed, first, stop, block=options.block, device=device)
    with _sampling_autocast(options, device):
        chains = run_chains(model, n, sorted({e_main, *es}), generator=streams,
                            batch_size=options.batch_size or config.sample.batch_size,
                            progress=options.progress, report=options.report,
                            extra_temperature=t_extra)
    ctx, networks = _shared_context(data, metrics, options, device)
    quality = {s.extra_steps: sample_quality(s.images, ctx, desc=f"E={s.extra_steps}")
               for s in chains.snapshots if s.extra_steps == e_main or "chain" in metrics}
    if not distributed.world().main:  # torchrun: rank 0 reports
        return {}, {}
    base = {**_copy(data, metrics), "num_samples": n, "K": k, "E": e_main, "T_E": t_extra,
            "seed": options.seed,
            "reported": REPORTED_STATES if options.report == "states" else REPORTED}
    main = chains.at(e_main)
    sections = {"samples": {"protocol": base, "nonfinite_fraction": main.nonfinite_fraction,
                            "outside_fraction": main.outside_fraction}}
    quality_part, figures = _quality_results(main.images, ctx, networks, data, base, metrics,
                                             options, quality[e_main][0])
    sections.update(quality_part)
    if "chain" in metrics:
        sections["chain"] = chain_section(chains, quality,
                                          {x: v for x, v in base.items() if x != "E"})
        figures.update(chain_figures(chains, sections["chain"], base))
    return sections, figures


def _start_part_way(model: Walkback, data: ImageData, options: EvalOptions,
                    device: torch.device) -> tuple[Walkback, dict]:
    """The chains' part-way start, with the protocol that eval.json records: the prior saved with
    the model for its start step (``--start-step`` left out or equal to it), else
    ``start_part_way`` fitted to the training images now."""
    saved, trained_k = model.start_step, len(model.active_temperatures)
    step = options.start_step if options.start_step is not None else saved
    if step == 0:
        return model, {"start_step": 0, "trained_K": trained_k,
                       "prior": "the top prior learned in training"}
    if step == saved:
        return model.start_at(step), {"start_step": step, "trained_K": trained_k,
                                      "prior": f"saved with the model ({START_PRIOR_FILE})"}
    x = to_model_space(data.split("train").images[:START_FIT_POINTS]).to(device)
    sample = model.config.sample if model.config is not None else None
    rank, components = (sample.start_rank, sample.start_components) if sample else (0, 0)
    with _sampling_autocast(options, device):
        model = start_part_way(model, x, step, seed=options.seed,
                               batch_size=options.batch_size or 1000, rank=rank,
                               components=components)
    return model, {"start_step": step, "trained_K": trained_k,
                   "prior": f"{describe_form(rank, components)} fit to {len(x)} train images "
                            f"heated {step} steps",
                   "fit_seed": options.seed + START_FIT_SEED_OFFSET}


def _sampling_autocast(options: EvalOptions, device: torch.device) -> torch.autocast:
    """bf16 autocast of the backbone for sampling when ``--amp bf16`` (densities stay float32)."""
    return amp_autocast(device, options.amp)


def _pictures(model: Walkback, data: ImageData, seed: int) -> dict:
    """walk_strip.png (8 test images heated, then cooling chains) and inpaint_top / inpaint_left
    .png (6 test images, half of each clamped, 4 completions each)."""
    device = model.temperatures.device
    x = to_model_space(data.split("test").images[:8]).to(device)
    strip_p = {"data": data.name, "split": "test", "num_points": 8, "seed": seed}
    columns = min(8, len(model.active_temperatures) + 1)
    figures = {"walk_strip": (lambda path: walk_strip(
        model, x, path, num_columns=columns, generator=torch.Generator(device).manual_seed(seed)),
        {**strip_p, "columns": columns})}
    for side in ("top", "left"):
        p = {**strip_p, "num_points": 6, "known": side, "completions": 4,
             "clamped": "known half set to the data after every step"}

        def draw(path: Path, side: str = side) -> None:
            result = inpaint(model.operator, model.prior, model.active_temperatures, x[:6],
                             half_mask(tuple(x.shape[1:]), side).to(device), completions=4,
                             generator=torch.Generator(device).manual_seed(seed))
            inpaint_figure(result, x[:6], path)

        figures[f"inpaint_{side}"] = (draw, p)
    return figures


def _train_step(run_dir: Path) -> int | None:
    records = read_metrics(run_dir / "metrics.jsonl")
    return records[-1].get("step") if records else None


def _image_shape(name: str, resolution: int | None) -> tuple[int, int, int]:
    if name not in IMAGE_DATASETS:
        raise ConfigError(f"--data {name}: not an image data set; choose one of "
                          f"{', '.join(IMAGE_DATASETS)}")
    side = resolution or CELEBA_DEFAULT_RESOLUTION
    return IMAGE_SHAPES.get(name, (3, side, side))


def evaluate_samples_file(path: str | Path, *, data: str, data_root: str,
                          options: EvalOptions | None = None, out_dir: str | Path | None = None,
                          key: str = "samples") -> dict:
    """Score the samples in ``path`` against data set ``data`` under ``data_root``; writes
    ``out_dir`` (default ``<parent>/<stem>_eval``)/eval.json and figures; returns the dict."""
    options, path = options or EvalOptions(), Path(path)
    metrics = resolve_metrics(options.metrics, data, has_model=False)
    if not distributed.world().main:  # torchrun: a samples file is scored by rank 0 alone
        return {}
    device = resolve_device(options.device, setting="--device")
    loaded = load_samples_file(path, _image_shape(data, options.resolution), key=key)
    images = loaded.images
    if options.num_samples is not None:
        if options.num_samples > len(images):
            raise MetricsError(f"{path}: --num-samples {options.num_samples} but the file holds "
                               f"{len(images)} samples")
        images = images[: options.num_samples]
    image_data = ImageData(data, data_root, options.resolution if data == "celeba" else None)
    ctx, networks = _context(image_data, metrics, options, device)
    meta = loaded.meta
    base = {**_copy(image_data, metrics), "num_samples": len(images), "K": meta.get("K"),
            "E": meta.get("E"), **({"T_E": meta["T_E"]} if "T_E" in meta else {}),
            **({"noise_scale": meta["noise_scale"]} if "noise_scale" in meta else {}),
            "seed": meta.get("seed"), "samples_file": str(path),
            "samples_sha256": loaded.sha256, "key": loaded.key, "layout": loaded.layout,
            "reported": meta.get("reported", "as stored in the file")}
    result = {**_header("samples file", device, options, metrics), "samples_file": str(path),
              "samples": {"protocol": base, "warnings": loaded.warnings, "meta": meta}}
    sections, figures = _quality_results(images, ctx, networks, image_data, base, metrics, options)
    result.update(sections)
    result["data"] = image_data.describe()
    out = Path(out_dir) if out_dir is not None else path.parent / f"{path.stem}_eval"
    return write_outputs(out, result, figures)
