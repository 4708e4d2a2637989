"""Files written whole or split into parts of at most ``max_bytes`` (for transfers that cap a
file's size, e.g. 16 MiB from a GPU machine).

A split ``model.safetensors`` is ``model.safetensors.part001``, ``.part002``, ... plus the index
``model.safetensors.parts.json`` (written last) holding the whole file's size and sha256 and each
part's name, size and sha256. ``read_bytes`` accepts either form and verifies every checksum, so
a missing, truncated or altered part is refused with an error naming it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .atomic import atomic_write_bytes, atomic_write_text, sha256_file
from .errors import CheckpointError

__all__ = ["index_path", "write_bytes", "read_bytes", "exists", "remove", "sha256_of"]


def index_path(path: Path) -> Path:
    """The index of a split ``path``: ``<name>.parts.json`` beside it."""
    return path.with_name(path.name + ".parts.json")


def _part_paths(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".part[0-9][0-9][0-9]"))


def _remove_split(path: Path) -> None:
    """Delete the index and parts of a split ``path`` (the whole file stays)."""
    index_path(path).unlink(missing_ok=True)
    for part in _part_paths(path):
        part.unlink(missing_ok=True)


def remove(path: Path) -> None:
    """Delete ``path`` whole and split (its parts and index), whichever exist."""
    _remove_split(path)
    path.unlink(missing_ok=True)


def write_bytes(path: Path, payload: bytes, max_bytes: int = 0) -> None:
    """Write ``payload`` to ``path`` atomically; when ``0 < max_bytes < len(payload)``, as parts
    of at most ``max_bytes`` each plus the index (written last). Any older form is removed."""
    path = Path(path)
    if max_bytes <= 0 or len(payload) <= max_bytes:
        atomic_write_bytes(path, payload)
        _remove_split(path)
        return
    parts = []
    for i, start in enumerate(range(0, len(payload), max_bytes), start=1):
        chunk = payload[start:start + max_bytes]
        name = f"{path.name}.part{i:03d}"
        atomic_write_bytes(path.with_name(name), chunk)
        parts.append({"file": name, "size": len(chunk), "sha256": hashlib.sha256(chunk).hexdigest()})
    for stale in _part_paths(path)[len(parts):]:
        stale.unlink()
    index = {"size": len(payload), "sha256": hashlib.sha256(payload).hexdigest(), "parts": parts}
    atomic_write_text(index_path(path), json.dumps(index, indent=2))
    path.unlink(missing_ok=True)


def exists(path: Path) -> bool:
    """Whether ``path`` exists whole or split."""
    return Path(path).is_file() or index_path(Path(path)).is_file()


def _index(path: Path) -> dict:
    where = index_path(path)
    try:
        index = json.loads(where.read_text())
        parts = index["parts"]
        _ = index["sha256"], [(p["file"], p["size"], p["sha256"]) for p in parts]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{where}: corrupt parts index ({type(exc).__name__}: {exc})") from None
    return index


def read_bytes(path: Path) -> bytes:
    """The content of ``path``, whole or joined from its verified parts."""
    path = Path(path)
    if path.is_file():
        return path.read_bytes()
    if not index_path(path).is_file():
        raise CheckpointError(f"{path}: file not found (neither whole nor split into parts)")
    index, chunks = _index(path), []
    for part in index["parts"]:
        file = path.with_name(part["file"])
        if not file.is_file():
            raise CheckpointError(f"{file}: part {part['file']} of {path.name} is missing")
        chunk = file.read_bytes()
        if len(chunk) != part["size"] or hashlib.sha256(chunk).hexdigest() != part["sha256"]:
            raise CheckpointError(f"{file}: size or checksum differs from {index_path(path).name}")
        chunks.append(chunk)
    payload = b"".join(chunks)
    if hashlib.sha256(payload).hexdigest() != index["sha256"]:
        raise CheckpointError(f"{path}: joined parts do not match the recorded sha256")
    return payload


def sha256_of(path: Path) -> str | None:
    """sha256 of ``path``'s content (whole: hashed; split: the index's verified record)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    if index_path(path).is_file():
        return _index(path)["sha256"]
    return None
