"""Run folders and what every command needs from them: the device, the configured data, the
saved config and model, and whether a folder holds a run. Used by train, sample, evaluate and
compare alike."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import torch

from .atomic import split_copy_hint
from .checkpoint import latest_checkpoint
from .config import Config, config_from_saved
from .data.loader import DataSplits, load_image_splits, load_splits
from .data.toy import TOY_DATASETS
from .errors import CheckpointError, ConfigError
from .model import MODEL_FILE, Walkback, load
from .schedule import heating_temperatures

__all__ = ["resolve_device", "run_device", "enable_fast_kernels", "amp_autocast", "load_data",
           "load_run_config", "holds_run", "load_run_model", "extra_temperature"]


def resolve_device(name: str, *, setting: str = "config key train.device") -> torch.device:
    """``auto`` -> the GPU when there is one, else the CPU; ``cuda`` without a GPU is an error
    naming ``setting`` (the config key or command-line option the name came from)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{setting}: 'cuda' requested but no GPU is available")
    return torch.device(name)


def run_device(name: str, data_name: str) -> torch.device:
    """``--device`` of a command on a trained run: ``auto`` keeps a 2-D run on the CPU (its
    chains are then the same on every machine) and takes the GPU, when there is one, for
    images."""
    return resolve_device("cpu" if name == "auto" and data_name in TOY_DATASETS else name,
                          setting="--device")


def enable_fast_kernels(device: torch.device) -> None:
    """On a GPU: let cuDNN pick the fastest convolution algorithms for the (fixed) shapes, and
    run float32 matrix products and convolutions on TF32 tensor cores (10-bit mantissa inputs,
    float32 accumulation). Nothing changes on the CPU."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cuda.matmul.allow_tf32 = True


def amp_autocast(device: torch.device | str, amp: str) -> torch.autocast:
    """bf16 autocast on ``device`` when ``amp == "bf16"`` (``train.amp``, ``--amp``), else off:
    the backbone's forward passes only; the operators cast its outputs back, so densities stay
    float32."""
    device_type = device if isinstance(device, str) else device.type
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp == "bf16")


def load_data(config: Config) -> DataSplits:
    """The configured data: toys generated from the seed, images read from ``data.root``."""
    d = config.data
    if d.name in TOY_DATASETS:
        return load_splits(d.name, d.num_train, d.num_heldout, seed=config.seed)
    return load_image_splits(d.name, root=d.root, download=d.download, resolution=d.resolution,
                             heldout_split=d.heldout_split)


def load_run_config(run_dir: Path) -> Config:
    """The resolved config saved in a run folder."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: no run here (config.json not found)")
    try:
        return config_from_saved(json.loads(path.read_text()))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc.msg})") from None


def extra_temperature(config: Config, override: float | None = None, *,
                      setting: str = "--extra-temperature") -> float:
    """``T_E`` of a run's steps past ``K``: ``override`` (from ``setting``) or the run's
    ``sample.extra_temperature``. The DDPM's steps are noise levels, not temperatures: it
    takes only 1."""
    value = config.sample.extra_temperature if override is None else float(override)
    if not value > 0:
        raise ConfigError(f"{setting}: must be > 0, got {value:g}")
    if config.method == "ddpm" and value != 1.0:
        raise ConfigError(f"{setting}: for method=walkback only (the DDPM's extra steps repeat its "
                          f"lowest noise level), got {value:g}")
    if config.model.form == "conditioned" and not config.train.temperature_jitter:
        s = config.schedule
        grid = heating_temperatures(s.num_steps, t0=s.t0, factor=s.factor, n1=s.n1).tolist()
        if not any(math.isclose(value, t, rel_tol=1e-3) for t in grid):
            below = max([t for t in grid if t < value], default=None)
            above = min([t for t in grid if t > value], default=None)
            where = " and ".join(f"{t:.4g}" for t in (below, above) if t is not None)
            warnings.warn(f"{setting} {value:g}: this operator was told T in training only at its "
                          f"schedule's temperatures (nearest: {where}); its steps between them "
                          "are untrained (train.temperature_jitter trains them; docs/method.md)")
    return value


def holds_run(run_dir: Path) -> bool:
    """A folder holds a run once its first checkpoint (or its final model) exists; what a start
    that failed before then left behind does not count."""
    return latest_checkpoint(run_dir / "checkpoints") is not None or (run_dir / "model").is_dir()


def load_run_model(run_dir: str | Path, *, device: str = "cpu") -> Walkback:
    """``walkback.model.load`` with a one-line error naming the missing weights file."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: run folder not found")
    if not (run_dir / "config.json").is_file():
        raise CheckpointError(f"{run_dir / 'config.json'}: file not found (no run here)")
    weights = run_dir / "model" / MODEL_FILE
    if not weights.is_file() and not (run_dir / MODEL_FILE).is_file():
        hint = split_copy_hint(weights) or (" (training has not finished; resume it with "
                                            "`walkback train --resume`)")
        raise CheckpointError(f"{weights}: file not found{hint}")
    return load(run_dir, device=device)
