"""Run configuration: nested dataclasses, ``--set a.b=v`` overrides, JSON round trip.

Unknown keys and values of the wrong type are rejected with a ``ConfigError`` naming them.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from .data.images import IMAGE_DATASETS
from .data.toy import TOY_DATASETS
from .errors import ConfigError

__all__ = [
    "DataConfig",
    "ModelConfig",
    "MLPConfig",
    "UNetConfig",
    "RateConfig",
    "ScheduleConfig",
    "TrainConfig",
    "SampleConfig",
    "DiffusionConfig",
    "Config",
    "apply_overrides",
    "config_from_dict",
    "config_from_saved",
    "config_to_dict",
    "validate",
    "save_minutes",
    "RANGES",
    "check_range",
]


@dataclass
class DataConfig:
    name: str = "mog"  # a toy (data.toy.TOY_DATASETS) or image (data.IMAGE_DATASETS) data set
    num_train: int = 20000  # toys: points generated per split
    num_heldout: int = 5000
    root: str = "data"  # images: folder holding a torchvision layout or the offline copies
    download: bool = False  # images: fetch (md5-checked) when no copy is found under root
    resolution: int = 0  # images: output side for CelebA (0 = the data set's default)
    heldout_split: str = "test"  # images: split used as held-out data


@dataclass
class ModelConfig:
    """What every backbone shares: the operator around the backbone. Each backbone's own keys
    are in its section (``mlp``, ``unet``, ``rate``); ``conv2017`` has none: its widths are the
    2017 network's, and its per-step normalisation sets are ``schedule.num_steps``."""

    backbone: str = "mlp"  # "mlp" | "unet" | "conv2017" | "rate" (recurrent rate network)
    form: str = "conditioned"  # "2017": backbone blind to T; "conditioned": gets log T
    alpha: float = 0.5  # mean = alpha * s + (1 - alpha) * F (not used by "rate": see rate.leak)
    min_var: float = 1e-6
    min_var_at_1: float = 0.0  # > 0: the floor of var is min_var_at_1 at T = 1 and goes
    # geometrically in T to min_var at the schedule's top temperature T_K (docs/method.md,
    # "Variance floor"); 0: min_var at every T
    mean_scale: str = "none"  # "noise": mean = s + (1 - alpha) sqrt(T var) (F - s) (preconditioned)
    # "denoise": F is a denoised estimate D of unit-scaled s, mean = s + lambda(T) (D - s)
    # (docs/method.md, "Denoising form")
    denoised_clip: float = 0.0  # "denoise": > 0 clamps D to [-clip, clip] outside training
    init_var: float = 0.01  # softplus(G) at initialisation (the operator starts as a random walk)
    noise_scale: str = "auto"  # the step's noise: "temperature": T var; "beta": c T var with the
    # fixed diffusion's beta_t = c T_t, so that train.heating=fixed can walk back its own steps
    # (init_var and min_var are then fractions of beta_t); "auto": beta under train.heating=fixed,
    # else temperature
    cond_dim: int = 32


@dataclass
class MLPConfig:
    """``model.backbone=mlp``."""

    hidden: int = 256  # width
    depth: int = 3  # hidden layers


@dataclass
class UNetConfig:
    """``model.backbone=unet``."""

    channels: int = 64  # base width
    channel_mults: str = "1,2,2"  # width multipliers per resolution
    num_res_blocks: int = 2
    dropout: float = 0.0


@dataclass
class RateConfig:
    """``model.backbone=rate``, the recurrent rate network (docs/method.md)."""

    leak: float = 0.5  # a in mean = (1 - a) s + a phi(W s + b) (the operator's alpha is 1 - a)
    hidden_units: int = 0  # H (the state is [v; h], D + H units)
    symmetric: bool = False  # constrain W = W^T (the detailed-balance comparison)
    relax_steps: int = 10  # N1 steps at T = 1 relaxing h (from 0) with v clamped to x
    gain: float = 1.0  # phi = gain * tanh (the rates' range)
    inner_steps: int = 0  # hidden sub-steps (v held) inside each transition: fast hidden units
    input_scale: float = 0.0  # > 0 draws the visible-to-hidden weights at input_scale / sqrt(D)
    # and the hidden biases in (-input_scale, input_scale) (nonlinear hidden units from the start);
    # 0: every weight at 0.5 / sqrt(D + H) and zero biases (the first rate networks' initialisation)
    hidden_min_var: float = 0.0  # the hidden units' noise-variance floor (per T = 1 step) is
    # max(model.min_var, hidden_min_var), so that heating also erases what the hidden units hold


@dataclass
class ScheduleConfig:
    num_steps: int = 30  # K
    t0: float = 1.0
    factor: float = 1.1  # f in T_t = T_0 f^(t-1)
    n1: int = 0  # first steps at T = 1
    max_variance: float = 0.0  # sigma2_max stop rule (0 = off)


@dataclass
class TrainConfig:
    objective: str = "paper"  # "paper" | "released" (the 2017 code's loss, docs/method.md) | "bound": the whole
    # variational bound, heating path reparameterised (gradients flow through q; accumulate only)
    # | "decoupled": the paper's term in value, the mean trained by its squared error over a fixed
    # per-step variance, the variance by the NLL at the detached mean (docs/method.md)
    decoupled_scale: str = "heating"  # decoupled: the mean's fixed variance v_t: "heating" (the
    # heating step's batch-mean noise variance, detached) | "learned" (sg(T var) per example)
    variance_weight: float = 1.0  # decoupled: weight of the variance's term
    heating: str = "model"  # "model" (VW) | "fixed" (NET-style Gaussian diffusion)
    mode: str = "online"  # "online": one update per heating step | "accumulate": one per path |
    # "transitions": the path's K * B transitions shuffled into updates of transition_batch each
    dequantize: bool = False  # images: train on 8-bit values plus U[0, 1) noise (the bound's data)
    transition_batch: int = 0  # transitions mode: transitions per update (0 = batch_size)
    temperature_jitter: bool = False  # transitions mode: each path heats at its own temperatures,
    # the schedule's moved up by a uniform fraction of a step in log T, so that the operator is
    # trained on every T from 1 to the top, not only the schedule's (docs/method.md)
    input_noise: float = 0.0  # transitions mode: the walk-back term's input is s_t plus this
    # times the heating step's noise std times fresh N(0, 1) noise, the target s_(t-1) unchanged
    # (input perturbation against exposure bias: docs/method.md); 0 = the paper's term
    loss_steps: int = 0  # accumulate: score a random subset of this many heating steps (0 = all K)
    hidden_weight: float = 1.0  # rate: weight of the hidden units' walk-back terms (1 = the bound)
    steps: int = 2000  # minibatches
    batch_size: int = 1000
    lr: float = 1e-3
    ema: float = 0.995
    ema_warmup: bool = False  # the EMA's decay min(ema, (1 + n) / (10 + n)) at update n: the
    # average forgets the random initial weights within the first hundreds of updates
    grad_clip: float = 1.0
    prior_momentum: float = 0.99
    log_every: int = 50
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    time_limit_s: float = 0.0  # stop (saving a checkpoint and the model) after this long; 0 = off
    save_minutes: str = ""  # e.g. "1,2,5": also save the EMA model after these minutes of training
    # into snapshots/min<m>/ (the equal-time comparison of `walkback compare`)
    amp: str = "none"  # "none" | "bf16" (autocast of the backbone on the GPU)
    threads: int = 0  # CPU threads of torch's kernels (0: torch's default, one per core). On a
    # busy machine 1 avoids oversubscription (100 mog steps on 2 cores beside one busy process:
    # 12.2 s with 1 thread, 24.1 s with the default; README)
    compile: bool = False  # torch.compile the backbone
    graph_heating: bool = False  # one GPU process: replay the heating's no-grad forwards from CUDA
    # graphs, one capture per batch shape (graphs.GraphedForward; the same paths, less launch cost)
    noise: str = "global"  # where the training's random numbers come from: "global": one generator
    # for the run (one process only); "streams": per-example streams seeded by (seed, step, place
    # in the minibatch), so that torchrun with any number of processes trains the same updates
    stream_block: int = 8  # streams: examples per stream (each process's share is whole streams)
    dist_timeout_s: float = 300.0  # torchrun: a process that waits this long on the others stops


@dataclass
class SampleConfig:
    num_samples: int = 5000
    extra_steps: int = 0  # E steps at T = 1 after cooling
    extra_temperature: float = 1.0  # T_E of those steps (a little above 1 adds the noise that a
    # denoising step removes in excess: docs/method.md, "Sampling")
    batch_size: int = 5000
    num_paths: int = 16  # M for the importance-weighted bound
    start_step: int = 0  # > 0: start the chains at this heating step from a prior fitted to the
    # heated training data at the end of training and saved with the model (0: from the top, K)
    start_rank: int = 0  # > 0: that prior adds this many principal directions of the heated
    # points' covariance to its diagonal (docs/method.md, "A start prior with principal directions")
    start_components: int = 0  # > 1: that prior is instead a mixture of this many diagonal
    # Gaussians fitted by EM (docs/method.md, "A mixture start prior")


@dataclass
class DiffusionConfig:
    """The DDPM baseline (``method=ddpm``, docs/method.md): a fixed variance-preserving forward
    process of ``levels`` noise levels, epsilon prediction, the simple MSE loss; sampled on
    ``schedule.num_steps`` evenly spaced levels with DDIM (``eta`` 0) or ancestral steps (1)."""

    levels: int = 1000  # N, the forward process's discrete noise levels
    beta_schedule: str = "linear"  # "linear" (Ho et al. 2020) | "cosine" (Nichol & Dhariwal 2021)
    beta_start: float = 1e-4  # linear: beta_1
    beta_end: float = 0.02  # linear: beta_N
    eta: float = 0.0  # sampling: 0 = DDIM (deterministic), 1 = ancestral DDPM steps
    clip: float = 0.0  # > 0: clamp the denoised estimate to [-clip, clip] while sampling (images 1)


@dataclass
class Config:
    preset: str = "mog"
    seed: int = 0
    method: str = "walkback"  # "walkback" (VW; train.heating=fixed: the NET-style arm) | "ddpm"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    mlp: MLPConfig = field(default_factory=MLPConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    rate: RateConfig = field(default_factory=RateConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)


CHOICES: dict[str, tuple[str, ...]] = {
    "method": ("walkback", "ddpm"),
    "diffusion.beta_schedule": ("linear", "cosine"),
    "data.name": TOY_DATASETS + IMAGE_DATASETS,
    "model.backbone": ("mlp", "unet", "conv2017", "rate"),
    "train.amp": ("none", "bf16"),
    "train.noise": ("global", "streams"),
    "model.form": ("2017", "conditioned"),
    "model.mean_scale": ("none", "noise", "denoise"),
    "model.noise_scale": ("auto", "temperature", "beta"),
    "train.objective": ("paper", "released", "bound", "decoupled"),
    "train.decoupled_scale": ("heating", "learned"),
    "train.heating": ("model", "fixed"),
    "train.mode": ("online", "accumulate", "transitions"),
    "train.device": ("auto", "cpu", "cuda"),
}


INF = math.inf
# Every numeric key's valid range, checked once by ``validate``: (low, high, low included, high
# included). Floats must also be finite. Cross-key rules (n1 <= num_steps, ...) follow it.
AT_LEAST_0 = (0, INF, True, False)  # [0, inf)
AT_LEAST_1 = (1, INF, True, False)  # [1, inf)
ABOVE_0 = (0, INF, False, False)  # (0, inf)
FROM_0_BELOW_1 = (0, 1, True, False)  # [0, 1): decays, rates
RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "seed": AT_LEAST_0,
    "data.num_train": AT_LEAST_1,
    "data.num_heldout": AT_LEAST_1,
    "data.resolution": AT_LEAST_0,
    "model.alpha": (0, 1, False, False),
    "model.min_var": AT_LEAST_0,
    "model.min_var_at_1": AT_LEAST_0,
    "model.denoised_clip": AT_LEAST_0,
    "model.init_var": ABOVE_0,
    "model.cond_dim": (2, INF, True, False),
    "mlp.hidden": AT_LEAST_1,
    "mlp.depth": AT_LEAST_1,
    "unet.channels": AT_LEAST_1,
    "unet.num_res_blocks": AT_LEAST_1,
    "unet.dropout": FROM_0_BELOW_1,
    "rate.leak": (0, 1, False, False),
    "rate.hidden_units": AT_LEAST_0,
    "rate.relax_steps": AT_LEAST_0,
    "rate.gain": ABOVE_0,
    "rate.inner_steps": AT_LEAST_0,
    "rate.input_scale": AT_LEAST_0,
    "rate.hidden_min_var": AT_LEAST_0,
    "schedule.num_steps": AT_LEAST_1,
    "schedule.t0": ABOVE_0,
    "schedule.factor": AT_LEAST_1,
    "schedule.n1": AT_LEAST_0,
    "schedule.max_variance": AT_LEAST_0,
    "train.transition_batch": AT_LEAST_0,
    "train.loss_steps": AT_LEAST_0,
    "train.input_noise": AT_LEAST_0,
    "train.hidden_weight": AT_LEAST_0,
    "train.variance_weight": AT_LEAST_0,
    "train.steps": AT_LEAST_1,
    "train.batch_size": AT_LEAST_1,
    "train.lr": ABOVE_0,
    "train.ema": FROM_0_BELOW_1,
    "train.grad_clip": ABOVE_0,
    "train.prior_momentum": FROM_0_BELOW_1,
    "train.log_every": AT_LEAST_1,
    "train.checkpoint_every": AT_LEAST_1,
    "train.keep_checkpoints": AT_LEAST_1,
    "train.time_limit_s": AT_LEAST_0,
    "train.threads": AT_LEAST_0,
    "train.stream_block": AT_LEAST_1,
    "train.dist_timeout_s": ABOVE_0,
    "sample.num_samples": AT_LEAST_1,
    "sample.extra_steps": AT_LEAST_0,
    "sample.extra_temperature": ABOVE_0,
    "sample.batch_size": AT_LEAST_1,
    "sample.num_paths": AT_LEAST_1,
    "sample.start_step": AT_LEAST_0,
    "sample.start_rank": AT_LEAST_0,
    "sample.start_components": AT_LEAST_0,
    "diffusion.levels": AT_LEAST_1,
    "diffusion.beta_start": (0, 1, False, False),
    "diffusion.beta_end": (0, 1, False, False),
    "diffusion.eta": (0, 1, True, True),
    "diffusion.clip": AT_LEAST_0,
}


# The keys that were in ``model`` before each backbone had its own section, and where they are
# now. A config or ``--set`` that names one is refused with its new name; saved runs of that
# layout are moved over by ``config_from_saved``.
MOVED: dict[str, str] = {
    "model.hidden": "mlp.hidden", "model.depth": "mlp.depth",
    "model.channels": "unet.channels", "model.channel_mults": "unet.channel_mults",
    "model.num_res_blocks": "unet.num_res_blocks", "model.dropout": "unet.dropout",
    "model.hidden_units": "rate.hidden_units", "model.symmetric": "rate.symmetric",
    "model.relax_steps": "rate.relax_steps", "model.rate_gain": "rate.gain",
    "model.inner_steps": "rate.inner_steps", "model.input_scale": "rate.input_scale",
    "model.hidden_min_var": "rate.hidden_min_var",
}
BACKBONE_SECTIONS = ("mlp", "unet", "rate")
# keys of removed settings that saved configs may hold; config_from_saved drops them
# keys that the DDPM baseline does not read (its forward process, loss and sampling levels come
# from the diffusion section: docs/method.md, "Baselines"); method=ddpm keeps them at their
# defaults, so that a key means one thing
VW_ONLY = ("schedule.t0", "schedule.factor", "schedule.n1", "schedule.max_variance",
           "model.alpha", "model.min_var", "model.min_var_at_1", "model.mean_scale",
           "model.denoised_clip",
           "model.init_var", "model.noise_scale", "train.objective", "train.mode",
           "train.transition_batch", "train.loss_steps", "train.hidden_weight", "train.prior_momentum",
           "train.decoupled_scale", "train.variance_weight", "train.temperature_jitter",
           "train.input_noise", "sample.extra_temperature")
DROPPED = ("train.max_file_mb",)  # file splitting: checkpoints and models are written whole


def interval(low: float, high: float, low_in: bool, high_in: bool) -> str:
    """``[0, 1)``-style text of a range."""
    return f"{'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"


def check_range(key: str, value: float, low: float, high: float, low_in: bool,
                high_in: bool) -> None:
    """Raise ``ConfigError`` naming ``key``, ``value`` and the range unless ``value`` is in it."""
    inside = math.isfinite(value) and (low <= value if low_in else low < value) and \
        (value <= high if high_in else value < high)
    if not inside:
        raise ConfigError(f"config key {key}: must be in {interval(low, high, low_in, high_in)}"
                          f"{' and finite' if high == INF else ''}, got {value}")


def _parse(key: str, raw: str, kind: type) -> Any:
    """Parse a ``--set`` string into ``kind`` (bool, int, float or str)."""
    try:
        if kind is bool:
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return raw.lower() in ("true", "1")
        return kind(raw)
    except ValueError:
        raise ConfigError(f"--set {key}={raw}: expected a value of type {kind.__name__}") from None


def _coerce(key: str, value: Any, kind: type) -> Any:
    """Check a JSON value against the field type (ints are accepted for floats)."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not kind:
        raise ConfigError(f"config key {key}: expected {kind.__name__}, got {value!r}")
    return value


def _field_types(obj: Any) -> dict[str, type]:
    hints = {"bool": bool, "int": int, "float": float, "str": str}
    return {f.name: hints.get(str(f.type), f.type) for f in dataclasses.fields(obj)}


def _set(config: Config, key: str, value: Any, parse: bool) -> None:
    if key in MOVED:
        raise ConfigError(f"config key {key}: moved to {MOVED[key]}")
    *parents, leaf = key.split(".")
    target: Any = config
    for part in parents:
        if not dataclasses.is_dataclass(target) or part not in _field_types(target):
            raise ConfigError(f"unknown config key: {key}")
        target = getattr(target, part)
    types = _field_types(target) if dataclasses.is_dataclass(target) else {}
    if leaf not in types or dataclasses.is_dataclass(getattr(target, leaf)):
        raise ConfigError(f"unknown config key: {key}")
    kind = types[leaf]
    setattr(target, leaf, _parse(key, value, kind) if parse else _coerce(key, value, kind))


def apply_overrides(config: Config, overrides: list[str]) -> Config:
    """Apply ``key=value`` strings (``train.lr=1e-3``) in place; returns ``config``."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item}: expected key=value")
        key, raw = item.split("=", 1)
        _set(config, key.strip(), raw.strip(), parse=True)
    return validate(config)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_from_dict(tree: dict[str, Any], base: Config | None = None) -> Config:
    """Build a config from a nested dict (a preset or a saved config.json); rejects unknown keys."""
    config = base if base is not None else Config()
    for key, value in _flatten(tree).items():
        _set(config, key, value, parse=False)
    return validate(config)


def config_from_saved(tree: dict[str, Any]) -> Config:
    """A config that a run saved (config.json, a checkpoint, a model folder), in today's layout:

    - Files written before each backbone had its own section (no ``mlp``, ``unet`` or ``rate``
      section) hold those keys in ``model``: they move to their section (``MOVED``; the rate
      network's ``model.rate_gain`` is ``rate.gain``), and a rate network's ``model.alpha``,
      which was its leak a, is ``rate.leak`` (its ``model.alpha`` takes the default, unused).
    - Files written before ``model.noise_scale`` existed trained ``train.heating=fixed`` with
      T-scaled noise, which is ``noise_scale=temperature`` now (the default ``auto`` means
      ``beta`` there).
    - Keys of removed settings (``DROPPED``: ``train.max_file_mb``) are dropped.
    - A DDPM run's keys that the DDPM does not read (``VW_ONLY``) take their defaults."""
    tree = dict(tree)
    if tree.get("method") == "ddpm":
        for key in VW_ONLY:
            section, leaf = key.split(".")
            if isinstance(tree.get(section), dict) and leaf in tree[section]:
                tree[section] = {k: v for k, v in tree[section].items() if k != leaf}
    for key in DROPPED:
        section, leaf = key.split(".")
        if isinstance(tree.get(section), dict) and leaf in tree[section]:
            tree[section] = {k: v for k, v in tree[section].items() if k != leaf}
    model = tree.get("model", {})
    if isinstance(model, dict) and not any(s in tree for s in BACKBONE_SECTIONS):
        model = dict(model)
        for old, new in MOVED.items():
            if old.split(".")[1] in model:
                section, leaf = new.split(".")
                tree.setdefault(section, {})[leaf] = model.pop(old.split(".")[1])
        if model.get("backbone") == "rate" and "alpha" in model:
            tree.setdefault("rate", {})["leak"] = model.pop("alpha")
        tree["model"] = model
    train = tree.get("train", {})
    if isinstance(model, dict) and isinstance(train, dict) and "noise_scale" not in model \
            and train.get("heating") == "fixed":
        tree["model"] = {**model, "noise_scale": "temperature"}
    return config_from_dict(tree)


def config_to_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def config_to_json(config: Config) -> str:
    return json.dumps(config_to_dict(config), indent=2, sort_keys=True)


def validate(config: Config) -> Config:
    """Check choices and ranges; raise ``ConfigError`` naming the key."""
    flat = _flatten(config_to_dict(config))
    for key, options in CHOICES.items():
        if flat[key] not in options:
            raise ConfigError(f"config key {key}: {flat[key]!r} is not one of {', '.join(options)}")
    for key, bounds in RANGES.items():
        check_range(key, flat[key], *bounds)
    if flat["model.cond_dim"] % 2:
        raise ConfigError(f"config key model.cond_dim: must be even, got {flat['model.cond_dim']}")
    for key in ("rate.hidden_units", "rate.hidden_min_var"):
        if flat[key] and flat["model.backbone"] != "rate":
            raise ConfigError(f"config key {key}: needs model.backbone=rate")
    if flat["model.backbone"] == "rate" and flat["model.alpha"] != ModelConfig.alpha:
        raise ConfigError("config key model.alpha: not used by model.backbone=rate, whose mean "
                          "(1 - a) s + a phi(W s + b) has the leak a = rate.leak")
    if flat["train.hidden_weight"] != 1 and not flat["rate.hidden_units"]:
        raise ConfigError("config key train.hidden_weight: needs hidden units (rate.hidden_units > 0)")
    if flat["train.objective"] == "bound" and (flat["train.mode"] != "accumulate"
                                               or flat["train.loss_steps"]):
        raise ConfigError("config key train.objective: 'bound' needs train.mode=accumulate "
                          "and train.loss_steps=0 (the whole path is differentiated)")
    if flat["train.objective"] == "bound" and flat["model.backbone"] == "rate":
        raise ConfigError("config key train.objective: 'bound' is a bound on log p(v, h) for the "
                          "rate network (hidden units included), which grows without limit as h "
                          "becomes predictable; use 'paper'")
    if flat["train.objective"] != "decoupled":
        for key in ("train.decoupled_scale", "train.variance_weight"):
            if flat[key] != getattr(TrainConfig, key.split(".")[1]):
                raise ConfigError(f"config key {key}: needs train.objective=decoupled")
    if not 0 <= flat["sample.start_step"] <= flat["schedule.num_steps"]:
        raise ConfigError(f"config key sample.start_step: {flat['sample.start_step']} must be in "
                          f"[0, schedule.num_steps = {flat['schedule.num_steps']}]")
    save_minutes(flat["train.save_minutes"])
    for key in ("sample.start_rank", "sample.start_components"):
        if flat[key] and not flat["sample.start_step"]:
            raise ConfigError(f"config key {key}: shapes the prior fitted for "
                              "sample.start_step, which is 0 (set it, e.g. to schedule.num_steps)")
    if flat["sample.start_rank"] and flat["sample.start_components"] > 1:
        raise ConfigError("config key sample.start_components: a mixture prior has no "
                          "sample.start_rank (set one of them to 0)")
    if flat["sample.start_step"] and flat["train.heating"] != "model":
        raise ConfigError("config key sample.start_step: needs train.heating=model (the fixed "
                          "diffusion's rates depend on K)")
    if flat["model.noise_scale"] == "beta" and flat["train.heating"] != "fixed":
        raise ConfigError("config key model.noise_scale: 'beta' needs train.heating=fixed")
    if flat["method"] == "ddpm":
        _validate_ddpm(flat)
    if flat["train.temperature_jitter"] and (flat["train.mode"] != "transitions"
                                             or flat["train.heating"] != "model"):
        raise ConfigError("config key train.temperature_jitter: needs train.mode=transitions and "
                          "train.heating=model (the operator's own heating)")
    if flat["train.input_noise"] and (flat["train.mode"] != "transitions"
                                      or flat["train.objective"] != "paper"):
        raise ConfigError("config key train.input_noise: needs train.mode=transitions and "
                          "train.objective=paper")
    if flat["train.graph_heating"] and (flat["method"] != "walkback" or flat["train.compile"]
                                        or flat["train.heating"] != "model"):
        raise ConfigError("config key train.graph_heating: replays the operator's own heating "
                          "(method=walkback, train.heating=model) and does not combine with "
                          "train.compile")
    if not 0 <= flat["schedule.n1"] <= flat["schedule.num_steps"]:
        raise ConfigError("config key schedule.n1: must be in [0, schedule.num_steps]")
    if flat["model.min_var_at_1"]:
        _validate_floor(flat)
    if flat["model.denoised_clip"] and flat["model.mean_scale"] != "denoise":
        raise ConfigError("config key model.denoised_clip: needs model.mean_scale=denoise")
    if flat["model.mean_scale"] == "denoise" and flat["model.backbone"] == "rate":
        raise ConfigError("config key model.mean_scale: the rate network's mean is its own "
                          "(rate.leak); denoise needs another backbone")
    return config


def save_minutes(spec: str) -> list[float]:
    """``train.save_minutes`` ("1,2,5") as sorted minutes; ``[]`` when empty."""
    try:
        minutes = sorted({float(m) for m in spec.split(",") if m.strip()})
    except ValueError:
        raise ConfigError(f"config key train.save_minutes: {spec!r} is not a comma list of "
                          "minutes (e.g. 1,2,5)") from None
    if any(not 0 < m < float("inf") for m in minutes):
        raise ConfigError(f"config key train.save_minutes: {spec!r}: minutes must be > 0")
    return minutes


def _validate_floor(flat: dict[str, Any]) -> None:
    """``model.min_var_at_1 > 0``: a geometric floor between two positive floors, over a schedule
    that heats above T = 1 (``method=ddpm`` refuses the key: ``VW_ONLY``)."""
    if not flat["model.min_var"] > 0:
        raise ConfigError("config key model.min_var_at_1: needs model.min_var > 0 (the floor "
                          "goes geometrically from min_var_at_1 to min_var)")
    t0, factor = flat["schedule.t0"], flat["schedule.factor"]
    geometric = flat["schedule.num_steps"] - flat["schedule.n1"]
    top = t0 * factor ** (geometric - 1) if geometric else 1.0
    if not top > 1:
        raise ConfigError(f"config key model.min_var_at_1: needs a schedule whose top temperature "
                          f"is above 1, got {top:g}")


def _validate_ddpm(flat: dict[str, Any]) -> None:
    """``method=ddpm``: a conditioned MLP or U-Net, levels and sampling steps that fit, and the
    keys it does not read (``VW_ONLY``) at their defaults."""
    if flat["model.backbone"] not in ("mlp", "unet"):
        raise ConfigError(f"config key model.backbone: method=ddpm takes mlp or unet, "
                          f"got {flat['model.backbone']!r}")
    if flat["model.form"] != "conditioned":
        raise ConfigError("config key model.form: method=ddpm needs 'conditioned' (the network "
                          "sees the noise level)")
    if flat["train.heating"] != "model" or flat["sample.start_step"]:
        raise ConfigError("config keys train.heating and sample.start_step: for method=walkback "
                          "only (the DDPM's forward process is fixed and starts at N(0, I))")
    if not 1 <= flat["schedule.num_steps"] <= flat["diffusion.levels"]:
        raise ConfigError("config key schedule.num_steps: method=ddpm samples on at most "
                          f"diffusion.levels={flat['diffusion.levels']} levels, got "
                          f"{flat['schedule.num_steps']}")
    if flat["diffusion.beta_start"] > flat["diffusion.beta_end"]:
        raise ConfigError("config keys diffusion.beta_start, diffusion.beta_end: need "
                          "beta_start <= beta_end")
    defaults = _flatten(config_to_dict(Config()))
    for key in VW_ONLY:
        if flat[key] != defaults[key]:
            raise ConfigError(f"config key {key}: method=ddpm does not read it (the DDPM's forward "
                              f"process, loss and sampling levels come from diffusion.*); leave "
                              f"it at {defaults[key]!r}, got {flat[key]!r}")
