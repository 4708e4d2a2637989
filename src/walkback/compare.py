"""Equal-time comparison of presets (docs/evaluation.md, "Comparing methods").

Every arm (a preset, or a variant: a preset with overrides of its own, and a seed) trains for the
same wall-clock minutes on the same kind of device through the one training loop
(``train.time_limit_s``), saving its EMA model at fixed minutes (``train.save_minutes``): one
after the other, or ``jobs`` at a time as separate ``walkback train`` processes, arm ``i`` of a
wave on GPU ``i mod gpus`` (by default one arm per GPU, so each still has a whole device). With
``steps`` instead of minutes the arms train for the same number of minibatches: a screening of
variants, where several arms may share a GPU (``gpus`` < ``jobs``) since only their updates are
compared. Then each arm's final model is evaluated as a user gets
it (``samples``: the noise-free output of ``model.sample``) by ``evaluation.evaluate``: images
on FID, KID, the bound in bits/dim and FID after E = 0 / K / 10K extra steps at T = 1, toys on
the toy metrics and the bound; every saved model gets the sample metric again (FID, or the toy
metrics), for the metric-against-minutes plot. Throughput comes from the runs' ``metrics.jsonl`` (training
images/s and transitions/s) and from timing ``model.sample`` (network evaluations/s).

On the clock, each arm trains one untimed minibatch first (a scratch run, deleted), so that device
start-up and autotuning are not inside the first arm's minutes only. Each arm is scored as soon
as it is trained (with ``jobs`` > 1, once every arm is trained), and its scores are kept in its
run folder (``compare_arm.json``): a comparison that was stopped (a time limit, a kill) continues
where it stopped when the same command runs again. An arm whose training fails (a non-finite
loss) is marked failed in the table and JSON; the others still train and are scored, and the
command then exits non-zero.

Written to ``out_dir``: ``compare.json`` (everything, per arm and seed), ``compare.md`` (the
table: mean and spread over seeds per preset) and ``compare.png`` (the sample metric against
training minutes, one line per preset, the seeds' spread shaded).
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_write_text
from .config import Config, apply_overrides
from .errors import TrainingError
from .data.loader import DataSplits
from .data.toy import TOY_DATASETS, toy_modes
from .evaluation import EvalOptions, evaluate, evaluate_samples_file
from .evaluation.report import read_metrics
from .evaluation.samples import write_samples
from .evaluation.report import jsonable, machine
from .metrics import toy_metrics
from .model import Walkback, load
from .plots import plot_compare
from .presets import get_preset
from .runs import amp_autocast, holds_run, load_data, resolve_device
from .train import train

__all__ = ["CompareOptions", "compare", "arm_config"]

UNLIMITED_STEPS = 10**9  # arms stop on time, not on a step count
ARM_FILE = "compare_arm.json"  # an arm's scores, beside its run


@dataclass
class CompareOptions:
    """``walkback compare``: presets, minutes per arm, seeds, where; ``save_at``: minutes at which
    every arm's model is also saved and scored (default: about 5 evenly spaced). ``variants``:
    more arms, ``label -> (preset, ["key=value", ...])``; ``steps``: minibatches per arm instead
    of ``minutes``; ``gpus``: the GPUs the ``jobs`` share (default: one per job)."""

    presets: list[str]
    minutes: float | None
    out_dir: Path
    variants: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    steps: int | None = None
    seeds: list[int] = field(default_factory=lambda: [0])
    save_at: list[float] | None = None
    sets: list[str] = field(default_factory=list)
    num_samples: int | None = None
    bound_points: int = 1000  # images: test images of the bound (M = 1 path each)
    device: str = "auto"
    fid_weights: str | None = None
    cache_dir: str | None = None
    data_root: str | None = None
    amp: str = "none"
    progress: bool = True
    command: str | None = None
    jobs: int = 1  # arms trained at once, each in its own process (and on its own GPU)
    gpus: int | None = None  # the GPUs those processes share, arm i on GPU i mod gpus
    chain_steps: str = "0,K,10K"  # images: the extra T = 1 steps at which the chains are scored

    @property
    def arms(self) -> list[str]:
        """Every arm's label: the presets, then the variants."""
        return [*self.presets, *self.variants]

    def preset_of(self, label: str) -> tuple[str, list[str]]:
        """An arm's preset and its own overrides."""
        return self.variants.get(label, (label, []))


def _save_at(options: CompareOptions) -> list[float]:
    if options.minutes is None:  # equal minibatches: no timed snapshots
        return []
    if options.save_at is not None:
        return sorted(m for m in options.save_at if m < options.minutes)
    step = options.minutes / 5
    return [round(step * i, 3) for i in range(1, 5)]


def arm_overrides(label: str, seed: int, options: CompareOptions) -> list[str]:
    """An arm's overrides of its preset: the comparison's, the variant's own, its seed, and the
    time limit with the saved minutes (or the number of minibatches)."""
    if options.minutes is None:
        budget = [f"train.steps={options.steps}", "train.save_minutes="]  # a time limit of
        # the comparison's own (--set train.time_limit_s) still stops an arm
    else:
        minutes = ",".join(f"{m:g}" for m in _save_at(options))
        budget = [f"train.steps={UNLIMITED_STEPS}", f"train.time_limit_s={60 * options.minutes}",
                  f"train.save_minutes={minutes}"]
    return [*options.sets, *options.preset_of(label)[1], f"seed={seed}", *budget,
            f"train.device={options.device}"]


def arm_config(label: str, seed: int, options: CompareOptions) -> Config:
    return apply_overrides(get_preset(options.preset_of(label)[0]),
                           arm_overrides(label, seed, options))


def _train_arm(config: Config, run_dir: Path, options: CompareOptions) -> None:
    """Train (or finish, after a kill) one arm; a finished arm is kept as it is. An arm on the
    clock first trains one untimed minibatch (``_warm_up``)."""
    if (run_dir / "model").is_dir():
        return
    if options.minutes is not None:
        _warm_up(config, run_dir.parent / f"{run_dir.name}.warm-up")
    train(config, run_dir, resume=holds_run(run_dir), progress=options.progress)


def _warm_up(config: Config, scratch: Path) -> None:
    """One minibatch of the arm's config in ``scratch`` (deleted after), outside its clock: the
    process's device start-up (CUDA context, library handles) and the autotuning of the arm's
    shapes would otherwise fall inside the first arm's minutes only. Measured on one H100 with
    MNIST at 1.5 minutes: the call's first arm lost about 7 s of its 90 to them, 53 minibatches
    against 57 for the same arm trained again later in the call."""
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        warm = apply_overrides(copy.deepcopy(config),
                               ["train.steps=1", "train.time_limit_s=0", "train.save_minutes="])
        train(warm, scratch, progress=False)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _train_arms_in_processes(arms: list[tuple[str, int, Path]],
                             options: CompareOptions) -> dict[tuple[str, int], str]:
    """``walkback train`` for up to ``options.jobs`` arms at once, arm ``i`` of each wave on GPU
    ``i mod options.gpus`` (``CUDA_VISIBLE_DEVICES``); each writes its log beside its run
    folder. Returns the arms whose process failed, each with the line that says where to look."""
    gpus = options.gpus or options.jobs
    todo = [arm for arm in arms if not (arm[2] / "model").is_dir()]
    failed: dict[tuple[str, int], str] = {}
    for start in range(0, len(todo), options.jobs):
        running = []
        for i, (label, seed, run_dir) in enumerate(todo[start:start + options.jobs]):
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            command = [sys.executable, "-m", "walkback.cli", "train", "--run-dir", str(run_dir),
                       "--no-progress"]
            if holds_run(run_dir):
                command.append("--resume")
            else:
                command += ["--preset", options.preset_of(label)[0]]
            for item in arm_overrides(label, seed, options):
                command += ["--set", item]
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(i % gpus)} \
                if options.device != "cpu" \
                else dict(os.environ)
            log = run_dir.parent / f"{run_dir.name}.log"
            with open(log, "w") as handle:
                running.append(((label, seed), subprocess.Popen(
                    command, env=env, stdout=handle, stderr=subprocess.STDOUT), log))
        for arm, process, log in running:
            if process.wait() != 0:
                failed[arm] = f"training failed, see {log}"
    return failed


def _sampling_rate(model: Walkback, num: int, device: torch.device,
                   options: CompareOptions) -> float:
    """Network evaluations per second of ``model.sample`` (``num`` chains, ``K`` steps each),
    under the evaluation's autocast."""
    generator = torch.Generator(device).manual_seed(0)
    k = model.start_step or len(model.active_temperatures)
    with amp_autocast(device, options.amp):
        # warm-up at the timed shape: cuDNN autotunes each new batch size, so a smaller warm-up
        # left the first arm of a process timing its autotuning (half the rate of the others)
        model.sample(num, generator=generator)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        model.sample(num, generator=generator)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return num * k / (time.perf_counter() - started)


def _toy_scores(model: Walkback, config: Config, data: DataSplits, n: int) -> dict[str, Any]:
    """The toy metrics of ``n`` samples (seed 0) against the run's ``data``."""
    device = model.prior.mean.device
    samples = model.sample(n, generator=torch.Generator(device).manual_seed(0)).samples.cpu()
    return toy_metrics(config.data.name, samples, data.train, data.heldout)


def _image_options(options: CompareOptions, metrics: str) -> EvalOptions:
    return EvalOptions(metrics=metrics, num_samples=options.num_samples,
                       chain_steps=options.chain_steps,
                       device=options.device, num_paths=1, bound_points=options.bound_points,
                       fid_weights=options.fid_weights, cache_dir=options.cache_dir,
                       data_root=options.data_root, progress=options.progress, amp=options.amp,
                       command=options.command, floor=False)


def _snapshot_fid(model: Walkback, config: Config, folder: Path, options: CompareOptions) -> float:
    """FID of a saved model's samples: written as a samples file in ``folder`` and scored."""
    n = options.num_samples or config.sample.num_samples
    device = model.prior.mean.device
    with amp_autocast(device, options.amp):
        result = model.sample(n, batch_size=config.sample.batch_size,
                              generator=torch.Generator(device).manual_seed(0))
    path = folder / "samples.npz"  # as images: in [-1, 1] (a model far off it is scored, not
    # refused as data of another scale)
    write_samples(path, result.samples.clamp(-1, 1),
                  meta={"data": config.data.name, "N": n, "seed": 0})
    scored = evaluate_samples_file(path, data=config.data.name,
                                   data_root=options.data_root or config.data.root,
                                   options=_image_options(options, "fid"), out_dir=folder / "eval")
    return float(scored["fid"]["value"])


def _arm_result(preset: str, seed: int, run_dir: Path, config: Config,
                options: CompareOptions) -> dict[str, Any]:
    """Everything one arm reports: throughput, the final model's metrics, the saved models'."""
    device = resolve_device(options.device, setting="--device")
    records = read_metrics(run_dir / "metrics.jsonl")
    last = records[-1] if records else {}
    toy = config.data.name in TOY_DATASETS
    model = load(run_dir, device=str(device)).eval()
    n = options.num_samples or config.sample.num_samples
    arm: dict[str, Any] = {
        "preset": preset, "seed": seed, "run_dir": str(run_dir), "method": config.method,
        "heating": config.train.heating, "train_steps": last.get("step"),
        "train_seconds": last.get("train_seconds"), "images_per_s": last.get("images_per_s"),
        "transitions_per_s": last.get("transitions_per_s"),
        "sampling_evals_per_s": _sampling_rate(model, config.sample.batch_size, device, options),
        "K": model.start_step or len(model.active_temperatures),
    }
    if toy:
        final = evaluate(run_dir, num_samples=n, device=str(device), progress=options.progress,
                         command=options.command)
        arm["chain"] = {s["label"]: s["metrics"] for s in final["chain"]["snapshots"]}
        arm["bound_nats"] = final["bound"]["estimates"][-1]["log_bound"]
    else:
        mnist = config.data.name == "mnist"  # and its class histogram
        final = evaluate(run_dir, options=_image_options(
            options, "fid,kid,bound,chain" + (",classes" if mnist else "")))
        arm["fid"], arm["kid"] = final["fid"]["value"], final["kid"]["mean"]
        arm["outside_fraction"] = final["samples"]["outside_fraction"]  # before the clip
        if mnist:  # the classifier's features judge digit shapes, not Inception's texture
            arm["smallest_class"] = min(final["classes"]["fractions"])
            arm["classifier_fid"] = final["classes"]["classifier_fid"]
        arm["bits_per_dim"] = final["bound"]["estimates"][-1]["bits_per_dim"]
        arm["chain_fid"] = {_chain_label(s["E"], arm["K"]): s.get("fid")
                            for s in final["chain"]["snapshots"]}
    data = load_data(config) if toy else None  # generated once for every toy score
    arm["curve"] = []
    for folder in sorted((run_dir / "snapshots").glob("min*"), key=_snapshot_minutes):
        saved = json.loads((folder / "snapshot.json").read_text())
        snap = load(folder, device=str(device)).eval()
        score = (_toy_scores(snap, config, data, n) if toy else
                 {"fid": _snapshot_fid(snap, config, folder, options)})
        arm["curve"].append({"minutes": saved["minutes"], "step": saved["step"], **score})
    final_score = (_toy_scores(model, config, data, n) if toy else {"fid": arm["fid"]})
    minutes = options.minutes if options.minutes is not None else \
        (last.get("train_seconds") or 0.0) / 60
    arm["curve"].append({"minutes": minutes, "step": last.get("step"), **final_score})
    return arm


def _scored_arm(preset: str, seed: int, run_dir: Path, config: Config,
                options: CompareOptions) -> dict[str, Any]:
    """``_arm_result``, kept in the arm's folder (``ARM_FILE``) so that a comparison stopped
    while scoring continues where it stopped; delete the file to score the arm again."""
    path = run_dir / ARM_FILE
    if path.is_file():
        return json.loads(path.read_text())
    arm = jsonable(_arm_result(preset, seed, run_dir, config, options))
    atomic_write_text(path, json.dumps(arm, indent=2, allow_nan=False))
    return arm


def _chain_label(extra_steps: int, k: int) -> str:
    """``E=0``, ``E=K``, ``E=10K`` (the table's columns) or ``E=<steps>``."""
    names = {0: "0", k: "K", 10 * k: "10K"}
    return f"E={names.get(extra_steps, extra_steps)}"


def _snapshot_minutes(folder: Path) -> float:
    return float(folder.name[3:])


def _metric_of(data_name: str) -> tuple[str, str]:
    """The curve's metric (key, label): FID for images; for toys the fraction within 3 std of a
    mode (mixtures) or the nearest-distance ratio."""
    if data_name not in TOY_DATASETS:
        return "fid", "FID (samples)"
    if toy_modes(data_name) is not None:
        return "fraction_within_3std", "fraction within 3 std of a mode"
    return "nearest_distance_ratio", "nearest-distance ratio (1 = as close as held-out data)"


def _spread(values: list[float | None]) -> str:
    """``mean +- std`` over seeds (the std only with at least two values)."""
    xs = [v for v in values if v is not None and math.isfinite(v)]
    if not xs:
        return "n/a"
    mean = statistics.fmean(xs)
    fmt = ".3g" if abs(mean) < 1000 else ".0f"
    if len(xs) < 2:
        return format(mean, fmt)
    return f"{mean:{fmt}} ± {statistics.stdev(xs):.2g}"


def _table_rows(arms: list[dict[str, Any]], toy: bool) -> list[str]:
    """A markdown table: one row per preset, each cell the mean and spread over its seeds."""
    def chain(e: str, key: str, reduce=None):
        def get(a: dict[str, Any]) -> Any:
            value = a["chain"][e].get(key)
            return reduce(value) if reduce is not None and value else value
        return get

    if toy:
        columns = [("modes E=0", chain("E=0", "modes_covered")),
                   ("within 3 std E=0", chain("E=0", "fraction_within_3std")),
                   ("within 3 std E=10K", chain("E=10K", "fraction_within_3std")),
                   ("min weight E=0", chain("E=0", "mode_weights", min)),
                   ("max weight E=0", chain("E=0", "mode_weights", max)),
                   ("nearest ratio E=0", chain("E=0", "nearest_distance_ratio")),
                   ("nearest ratio E=10K", chain("E=10K", "nearest_distance_ratio")),
                   ("bound (nats/point)", lambda a: a["bound_nats"])]
    else:
        mnist = any("smallest_class" in a for a in arms)
        columns = [("FID", lambda a: a["fid"]), ("KID", lambda a: a["kid"]),
                   *([("classifier FID", lambda a: a["classifier_fid"]),
                      ("smallest class", lambda a: a["smallest_class"])] if mnist else []),
                   ("outside [-1, 1]", lambda a: a["outside_fraction"]),
                   ("bits/dim", lambda a: a["bits_per_dim"]),
                   *[(f"FID {e}", lambda a, e=e: a["chain_fid"].get(e))
                     for e in ("E=0", "E=K", "E=10K")]]
    columns += [("train steps", lambda a: a["train_steps"]),
                ("images/s", lambda a: a["images_per_s"]),
                ("transitions/s", lambda a: a["transitions_per_s"]),
                ("sampling evals/s", lambda a: a["sampling_evals_per_s"]), ("K", lambda a: a["K"])]
    presets = list(dict.fromkeys(a["preset"] for a in arms))
    rows = ["| preset | seeds | " + " | ".join(name for name, _ in columns) + " |",
            "| --- | --- | " + " | ".join("---" for _ in columns) + " |"]
    for preset in presets:
        mine = [a for a in arms if a["preset"] == preset and "failed" not in a]
        lost = sum(a["preset"] == preset and "failed" in a for a in arms)
        cells = [_spread([_number(get, a) for a in mine]) for _, get in columns]
        seeds = f"{len(mine)}" + (f" ({lost} failed)" if lost else "")
        rows.append(f"| {preset} | {seeds} | " + " | ".join(cells) + " |")
    return rows


def _number(get, arm: dict[str, Any]) -> float | None:
    try:
        value = get(arm)
    except (KeyError, TypeError):
        return None
    return None if value is None else float(value)


def compare(options: CompareOptions) -> dict[str, Any]:
    """Train every arm x seed for ``options.minutes`` (or ``options.steps``), evaluate, write the
    table and plot."""
    if not options.arms:
        raise ValueError("compare: no presets given")
    if (options.minutes is None) == (options.steps is None):
        raise ValueError("compare: give either minutes or steps per arm")
    clash = sorted(set(options.presets) & set(options.variants))
    if clash:
        raise ValueError(f"compare: variant {clash[0]!r} has the name of a compared preset")
    configs = {(p, s): arm_config(p, s, options) for p in options.arms for s in options.seeds}
    names = {c.data.name for c in configs.values()}
    if len(names) != 1:
        raise ValueError(f"compare: the presets use different data sets "
                         f"({', '.join(sorted(names))})")
    out = Path(options.out_dir)
    failed: dict[tuple[str, int], str] = {}
    if options.jobs > 1:  # train every arm first, then score them all
        failed = _train_arms_in_processes([(p, s, out / p / f"seed{s}") for p, s in configs],
                                          options)
    arms = []
    for (preset, seed), config in configs.items():  # each arm scored once trained: a stopped
        run_dir = out / preset / f"seed{seed}"       # comparison keeps what it has scored
        if (preset, seed) not in failed:
            try:
                _train_arm(config, run_dir, options)
            except TrainingError as error:  # diverged: the other arms still train and score
                failed[(preset, seed)] = str(error)
        if (preset, seed) in failed:
            arms.append({"preset": preset, "seed": seed, "run_dir": str(run_dir),
                         "failed": failed[(preset, seed)]})
        else:
            arms.append(_scored_arm(preset, seed, run_dir, config, options))
    data_name = names.pop()
    key, label = _metric_of(data_name)
    device = resolve_device(options.device, setting="--device")
    result = jsonable({
        "command": options.command, "machine": machine(device), "data": data_name,
        "minutes": options.minutes, "steps": options.steps, "seeds": options.seeds,
        "save_at": _save_at(options), "sets": options.sets,
        "variants": {k: {"preset": p, "sets": v} for k, (p, v) in options.variants.items()},
        "jobs": options.jobs, "gpus": options.gpus or options.jobs,
        "curve_metric": key, "arms": arms,
    })
    toy = data_name in TOY_DATASETS
    budget = (f"{options.minutes:g} min" if options.minutes is not None else
              f"{options.steps} minibatches")
    shared = options.jobs > (options.gpus or options.jobs) and options.device != "cpu"
    title = (f"{data_name}: {budget} per arm on {result['machine']['name']}"
             + (f" ({options.jobs} arms at once on {options.gpus} GPU(s))" if shared else "")
             + f", seeds {','.join(map(str, options.seeds))}")
    table = [f"# {title}", "", *_table_rows(arms, toy), "",
             *[f"variant `{k}`: `{p}` with {', '.join(f'`{v}`' for v in sets) or 'nothing'}"
               for k, (p, sets) in options.variants.items()],
             f"command: `{options.command}`" if options.command else ""]
    plot_compare({a["preset"]: [] for a in arms} | _curves(arms, key), out / "compare.png",
                 y_label=label, title=title)
    atomic_write_text(out / "compare.md", "\n".join(table) + "\n")
    atomic_write_text(out / "compare.json", json.dumps(result, indent=2, allow_nan=False))
    if failed:
        (preset, seed), why = next(iter(failed.items()))
        raise TrainingError(f"compare: {len(failed)} of {len(configs)} arms failed (first: "
                            f"{preset} seed {seed}: {why}); the others are in {out / 'compare.md'}")
    return result


def _curves(arms: list[dict[str, Any]], key: str) -> dict[str, list[list[tuple[float, float]]]]:
    """Per preset, one ``(minutes, value)`` curve per seed."""
    curves: dict[str, list[list[tuple[float, float]]]] = {}
    for arm in arms:
        points = [(c["minutes"], float(c[key])) for c in arm.get("curve", [])
                  if c.get(key) is not None]
        curves.setdefault(arm["preset"], []).append(points)
    return curves
