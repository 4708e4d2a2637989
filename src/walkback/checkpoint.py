"""Training checkpoints: one safetensors file of tensors plus a JSON sidecar, written atomically.

``ckpt_00001000.safetensors`` holds the model, EMA, optimizer and RNG tensors and, in its
metadata, the resolved config, the step and the optimizer's non-tensor state (so the checksum
covers them); ``ckpt_00001000.json`` repeats that metadata with the sha256 of the safetensors
file. The JSON is written last: a checkpoint without a valid JSON sidecar, whose file does not
match the recorded checksum, or whose sidecar differs from the metadata inside the file, is
refused with an error naming it.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes, save as save_bytes

from .atomic import atomic_write_bytes, atomic_write_text, split_copy_hint
from .errors import CheckpointError

META_KEY = "walkback"  # the safetensors metadata entry that holds the checkpoint's JSON

__all__ = [
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "list_checkpoints",
    "latest_checkpoint",
    "load_latest_intact",
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


def save_checkpoint(directory: Path, step: int, checkpoint: Checkpoint) -> Path:
    """Write ``ckpt_{step}.safetensors`` then its JSON sidecar, each atomically; returns the
    sidecar's path."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = directory / f"ckpt_{step:08d}"
    meta = {**checkpoint.meta, "step": step}
    payload = save_bytes({k: v.detach().contiguous().cpu() for k, v in checkpoint.tensors.items()},
                         metadata={META_KEY: json.dumps(meta, sort_keys=True)})
    atomic_write_bytes(stem.with_suffix(".safetensors"), payload)
    sidecar = {**meta, "sha256": hashlib.sha256(payload).hexdigest()}
    atomic_write_text(stem.with_suffix(".json"), json.dumps(sidecar, indent=2))
    return stem.with_suffix(".json")


def _embedded_meta(payload: bytes) -> dict | None:
    """The metadata a checkpoint carries inside its safetensors header (``None`` for files written
    before it did): the header is an 8-byte little-endian length, then JSON."""
    try:
        size = int.from_bytes(payload[:8], "little")
        header = json.loads(payload[8:8 + size])
        text = header.get("__metadata__", {}).get(META_KEY)
        return None if text is None else json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return None


def load_checkpoint(path: Path, *, device: str = "cpu") -> Checkpoint:
    """Read a checkpoint given its ``.json`` or ``.safetensors`` path, verifying its checksum."""
    path = Path(path)
    sidecar, weights = path.with_suffix(".json"), path.with_suffix(".safetensors")
    if not sidecar.is_file():
        raise CheckpointError(f"{sidecar}: checkpoint file not found")
    if not weights.is_file():
        raise CheckpointError(f"{weights}: checkpoint file not found{split_copy_hint(weights)}")
    try:
        meta = json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{sidecar}: corrupt checkpoint metadata ({exc})") from None
    if not isinstance(meta, dict) or "sha256" not in meta or "step" not in meta:
        raise CheckpointError(f"{sidecar}: checkpoint metadata lacks 'step' or 'sha256'")
    payload = weights.read_bytes()
    if hashlib.sha256(payload).hexdigest() != meta["sha256"]:
        raise CheckpointError(f"{weights}: checksum mismatch (truncated or corrupt checkpoint)")
    inside = _embedded_meta(payload)
    if inside is not None and inside != {k: v for k, v in meta.items() if k != "sha256"}:
        raise CheckpointError(f"{sidecar}: differs from the metadata inside {weights.name} "
                              "(edited or corrupt sidecar)")
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


def load_latest_intact(directory: Path) -> tuple[Path, Checkpoint] | None:
    """The newest checkpoint that loads and verifies; each one skipped is named in a warning
    together with the one tried next. ``None`` without checkpoints; when none is intact, the
    newest one's error."""
    found = list_checkpoints(directory)
    first_error: CheckpointError | None = None
    for i, path in enumerate(reversed(found)):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as exc:
            first_error = first_error or exc
            older = found[-i - 2] if i + 1 < len(found) else None
            warnings.warn(f"{exc}; " + (f"resuming from the previous checkpoint {older.name}"
                                        if older else "no older checkpoint"), stacklevel=2)
    if first_error is not None:
        raise first_error
    return None


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
