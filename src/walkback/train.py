"""The ONE training loop of walkback, for every data set (phases: build, resume, step, maintenance).

Per minibatch ``x``: walk away from ``x`` along the heating path (no gradient) and train the
operator to walk back, minimising ``-log p_{T_t}(s_{t-1} | s_t)`` (docs/method.md), either with one
optimizer step per heating step ("online"), one per path ("accumulate"), or one per shuffled
minibatch of the path's ``K * B`` transitions ("transitions": every transition is scored once,
and the heating cost is shared by ``K * B / train.transition_batch`` updates).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from . import distributed
from .atomic import atomic_write_text, remove_stray_temporaries
from .checkpoint import (
    Checkpoint, latest_checkpoint, load_latest_intact, optimizer_from_tensors,
    optimizer_to_tensors, prune_checkpoints, save_checkpoint,
)
from .config import Config, config_from_saved, config_to_dict, config_to_json, save_minutes
from .data.images import dequantize_model_space
from .data.loader import batch_indices
from .diffusion import denoising_loss
from .errors import CheckpointError, ConfigError, TrainingError
from .graphs import GraphedForward
from .model import Walkback, build_model, load_state
from .runs import amp_autocast, enable_fast_kernels, holds_run, load_data, resolve_device
from .objective import (
    negative_bound, perturbed_inputs, perturbed_var_scale, sampled_walkback_loss,
    transition_batches, transition_walkback_loss, objective_from_config, unit_weights,
    walkback_loss, walkback_step_loss,
)
from .schedule import heating_stops, jittered_temperatures
from .streams import Generator, StackedRandom, mix_seed, rand, randn
from .trajectory import HeatingPath, Trajectory, walk_away

__all__ = ["TrainResult", "train"]

RUN_FILES = ("config.json", "metrics.jsonl", "checkpoints", "model", "figures", "eval.json",
             "samples.npz", "snapshots")


RESUME_HINT = "; continue from the last checkpoint with --resume"
PRIOR_FIT_POINTS = 5000  # lifted training points the prior is first fitted to (hidden units)


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    model: Walkback  # the EMA weights, in eval mode

















def _prepare_run_dir(config: Config, run_dir: Path, resume: bool, overwrite: bool) -> None:
    held = holds_run(run_dir)
    if resume and not held:
        raise CheckpointError(f"{run_dir}: nothing to resume (no checkpoint yet); start the run "
                              "again without --resume")
    if held and not (resume or overwrite):
        raise ConfigError(f"{run_dir} already holds a run; pass --resume or --overwrite")
    for folder in (run_dir, run_dir / "checkpoints", run_dir / "model"):
        remove_stray_temporaries(folder)  # left by a write that a kill interrupted
    if overwrite and not resume:
        for name in RUN_FILES:
            target = run_dir / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:  # on resume, config.json is rewritten once the checkpoint is accepted
        atomic_write_text(run_dir / "config.json", config_to_json(config))


def ema_decay(updates: int, decay: float, warmup: bool) -> float:
    """The EMA's decay in the update after ``updates`` earlier ones: ``decay`` (``train.ema``),
    or with ``train.ema_warmup`` ``min(decay, (1 + n) / (10 + n))``. Without the warm-up the
    initial weights keep the share ``decay^n`` of the average after n updates (0.999^1000, about
    0.37); with it ``prod_k (1 + k) / (10 + k)`` until the warm-up reaches ``decay``
    (docs/method.md, "The weights' average")."""
    return min(decay, (1 + updates) / (10 + updates)) if warmup else decay


@torch.no_grad()
def _ema_update(ema: Walkback, model: Walkback, decay: float) -> None:
    """``theta_ema <- decay * theta_ema + (1 - decay) * theta``."""
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.lerp_(p, 1 - decay)


@torch.no_grad()
def _copy_buffers(ema: Walkback, model: Walkback) -> None:
    """The EMA model shares the prior and the number of active steps (buffers, not averaged)."""
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


class _FiniteGuard:
    """The NaN/Inf guard of one minibatch's updates: each update records its loss and gradient
    norm, and ``check`` reads them all at once, so that the updates of a minibatch do not each
    wait for the GPU. A non-finite value stops training, naming the first update that had one,
    before anything is saved (the updates after it ran on broken weights, which are dropped)."""

    def __init__(self) -> None:
        self._values: list[torch.Tensor] = []
        self._places: list[str] = []

    def record(self, loss: torch.Tensor, norm: torch.Tensor, where: str) -> None:
        self._values.append(torch.stack([loss.detach().float(), norm.detach().float()]))
        self._places.append(where)

    def check(self) -> None:
        if not self._values:
            return
        values = torch.stack(self._values).cpu()  # the one wait for the GPU
        places, self._values, self._places = self._places, [], []
        bad = (~torch.isfinite(values)).nonzero().tolist()  # row-major: update, then loss/norm
        if not bad:
            return
        update, which = bad[0]
        if which == 0:
            raise TrainingError(f"non-finite loss ({float(values[update, 0])}) at "
                                f"{places[update]}; stopping, nothing saved")
        raise TrainingError(f"non-finite gradient norm at {places[update]}; stopping, nothing saved")


def _update(model: Walkback, ema: Walkback, opt: torch.optim.Optimizer, loss: torch.Tensor,
            config: Config, guard: _FiniteGuard, where: str) -> torch.Tensor:
    """One optimizer step, its loss and gradient norm recorded in ``guard``; returns the
    gradient norm before clipping."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
    guard.record(loss, norm, where)
    opt.step()
    # the count of updates travels in the optimizer's param group, so checkpoints keep it (as an
    # LR scheduler's "initial_lr" does)
    group = opt.param_groups[0]
    updates = group.get("updates", 0)
    _ema_update(ema, model, ema_decay(updates, config.train.ema, config.train.ema_warmup))
    group["updates"] = updates + 1
    return norm


def _autocast(config: Config, x: torch.Tensor) -> torch.autocast:
    """bf16 autocast of the forward passes when ``train.amp=bf16`` (the operator casts the
    backbone's outputs back to the state's dtype, so densities are computed in float32)."""
    return amp_autocast(x.device, config.train.amp)


def _train_denoising_minibatch(model: Walkback, ema: Walkback, opt: torch.optim.Optimizer,
                               x: torch.Tensor, config: Config, random: _Random,
                               step: int) -> dict[str, float]:
    """The DDPM baseline: one update of the simple loss at random noise levels (one transition,
    the step from one level, per example); returns this minibatch's statistics."""
    if config.train.dequantize:
        x = dequantize_model_space(x, generator=random.examples)
    with _autocast(config, x):
        loss = denoising_loss(model.operator, x, generator=random.examples).mean()
    guard = _FiniteGuard()
    norm = _update(model, ema, opt, loss, config, guard, f"step {step}, the denoising loss")
    guard.check()
    return {"loss_per_dim": float(loss.detach()), "grad_norm": float(norm), "updates": 1,
            "transitions": len(x)}


@dataclass
class _Random:
    """The randomness of one minibatch. ``examples`` draws what belongs to one example (its
    dequantization, heating noise, DDPM level): one generator for the whole run
    (``train.noise=global``), or streams of ``train.stream_block`` examples seeded by the run's
    seed, the step and the examples' places in the minibatch (``streams``: the same numbers
    whichever process holds an example). ``shared`` draws choices about the whole minibatch (the
    transitions' shuffle, the sampled steps), the same in every process. This process holds
    examples ``start .. start + batch / size - 1`` of the minibatch of ``batch``."""

    examples: Generator
    shared: torch.Generator
    start: int
    batch: int
    size: int

    def own_transitions(self, index: torch.Tensor) -> torch.Tensor:
        """Flat transition indices ``t * batch + i`` of the whole minibatch -> those of this
        process's examples, as flat indices into its own heating path."""
        if self.size == 1:
            return index
        share = self.batch // self.size
        t, i = index // self.batch, index % self.batch
        mine = (i >= self.start) & (i < self.start + share)
        return t[mine] * share + (i[mine] - self.start)


def _minibatch_random(config: Config, step: int, batch: int, here: distributed.World,
                      generator: torch.Generator, device: torch.device) -> _Random:
    """The ``_Random`` of minibatch ``step`` (of ``batch`` examples) in process ``here``."""
    if config.train.noise == "global":
        return _Random(generator, generator, 0, batch, 1)
    share = batch // here.size
    start = here.rank * share
    examples = StackedRandom(mix_seed(config.seed, step, 0), start, start + share,
                             block=config.train.stream_block, device=device)
    shared = torch.Generator(device).manual_seed(mix_seed(config.seed, step, 1))
    return _Random(examples, shared, start, batch, here.size)


@dataclass
class _Walk:
    """One minibatch's heating, shared by the walk-back modes: the lifted data ``x``, the heating
    path of all ``K`` steps (the sigma2_max rule may end it early), per-unit ``weights`` of the
    terms (``None`` unless ``train.hidden_weight`` reweighs the rate network's hidden units), and
    what an update needs (the NaN/Inf ``guard``, checked when the minibatch's updates are done)."""

    model: Walkback
    ema: Walkback
    opt: torch.optim.Optimizer
    config: Config
    random: _Random
    step: int
    x: torch.Tensor
    temps: torch.Tensor
    heating: HeatingPath
    weights: torch.Tensor | None
    max_var: float | None
    guard: _FiniteGuard = dataclasses.field(default_factory=_FiniteGuard)

    @property
    def dim(self) -> int:
        return math.prod(self.x.shape[1:])

    def autocast(self) -> torch.autocast:
        return _autocast(self.config, self.x)

    def update(self, loss: torch.Tensor, where: str) -> torch.Tensor:
        return _update(self.model, self.ema, self.opt, loss, self.config, self.guard,
                       f"step {self.step}, {where}")

    def walk_away(self, *, reparameterized: bool = False) -> Trajectory:
        """The heating path of this process's examples; its per-step noise variances are the
        whole minibatch's (averaged over the processes)."""
        path = walk_away(self.heating, self.x, generator=self.random.examples,
                         max_variance=self.max_var, reparameterized=reparameterized)
        if self.random.size > 1:
            path = dataclasses.replace(path, noise_var=distributed.all_mean(path.noise_var))
        return path


@dataclass
class _Walked:
    """What a mode returns: mean walk-back term per update or step, gradient norms, the heating's
    end points and per-step noise variances, walk-back terms scored per heating step."""

    terms: list[torch.Tensor]
    norms: list[torch.Tensor]
    end: torch.Tensor
    noise: list[torch.Tensor] | torch.Tensor
    scored: float


def _online(w: _Walk) -> _Walked:
    """One update per heating step; the path continues with the updated operator."""
    terms, norms, noise, s = [], [], [], w.x
    for t in range(w.heating.num_steps):
        with torch.no_grad(), w.autocast():
            q = w.heating.step(s, t)
            s_next = q.sample(generator=w.random.examples)
        temperature = float(w.temps[t])
        heat_var = distributed.all_mean(q.total_var.mean())  # over the whole minibatch
        with w.autocast():
            term = walkback_step_loss(w.model.operator, s, s_next, temperature,
                                      objective_from_config(w.config.train), w.weights,
                                      heat_var=heat_var)
        norms.append(w.update(term.mean() / w.dim, f"heating step t={t + 1}, term "
                              f"-log p_T(s_t-1|s_t) at T={temperature:.4g}"))
        terms.append(term.detach().mean())
        noise.append(heat_var)
        s = s_next
        if heating_stops(noise[-1], w.max_var):
            break
    return _Walked(terms, norms, s, noise, len(w.x))


def _transitions(w: _Walk) -> _Walked:
    """The path first; its ``K * B`` transitions shuffled into updates of ``transition_batch``."""
    with torch.no_grad(), w.autocast():
        path = w.walk_away()
    k, cfg, terms, norms = path.num_steps, w.config.train, [], []
    r, batch = w.random, w.random.batch
    inputs, var_scale = None, perturbed_var_scale(cfg.input_noise)
    if cfg.input_noise:  # one draw per example and step, from the example's own stream
        xi = randn((len(w.x), k, *w.x.shape[1:]), generator=r.examples, device=w.x.device)
        inputs = perturbed_inputs(path, cfg.input_noise, xi.transpose(0, 1))
    for index in transition_batches(k, batch, cfg.transition_batch or batch,
                                    generator=r.shared, device=w.x.device):
        local = r.own_transitions(index)  # this process's share of the update
        with w.autocast():
            term = transition_walkback_loss(w.model.operator, path, w.temps, local,
                                            objective=objective_from_config(cfg), weights=w.weights,
                                            inputs=inputs, var_scale=var_scale)
        # the update's mean over all its transitions (DDP averages the processes' gradients)
        mean = term.mean() if len(local) == len(index) else term.sum() * r.size / len(index)
        norms.append(w.update(k * mean / w.dim, f"update {len(norms) + 1}: {len(index)} "
                              f"transitions of -log p_T(s_t-1|s_t) from {k} heating steps"))
        terms.append(mean.detach())
    return _Walked(terms, norms, path.states[-1], path.noise_var, len(w.x))


def _sampled_steps(w: _Walk) -> _Walked:
    """One update on an unbiased estimate from ``train.loss_steps`` of the path's steps."""
    with w.autocast():
        path = w.walk_away()
        n = min(w.config.train.loss_steps, path.num_steps)
        total, _ = sampled_walkback_loss(w.model.operator, path, w.temps, n,
                                         objective=objective_from_config(w.config.train),
                                         generator=w.random.shared, weights=w.weights)
    norm = w.update(total.mean() / w.dim, f"{n} of {path.num_steps} heating steps of "
                    "-log p_T(s_t-1|s_t)")
    terms = [total.detach().mean() / path.num_steps] * path.num_steps
    return _Walked(terms, [norm], path.states[-1], path.noise_var,
                   len(w.x) * n / path.num_steps)


def _whole_bound(w: _Walk) -> _Walked:
    """One update on the whole bound of a reparameterised path (``train.objective=bound``)."""
    with w.autocast():
        path = w.walk_away(reparameterized=True)
        total, per_step = negative_bound(w.model.operator, w.model.prior, path, w.temps)
    norm = w.update(total.mean() / w.dim, f"the bound's {path.num_steps} steps and prior "
                    "(reparameterised path)")
    # logged like the other modes: the mean walk-back term -log p_T(s_t-1|s_t) per step
    return _Walked(list(per_step.detach().mean(1)), [norm], path.states[-1].detach(),
                   path.noise_var, len(w.x))


def _whole_path(w: _Walk) -> _Walked:
    """One update on the sum of the path's walk-back terms (``train.mode=accumulate``)."""
    with w.autocast():
        path = w.walk_away()
        per_step = walkback_loss(w.model.operator, path, w.temps,
                                 objective_from_config(w.config.train), w.weights)
    norm = w.update(per_step.sum(0).mean() / w.dim, f"sum over {path.num_steps} heating steps "
                    "of -log p_T(s_t-1|s_t)")
    return _Walked(list(per_step.detach().mean(1)), [norm], path.states[-1], path.noise_var,
                   len(w.x))


def _walk_back_mode(config: Config):
    """The step function of ``train.mode`` (and, in accumulate mode, of the objective)."""
    cfg = config.train
    if cfg.mode == "online":
        return _online
    if cfg.mode == "transitions":
        return _transitions
    if cfg.loss_steps:
        return _sampled_steps
    return _whole_bound if cfg.objective == "bound" else _whole_path


def _train_minibatch(model: Walkback, ema: Walkback, opt: torch.optim.Optimizer, x: torch.Tensor,
                     config: Config, random: _Random, step: int,
                     heat_forward: GraphedForward | None = None) -> dict[str, float]:
    """Heat ``x`` (this process's share of the minibatch; ``heat_forward``: the graphed
    forward of ``train.graph_heating``) and train the walk back (or the DDPM's denoiser);
    returns the statistics."""
    if config.method == "ddpm":
        return _train_denoising_minibatch(model, ema, opt, x, config, random, step)
    if config.train.dequantize:
        x = dequantize_model_space(x, generator=random.examples)
    x = model.lift(x, generator=random.examples)  # the data, or [x; relaxed h] (rate network)
    if config.train.temperature_jitter:  # one temperature per path and step, on x's device
        u = rand((len(x),), generator=random.examples, device=x.device)
        temps = jittered_temperatures(model.temperatures.to(x.device), u)
    else:
        temps = model.temperatures.cpu()
    weights = unit_weights(model.visible_dim, model.hidden_dim, config.train.hidden_weight,
                           device=x.device)
    walk = _Walk(model, ema, opt, config, random, step, x, temps,
                 model.heating_path(temps, forward=heat_forward), weights,
                 config.schedule.max_variance or None)
    done = _walk_back_mode(config)(walk)
    walk.guard.check()
    model.prior.update(done.end, config.train.prior_momentum, reduce=distributed.all_mean)
    if config.model.mean_scale == "denoise":  # the input scale c_in(T) follows the heating
        # (done.noise is already the whole minibatch's: walk_away and _online average it)
        noise = torch.stack([torch.as_tensor(n) for n in done.noise])
        model.operator.record_heating(noise.float(), config.train.prior_momentum)
    model.num_active.fill_(len(done.noise))  # heating steps taken (one noise variance each)
    _copy_buffers(ema, model)
    mean_term = float(torch.stack(list(done.terms)).mean())
    return {"loss_nats": mean_term, "loss_per_dim": mean_term / walk.dim,
            "grad_norm": float(torch.stack(done.norms).mean()),
            "num_heating_steps": int(model.num_active),
            "transitions": round(done.scored * len(done.noise)),
            "prior_var": float(model.prior.var.mean()), "updates": len(done.norms),
            # batch-mean heating noise T_t * var of the first and last heating steps
            "heat_var_first": float(done.noise[0]), "heat_var_last": float(done.noise[-1])}


def _save(run_dir: Path, step: int, model: Walkback, ema: Walkback, opt: torch.optim.Optimizer,
          generator: torch.Generator, config: Config, train_seconds: float) -> None:
    opt_tensors, opt_meta = optimizer_to_tensors(opt)
    tensors = {**{f"model.{k}": v for k, v in distributed.unwrap_state(model.state_dict()).items()},
               **{f"ema.{k}": v for k, v in ema.state_dict().items()},
               **opt_tensors, "rng.generator": generator.get_state()}
    meta = {"config": config_to_dict(config), "optimizer": opt_meta, "train_seconds": train_seconds}
    previous = latest_checkpoint(run_dir / "checkpoints")
    try:
        save_checkpoint(run_dir / "checkpoints", step, Checkpoint(tensors, meta))
    except OSError as exc:  # a full disk, say: the write left the earlier checkpoints as they were
        kept = f"the previous checkpoint {previous.name} is intact" if previous else "no earlier checkpoint"
        raise CheckpointError(f"{run_dir / 'checkpoints'}: writing the checkpoint of step {step} "
                              f"failed ({exc.strerror or exc}); {kept}; make room and continue "
                              "with `walkback train --resume`") from None
    prune_checkpoints(run_dir / "checkpoints", config.train.keep_checkpoints)


def _restore(run_dir: Path, model: Walkback, ema: Walkback, opt: torch.optim.Optimizer,
             generator: torch.Generator, config: Config) -> tuple[int, float]:
    """Load the newest checkpoint into model, EMA, optimizer and RNG; returns its step and the
    seconds trained until then."""
    found = load_latest_intact(run_dir / "checkpoints")
    if found is None:
        return 0, 0.0
    path, ckpt = found
    # resolved through today's defaults, so a key added since the checkpoint was written (at
    # its default value) is not a difference
    try:
        saved = config_to_dict(config_from_saved(ckpt.meta.get("config", {})))
    except ConfigError as exc:
        raise ConfigError(f"{path}: the checkpoint's config: {exc}") from None
    current = config_to_dict(config)
    for section in ("data", "model", "mlp", "unet", "rate", "schedule"):
        changed = sorted(k for k in current[section] if saved[section][k] != current[section][k])
        if changed:
            keys = ", ".join(f"{section}.{k}" for k in changed)
            raise ConfigError(f"{path}: the checkpoint's '{section}' config differs from this "
                              f"run's ({keys})")

    def part(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in ckpt.tensors.items() if k.startswith(prefix)}

    load_state(model, part("model."), path)
    load_state(ema, part("ema."), path)
    optimizer_from_tensors(opt, ckpt.tensors, ckpt.meta["optimizer"])
    generator.set_state(ckpt.tensors["rng.generator"].cpu())
    return int(ckpt.meta["step"]), float(ckpt.meta.get("train_seconds", 0.0))


class MetricsLog:
    """Append-only ``metrics.jsonl``; on resume, records after the restored step are dropped."""

    def __init__(self, path: Path, resume_step: int) -> None:
        self.path = path
        kept = []
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    if json.loads(line).get("step", 0) <= resume_step:
                        kept.append(line)
                except json.JSONDecodeError:
                    break  # a line cut by a kill: drop it and everything after
        atomic_write_text(path, "".join(line + "\n" for line in kept))

    def write(self, record: dict) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")


def train(config: Config, run_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True, callback: Callable[[int], None] | None = None) -> TrainResult:
    """Train ``config`` into ``run_dir``; ``resume`` continues from the newest checkpoint."""
    run_dir = Path(run_dir)
    cfg = config.train
    here = distributed.init(resolve_device(cfg.device), cfg.dist_timeout_s)  # torchrun, if any
    device = distributed.local_device(resolve_device(cfg.device))
    enable_fast_kernels(device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data = load_data(config)  # both checked before anything is written
    _check_world(config, here, len(data.train))
    _check_graph_heating(config, device, here)
    if here.main:
        _prepare_run_dir(config, run_dir, resume, overwrite)
    distributed.barrier()
    progress = progress and here.main

    # --- build: model (prior fit to the data's moments), EMA copy, optimizer, RNG
    torch.manual_seed(config.seed)
    model = build_model(config).to(device)
    train_x = data.train.to(device)
    # the prior is over full states: with hidden units, fit it to lifted data (a subset); the
    # DDPM's stays N(0, I)
    if config.method != "ddpm":
        model.prior.fit(model.lift(train_x[:PRIOR_FIT_POINTS]) if model.hidden_dim else train_x)
    if config.model.mean_scale == "denoise":  # c_in(T)'s data term
        model.operator.data_square.fill_(float(train_x.float().square().mean()))
    ema = copy.deepcopy(model).requires_grad_(False)
    if cfg.compile:
        model.operator.backbone.compile()  # in place: state-dict keys are unchanged
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=device.type == "cuda")
    generator = torch.Generator(device).manual_seed(config.seed)

    # --- resume: model, EMA, optimizer, prior, RNG and step (the step fixes the data position)
    step, seconds = _restore(run_dir, model, ema, opt, generator, config) if resume else (0, 0.0)
    if step > cfg.steps:
        raise ConfigError(f"config key train.steps: {cfg.steps} is below the step the run has "
                          f"reached ({step}); nothing was changed")
    if resume and here.main:
        atomic_write_text(run_dir / "config.json", config_to_json(config))
    log = MetricsLog(run_dir / "metrics.jsonl", step) if here.main else None
    distributed.wrap_backbone(model, device)  # several processes: DDP all-reduces the gradients
    heat_forward = GraphedForward(model.operator, cfg.amp) if cfg.graph_heating else None

    # --- step
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, desc="train", unit="batch")
    # the training clock (time_limit_s, snapshots) goes on from the checkpoint's seconds; the
    # throughput counts this process's work only
    started = time.perf_counter() - seconds
    resumed, updates, transitions, first_step = time.perf_counter(), 0, 0, step
    snapshot_minutes = [m for m in save_minutes(cfg.save_minutes) if 60 * m > seconds]
    while step < cfg.steps:
        batch = batch_indices(len(train_x), cfg.batch_size, step, seed=config.seed)
        random = _minibatch_random(config, step, len(batch), here, generator, device)
        mine = batch[random.start: random.start + len(batch) // here.size]  # this process's share
        try:
            stats = _train_minibatch(model, ema, opt, train_x[mine.to(device)], config, random,
                                     step, heat_forward)
        except RuntimeError as exc:  # the gradients' all-reduce: a process died or hangs
            if not here.distributed:
                raise
            raise distributed.failure(f"minibatch {step + 1}", exc, RESUME_HINT) from None
        except distributed.ProcessGroupError as exc:  # another exchange of the minibatch
            raise distributed.ProcessGroupError(
                f"{exc} (minibatch {step + 1}){RESUME_HINT}") from None
        step, updates = step + 1, updates + int(stats["updates"])
        transitions += int(stats["transitions"]) * here.size
        bar.update(1)

        # --- maintenance: metrics, progress bar, snapshots, checkpoints (rank 0's clock)
        elapsed = distributed.broadcast_value(time.perf_counter() - started, device)
        out_of_time = 0 < cfg.time_limit_s <= elapsed
        if step % cfg.log_every == 0 or step == cfg.steps or out_of_time:
            stats = _reduce_stats(stats, here, device)
            busy = time.perf_counter() - resumed
            if log is not None:
                log.write({"step": step, **stats, "updates_per_s": updates / busy,
                           "images_per_s": (step - first_step) * len(batch) / busy,
                           "transitions_per_s": transitions / busy, "train_seconds": elapsed})
            bar.set_postfix(loss=f"{stats['loss_per_dim']:.4f}")
        while snapshot_minutes and elapsed >= 60 * snapshot_minutes[0]:
            paused = time.perf_counter()
            minutes = snapshot_minutes.pop(0)
            if here.main:
                _save_snapshot(run_dir, minutes, step, elapsed, ema, train_x, config)
            distributed.barrier()
            started += time.perf_counter() - paused  # the snapshot's time is not training time
            resumed += time.perf_counter() - paused
        if step % cfg.checkpoint_every == 0 or step == cfg.steps or out_of_time:
            if here.main:
                _save(run_dir, step, model, ema, opt, generator, config, elapsed)
            distributed.barrier()  # no process runs ahead of the last checkpoint
        if callback is not None:
            callback(step)
        if out_of_time:
            break
    bar.close()
    if here.main:
        _finish_model(ema, train_x, config, run_dir / "model")
    distributed.barrier()
    return TrainResult(run_dir, step, ema)


def _check_graph_heating(config: Config, device: torch.device, here: distributed.World) -> None:
    """``train.graph_heating`` needs one process on a GPU (checked before anything is written)."""
    if config.train.graph_heating and (device.type != "cuda" or here.distributed):
        where = f"{here.size} processes" if here.distributed else f"a {device.type} device"
        raise ConfigError(f"config key train.graph_heating: needs one process on a GPU, this "
                          f"run has {where}")


def _check_world(config: Config, here: distributed.World, num_train: int) -> None:
    """Several processes share each minibatch: the settings that must hold, named."""
    if not here.distributed:
        return
    cfg = config.train
    batch = min(cfg.batch_size, num_train)
    if cfg.noise != "streams":
        raise ConfigError(f"config key train.noise: {here.size} processes need 'streams' (the same "
                          "numbers for each example in any process layout), not 'global'")
    if batch % here.size or (batch // here.size) % cfg.stream_block:
        raise ConfigError(f"config key train.batch_size: the minibatch of {batch} must split into "
                          f"{here.size} equal shares of whole streams of train.stream_block="
                          f"{cfg.stream_block} examples")
    if config.schedule.max_variance:
        raise ConfigError("config key schedule.max_variance: the sigma2_max stop rule runs in one "
                          "process only (it decides on the batch mean of one process)")


def _reduce_stats(stats: dict[str, float], here: distributed.World,
                  device: torch.device) -> dict[str, float]:
    """The statistics of the whole minibatch: means over the processes' shares; transitions
    summed. One process: unchanged."""
    if not here.distributed:
        return stats
    keys = sorted(stats)
    values = distributed.all_mean(torch.tensor([float(stats[k]) for k in keys],
                                               dtype=torch.float64, device=device))
    reduced = dict(zip(keys, values.tolist()))
    reduced["transitions"] = reduced["transitions"] * here.size
    for key in ("updates", "num_heating_steps"):
        if key in stats:
            reduced[key] = stats[key]
    return reduced


def _finish_model(ema: Walkback, train_x: torch.Tensor, config: Config, folder: Path) -> None:
    """Save the EMA model into ``folder``, with the prior of its part-way start when the config
    asks for one (``sample.start_step``), fitted to the training data now."""
    ema.eval()
    if config.sample.start_step:
        ema.fit_start_prior(config.sample.start_step, train_x, seed=config.seed,
                            batch_size=config.sample.batch_size, rank=config.sample.start_rank,
                            components=config.sample.start_components)
    ema.save_pretrained(folder)


def _save_snapshot(run_dir: Path, minutes: float, step: int, elapsed: float, ema: Walkback,
                   train_x: torch.Tensor, config: Config) -> None:
    """The EMA model after ``minutes`` of training, in ``snapshots/min<minutes>/`` with the step
    and seconds it had trained (``snapshot.json``); the equal-time comparison reads these."""
    folder = run_dir / "snapshots" / f"min{minutes:g}"
    _finish_model(ema, train_x, config, folder)
    ema.train()
    atomic_write_text(folder / "snapshot.json", json.dumps(
        {"minutes": minutes, "step": step, "train_seconds": elapsed}))
