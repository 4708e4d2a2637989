"""Training checkpoints: one safetensors file of tensors plus a JSON sidecar, written atomically.

With ``train.max_file_mb`` the safetensors file is split into parts of at most that size
(``walkback.parts``), so checkpoints fit through size-capped transfers; loading joins them.

``ckpt_00001000.safetensors`` holds the model, EMA, optimizer and RNG tensors;
``ckpt_00001000.json`` holds the resolved config, the step, the optimizer's non-tensor state and
the sha256 of the safetensors file. The JSON is written last: a checkpoint without a valid JSON
sidecar, or whose file does not match the recorded checksum, is refused with an error naming it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes, save as save_bytes

from . import parts
from .atomic import atomic_write_text
from .errors import CheckpointError

__all__ = [
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "list_checkpoints",
    "latest_checkpoint",
    "prune_checkpoints",
    "optimizer_to_tensors",
    "optimizer_from_tensors",
]


@dataclass
class Checkpoint:
    """``tensors``: name -> tensor (prefixes ``model.``, ``ema.``, ``optim.``, ``rng.``);
    ``meta``: JSON-friendly dict (``config``, ``step``, ``optimizer`` groups, ...)."""

    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]


def save_checkpoint(directory: Path, step: int, checkpoint: Checkpoint, *,
                    max_file_bytes: int = 0) -> Path:
    """Write ``ckpt_{step}.safetensors`` (split into parts of at most ``max_file_bytes`` when
    positive and needed: ``parts``) then its JSON sidecar; returns the sidecar's path."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = directory / f"ckpt_{step:08d}"
    payload = save_bytes({k: v.detach().contiguous().cpu() for k, v in checkpoint.tensors.items()})
    parts.write_bytes(stem.with_suffix(".safetensors"), payload, max_file_bytes)
    meta = {**checkpoint.meta, "step": step, "sha256": hashlib.sha256(payload).hexdigest()}
    atomic_write_text(stem.with_suffix(".json"), json.dumps(meta, indent=2))
    return stem.with_suffix(".json")


def load_checkpoint(path: Path, *, device: str = "cpu") -> Checkpoint:
    """Read a checkpoint given its ``.json`` or ``.safetensors`` path (whole or split into
    parts), verifying its checksum."""
    path = Path(path)
    sidecar, weights = path.with_suffix(".json"), path.with_suffix(".safetensors")
    if not sidecar.is_file():
        raise CheckpointError(f"{sidecar}: checkpoint file not found")
    if not parts.exists(weights):
        raise CheckpointError(f"{weights}: checkpoint file not found")
    try:
        meta = json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{sidecar}: corrupt checkpoint metadata ({exc})") from None
    if not isinstance(meta, dict) or "sha256" not in meta or "step" not in meta:
        raise CheckpointError(f"{sidecar}: checkpoint metadata lacks 'step' or 'sha256'")
    payload = parts.read_bytes(weights)
    if hashlib.sha256(payload).hexdigest() != meta["sha256"]:
        raise CheckpointError(f"{weights}: checksum mismatch (truncated or corrupt checkpoint)")
    try:
        tensors = {k: v.to(device) for k, v in load_bytes(payload).items()}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{weights}: unreadable safetensors file ({exc})") from None
    return Checkpoint(tensors, meta)


def list_checkpoints(directory: Path) -> list[Path]:
    """Sidecar paths of the checkpoints in ``directory``, oldest first."""
    return sorted(p for p in Path(directory).glob("ckpt_*.json") if p.stem[5:].isdigit())


def latest_checkpoint(directory: Path) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1] if found else None


def prune_checkpoints(directory: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints."""
    for sidecar in list_checkpoints(directory)[:-keep] if keep > 0 else []:
        sidecar.unlink(missing_ok=True)
        parts.remove(sidecar.with_suffix(".safetensors"))


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer's state dict into tensors (``optim.{param}.{name}``) and JSON."""
    state = optimizer.state_dict()
    tensors = {
        f"optim.{index}.{name}": value
        for index, per_param in state["state"].items()
        for name, value in per_param.items()
        if isinstance(value, torch.Tensor)
    }
    return tensors, {"param_groups": state["param_groups"]}


def optimizer_from_tensors(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict
) -> None:
    """Inverse of ``optimizer_to_tensors``: restore the optimizer's full state."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
