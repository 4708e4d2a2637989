"""Atomic file writes (temporary file, fsync, ``os.replace``) and file checksums."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "atomic_write_text", "sha256_file", "remove_stray_temporaries",
           "split_copy_hint"]

TMP_SUFFIX = ".tmp"


def _atomic_write(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # as open() would create it (mkstemp makes it 0600)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stray_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files that a killed atomic write left in ``folder`` (``.NAME.*.tmp``);
    returns them."""
    stray = sorted(Path(folder).glob(f".*{TMP_SUFFIX}")) if Path(folder).is_dir() else []
    for path in stray:
        path.unlink(missing_ok=True)
    return stray


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


def split_copy_hint(path: Path) -> str:
    """For an error about a missing ``path``: how to join it when a copy holds it as pieces
    (``NAME.part00``, ``NAME.part01``, ...: ``split -b 15M -d``, experiments/gpu), else ""."""
    path = Path(path)
    if not path.with_name(path.name + ".part00").is_file():
        return ""
    return (f" (copied in pieces {path.name}.part00, ...: join them with "
            f"`cat {path.name}.part?? > {path.name}`)")
