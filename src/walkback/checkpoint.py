"""Training checkpoints: one safetensors file of tensors plus a JSON sidecar, written atomically.

``ckpt_00001000.safetensors`` holds the model, EMA, optimizer and RNG tensors;
``ckpt_00001000.json`` holds the resolved config, the step, the optimizer's non-tensor state and
the sha256 of the safetensors file. The JSON is written last: a checkpoint without a valid JSON
sidecar, or whose file does not match the recorded checksum, is refused with an error naming it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import CheckpointError

__all__ = [
    "Checkpoint",
    "atomic_write_bytes",
    "atomic_write_text",
    "sha256_file",
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


def _atomic_write(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace`` (never half-written)."""
    _atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(directory: Path, step: int, checkpoint: Checkpoint) -> Path:
    """Write ``ckpt_{step}.safetensors`` then its JSON sidecar; returns the sidecar's path."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = directory / f"ckpt_{step:08d}"
    tensors = {k: v.detach().contiguous().cpu() for k, v in checkpoint.tensors.items()}
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".ckpt.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, stem.with_suffix(".safetensors"))
    finally:
        Path(tmp).unlink(missing_ok=True)
    meta = {**checkpoint.meta, "step": step, "sha256": sha256_file(stem.with_suffix(".safetensors"))}
    atomic_write_text(stem.with_suffix(".json"), json.dumps(meta, indent=2))
    return stem.with_suffix(".json")


def load_checkpoint(path: Path, *, device: str = "cpu") -> Checkpoint:
    """Read a checkpoint given its ``.json`` or ``.safetensors`` path, verifying its checksum."""
    path = Path(path)
    sidecar, weights = path.with_suffix(".json"), path.with_suffix(".safetensors")
    for file in (sidecar, weights):
        if not file.is_file():
            raise CheckpointError(f"{file}: checkpoint file not found")
    try:
        meta = json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{sidecar}: corrupt checkpoint metadata ({exc})") from None
    if not isinstance(meta, dict) or "sha256" not in meta or "step" not in meta:
        raise CheckpointError(f"{sidecar}: checkpoint metadata lacks 'step' or 'sha256'")
    if sha256_file(weights) != meta["sha256"]:
        raise CheckpointError(f"{weights}: checksum mismatch (truncated or corrupt checkpoint)")
    try:
        tensors = load_file(str(weights), device=device)
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{weights}: unreadable safetensors file ({exc})") from None
    return Checkpoint(tensors, meta)


def list_checkpoints(directory: Path) -> list[Path]:
    """Sidecar paths of the checkpoints in ``directory``, oldest first."""
    return sorted(Path(directory).glob("ckpt_*.json"))


def latest_checkpoint(directory: Path) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1] if found else None


def prune_checkpoints(directory: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints."""
    for sidecar in list_checkpoints(directory)[:-keep] if keep > 0 else []:
        sidecar.unlink(missing_ok=True)
        sidecar.with_suffix(".safetensors").unlink(missing_ok=True)


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
