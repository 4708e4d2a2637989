"""Presets are data: nested overrides of ``config.Config`` defaults, one per data set."""

from __future__ import annotations

import copy
from typing import Any

from .config import VW_ONLY, Config, config_from_dict
from .errors import ConfigError

__all__ = ["PRESETS", "get_preset"]

# 2-D toys: the 2017 operator form (backbone blind to T), K = 30 heating steps, the first 5 at
# T = 1, then T = 1.2^j. The choices were measured against variants (docs/RESULTS.md).
_TOY: dict[str, Any] = {
    "data": {"num_train": 20000, "num_heldout": 5000},
    "model": {"backbone": "mlp", "form": "2017"},
    "mlp": {"hidden": 128, "depth": 3},
    "schedule": {"num_steps": 30, "t0": 1.0, "factor": 1.2, "n1": 5},
    "train": {"steps": 1000, "batch_size": 500, "lr": 1e-3, "mode": "accumulate"},
}

# The rate network (docs/RESULTS.md, "Rate network"): hidden units that start nonlinear
# (input_scale), fast hidden sub-steps, rates in (-1.5, 1.5), a small initial noise variance, and
# a noise floor for the hidden units (hidden_min_var) so that the heating erases what they hold.
_RATE_MODEL: dict[str, Any] = {"backbone": "rate", "init_var": 0.001}
_RATE: dict[str, Any] = {"hidden_units": 64, "relax_steps": 10, "leak": 0.5, "input_scale": 4.0,
                         "inner_steps": 2, "gain": 1.5, "hidden_min_var": 0.01}
# mog: heat to T_K = 1.4^24 (about 3,200) so that the top forgets which mode a path started from
_MOG_RATE_SCHEDULE: dict[str, Any] = {"factor": 1.4}
# the spiral's settings: only 3% of the hidden units' walk-back terms (train.hidden_weight)
_SPIRAL_RATE: dict[str, Any] = {"input_scale": 2.0, "inner_steps": 5}


# The operator of the U-Net presets and of the tuned 2-D presets (docs/method.md): the backbone
# told T, the noise-scaled mean, the variance floor 0.01.
_IMAGE_OPERATOR: dict[str, Any] = {"form": "conditioned", "mean_scale": "noise", "min_var": 0.01}

# The tuned 2-D recipe (docs/RESULTS.md, "Heating top", "Steps past K at another temperature"
# and "A mixture start prior on 2-D data"): the image presets' operator (backbone told T,
# noise-scaled mean, floor 0.01 on the hot steps, one update per minibatch of shuffled
# transitions) heated to a low top, the floor shrinking to 1e-4 at T = 1, the paper's n1 = 5
# steps at T = 1 first (then T_K = 1.1^24, about 9.8) and every path at its own jittered
# temperatures; the chains start from a mixture of diagonal Gaussians fitted at the end of
# training to training points heated to the top (`_mixture_start`). At 1.5 CPU minutes on mog (3
# seeds) dropping any of the T-aware backbone, the floor or the transitions cut the samples within
# 3 std from 0.998 to 0.25-0.51, and the image presets' top (1.5^29) cost 0.5 nats of bound. At
# 800 minibatches n1 = 5 took the spiral's nearest ratio from 1.22 to 1.07 and its bound from
# +1.48 to +1.61 nats (mog unchanged); the jitter keeps the chains on the data at extra
# temperatures off the schedule. At equal CPU minutes (3 seeds, one call each) the lower top with
# the mixture start raised the bound against the earlier top 1.2^24 (about 80) with the prior
# learned in training: mog 0.778 +- 0.009 against 0.721 +- 0.037 nats (9 components, one per
# mode), the spiral 1.70 +- 0.02 against 1.59 +- 0.01 (20 components), higher in every seed, the
# samples as close or closer to the data.
_TOY_TUNED: dict[str, Any] = {
    "model": {**_IMAGE_OPERATOR, "min_var_at_1": 1e-4},
    "schedule": {"factor": 1.1, "n1": 5},
    "train": {"mode": "transitions", "batch_size": 256, "transition_batch": 256,
              "temperature_jitter": True},
}


def _merge(base: dict[str, Any], *changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of preset ``base`` with each of ``changes`` applied: a section's keys updated
    (``{"train": {...}}``), a top-level key (``"method"``) replaced."""
    preset = copy.deepcopy(base)
    for change in changes:
        for section, values in change.items():
            if isinstance(values, dict):
                preset.setdefault(section, {}).update(values)
            else:
                preset[section] = values
    return preset


def _toy(name: str, **changes: Any) -> dict[str, Any]:
    return _merge(_TOY, {"data": {"name": name}}, changes)


def _mixture_start(components: int) -> dict[str, Any]:
    """The chains of a K = 30 preset start at its top from a mixture of ``components`` diagonal
    Gaussians, fitted at the end of training to training data heated to the top and saved with
    the model (docs/method.md, "A mixture start prior")."""
    return {"sample": {"start_step": 30, "start_components": components}}


# Images (GPU). "-paper" presets follow the 2017 runs (docs/method.md, "The 2017 code": MNIST
# MLP of width 1200,
# lr 1e-5; CIFAR-10 / SVHN / CelebA conv encoder + MLP + two deconv heads, lr 1e-4, batch 100,
# T_0 = 1, f = 2, heating stopped once T * var reaches the data variance). The others use the
# temperature-conditioned U-Net. These schedules are starting points: docs/RESULTS.md says
# which were measured.
# U-Net presets: f = 1.5, the noise-scaled mean and lr 5e-4 were the best of 8 two-minute MNIST
# variants, and the variance floor min_var = 0.01 (noise std >= 0.1 sqrt(T)) improved on them
# (docs/RESULTS.md, "MNIST variants"). celeba32 was measured with the same settings; cifar10,
# svhn and celeba64 inherit them unmeasured.
_UNET: dict[str, Any] = {
    "data": {"root": "data"},
    "model": {"backbone": "unet", **_IMAGE_OPERATOR},
    "unet": {"channels": 64, "channel_mults": "1,2,2", "num_res_blocks": 2},
    "schedule": {"num_steps": 30, "t0": 1.0, "factor": 1.5, "n1": 0},
    # one minibatch = 256 heating paths whose 30 x 256 transitions, shuffled, make 30 updates of
    # 256 transitions each (the heating forwards are shared by those 30 updates)
    "train": {"steps": 1000, "batch_size": 256, "transition_batch": 256, "lr": 5e-4,
              "mode": "transitions", "dequantize": True, "ema": 0.999, "amp": "bf16",
              "log_every": 10, "checkpoint_every": 100},
    "sample": {"num_samples": 10000, "batch_size": 1000, "num_paths": 16},
}
_PAPER: dict[str, Any] = {
    "data": {"root": "data"},
    "model": {"backbone": "conv2017", "form": "2017"},
    "schedule": {"num_steps": 30, "t0": 1.0, "factor": 2.0, "n1": 0, "max_variance": 1.0},
    "train": {"steps": 20000, "batch_size": 100, "lr": 1e-4, "mode": "online", "ema": 0.999,
              "log_every": 100, "checkpoint_every": 2000},
    "sample": {"num_samples": 10000, "batch_size": 1000, "num_paths": 16},
}


# (no hidden noise floor: with hidden_min_var = 0.01 MNIST narrowed to three classes)
_MNIST_RATE_MODEL: dict[str, Any] = {**_RATE_MODEL, "form": "2017", "mean_scale": "none",
                                     "min_var": 1e-4}
_MNIST_RATE: dict[str, Any] = {**_RATE, "hidden_units": 256, "input_scale": 2.0, "inner_steps": 3,
                               "hidden_min_var": 0.0}
# f = 1.3 (T_K = 1.3^29, about 2,000): with 1.17 (T_K = 95) the top of the heating
# still held each digit's shape and the class histogram was uneven; hidden_weight as spiral-rate
_MNIST_RATE_TRAIN: dict[str, Any] = {"amp": "none", "hidden_weight": 0.03, "steps": 1500}


def _image(base: dict[str, Any], name: str, **changes: Any) -> dict[str, Any]:
    return _merge(base, {"data": {"name": name}}, changes)


# The tuned 2-D recipe on the U-Net presets (docs/RESULTS.md, "MNIST, 1.5 minutes each"): the
# floor shrinking to 1e-4 at T = 1, the paper's n1 = 5 steps at T = 1 first, then T_K = 1.3^24
# (about 545; the fitted prior's variance 3.4 instead of the `mnist` preset's 740-860) and
# jittered temperatures. At 1.5 minutes on one NVIDIA H100 (seeds 0, 1, 2) it took the `mnist`
# preset's FID from 183, 155 and 124 to 94, 75 and 39; turned off one at a time (seed 2) the
# floor mattered most (FID 110 without it), then the top (58) and n1 (50, one class). The
# CIFAR-10 and CelebA presets carry the same four keys and are not measured yet; among the image
# presets only MNIST's starts from a mixture (below).
_UNET_TUNED: dict[str, Any] = {
    "model": {"min_var_at_1": 1e-4},
    "schedule": {"factor": 1.3, "n1": 5},
    "train": {"temperature_jitter": True},
}
# MNIST's chains start from a mixture of 10 diagonal Gaussians fitted at the end of training to
# 10,000 training images heated to the top (step K = 30) and saved with the model (docs/RESULTS.md,
# "A mixture start prior, three seeds"): at 5 minutes on one NVIDIA H100 (seeds 0, 1, 2, each
# against the same model's learned prior) FID fell in every seed (by 2.3 +- 0.4), classifier FID
# from 81 to 36 and the smallest class rose from 3.7% to 7.4%; the bound did not move.
_MNIST_START = _mixture_start(10)


PRESETS: dict[str, dict[str, Any]] = {
    "mog": _toy("mog"),
    "spiral": _toy("spiral"),
    "circle": _toy("circle"),
    "ring8": _toy("ring8"),
    "checkerboard": _toy("checkerboard"),
    # the stochastic recurrent rate network (docs/method.md, "The rate network"):
    # state [v; h], one unconstrained W, leak a = rate.leak; "-sym" constrains W = W^T
    "mog-rate": _toy("mog", model=_RATE_MODEL, rate=_RATE, schedule=_MOG_RATE_SCHEDULE,
                     train={"steps": 3000}),
    "mog-rate-sym": _toy("mog", model=_RATE_MODEL, rate={**_RATE, "symmetric": True},
                         schedule=_MOG_RATE_SCHEDULE, train={"steps": 3000}),
    "mog-tuned": _toy("mog", **_TOY_TUNED, **_mixture_start(9)),
    "spiral-tuned": _toy("spiral", **_TOY_TUNED, **_mixture_start(20)),
    "spiral-rate": _toy("spiral", model=_RATE_MODEL, rate={**_RATE, **_SPIRAL_RATE},
                        train={"steps": 2000, "lr": 3e-3, "hidden_weight": 0.03}),
    "mnist": _image(_UNET, "mnist"),
    "mnist-tuned": _image(_UNET, "mnist", **_UNET_TUNED, **_MNIST_START),
    # the rate network on MNIST: 784 visible + 256 hidden units, the U-Net preset's training with
    # a slower heating (f = 1.3) and 1,500 minibatches (a million weights: it trains on a CPU too)
    "mnist-rate": _image(_UNET, "mnist", model=_MNIST_RATE_MODEL, rate=_MNIST_RATE,
                         schedule={"factor": 1.3}, train=_MNIST_RATE_TRAIN),
    "mnist-rate-sym": _image(_UNET, "mnist", model=_MNIST_RATE_MODEL,
                             rate={**_MNIST_RATE, "symmetric": True}, schedule={"factor": 1.3},
                             train=_MNIST_RATE_TRAIN),
    "mnist-paper": _image(_PAPER, "mnist", model={"backbone": "mlp"},
                          mlp={"hidden": 1200, "depth": 3},
                          schedule={"num_steps": 10, "factor": 2.0},
                          train={"lr": 1e-5}),
    "cifar10": _image(_UNET, "cifar10"),
    "cifar10-tuned": _image(_UNET, "cifar10", **_UNET_TUNED),
    "cifar10-paper": _image(_PAPER, "cifar10"),
    "svhn": _image(_UNET, "svhn"),
    "celeba32": _image(_UNET, "celeba", data={"resolution": 32}),
    "celeba32-tuned": _image(_UNET, "celeba", data={"resolution": 32}, **_UNET_TUNED),
    "celeba64": _image(_UNET, "celeba", data={"resolution": 64},
                       unet={"channel_mults": "1,2,2,2"}),
}


# The baselines, on the same backbones, loop, data, EMA and bf16 (docs/method.md, "Baselines"):
# "-diffusion": a standard DDPM (1,000 linear-beta levels, epsilon prediction, simple loss; DDIM
# with eta = 0 on schedule.num_steps = 30 levels); "-fixed": the walk-back loss on a fixed
# Gaussian diffusion with the same temperature shape (NET-style), its steps in units of beta_t,
# every step at its own temperature (n1 = 0: the network tells the steps apart by T alone) and
# one update per minibatch of transitions (on mog, one update per path gave 0.63 of the samples
# within 3 std after 1,000 minibatches, transitions 0.98: docs/RESULTS.md).
# (the DDPM's bound runs its chain on all 1,000 levels: one path, sample.num_paths = 1)
_DIFFUSION: dict[str, Any] = {"method": "ddpm", "model": {"form": "conditioned"},
                              "sample": {"num_paths": 1}}
_FIXED: dict[str, Any] = {"model": {"form": "conditioned", "mean_scale": "noise", "init_var": 0.5},
                          "schedule": {"n1": 0},
                          "train": {"heating": "fixed", "mode": "transitions"}}


# toys: one update costs a thirtieth of a VW minibatch (one level per point, no heating path);
# 15,000 updates (about a minute on 2 CPU cores) meet the mog targets with 30 DDIM steps
_TOY_DIFFUSION = {"train": {"steps": 15000}}
_IMAGE_DIFFUSION = {"diffusion": {"clip": 1.0}}  # x0_hat clamped to the pixel range


def _without(tree: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """``tree`` without ``keys`` ("section.key"): they take their defaults."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in tree.items()}
    for key in keys:
        section, leaf = key.split(".")
        out.get(section, {}).pop(leaf, None)
    return out


def _per_update(name: str) -> dict[str, Any]:
    """The checkpoint and log cadence of VW preset ``name`` (in minibatches of K x batch_size
    transitions, ``K * batch_size / transition_batch`` updates each) in minibatches of one
    update, the DDPM's. At the VW preset's 100 the MNIST DDPM wrote a checkpoint every 9 s,
    5.6% of a 5-minute arm's clock (docs/RESULTS.md, "MNIST, 1.5 minutes each")."""
    train, k = PRESETS[name]["train"], PRESETS[name]["schedule"]["num_steps"]
    updates = k * train["batch_size"] // train["transition_batch"]
    return {"train": {"checkpoint_every": train["checkpoint_every"] * updates,
                      "log_every": train["log_every"] * updates}}


for _name in ("mog", "spiral", "mnist", "cifar10", "celeba32"):
    # the VW keys of the data set's preset that the DDPM does not read go back to their defaults
    toy = _name in ("mog", "spiral")
    PRESETS[f"{_name}-diffusion"] = _merge(
        _without(PRESETS[_name], VW_ONLY), _DIFFUSION,
        *([_TOY_DIFFUSION] if toy else [_IMAGE_DIFFUSION, _per_update(_name)]))
    PRESETS[f"{_name}-fixed"] = _merge(PRESETS[_name], _FIXED)


def get_preset(name: str) -> Config:
    """The resolved ``Config`` of preset ``name``."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}")
    return config_from_dict({"preset": name, **PRESETS[name]})
