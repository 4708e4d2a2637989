"""MNIST reader: IDX files (raw or .gz) in torchvision's layout or in a flat folder."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from .errors import DataError
from .files import check_md5, first_existing, missing_error
from .imageset import ImageSet, make_image_set

__all__ = ["MNIST_FILES", "read_mnist", "parse_idx"]

MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _layouts(root: Path) -> list[tuple[str, Path]]:
    """Folders searched, in order: torchvision's ``root/MNIST/raw``, then ``root``, ``root/mnist``."""
    return [
        ("torchvision layout", root / "MNIST" / "raw"),
        ("MNIST idx files", root),
        ("MNIST idx files", root / "mnist"),
    ]


def _find(folder: Path, stem: str) -> Path | None:
    """``folder/stem`` (uncompressed, as torchvision extracts it) or ``folder/stem.gz``."""
    return first_existing([folder / stem, folder / f"{stem}.gz"])


def _read_bytes(path: Path) -> bytes:
    """File contents, gunzipped when the name ends in ``.gz``."""
    try:
        data = path.read_bytes()
        return gzip.decompress(data) if path.suffix == ".gz" else data
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: truncated or corrupt gzip ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def parse_idx(data: bytes, path: Path, ndim: int) -> np.ndarray:
    """Parse an unsigned-byte IDX file: magic ``0x0000 08 ndim``, ``ndim`` big-endian uint32 dims."""
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX file ({len(data)} bytes, header needs {header})")
    (magic,) = struct.unpack(">I", data[:4])
    if magic != 0x0800 + ndim:
        raise DataError(f"{path}: bad IDX magic number {magic:#010x}, expected {0x0800 + ndim:#010x}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "oversized"
        raise DataError(f"{path}: {kind} IDX file ({len(data)} bytes, dims {dims} need {expected})")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_mnist(root: Path, split: str) -> ImageSet:
    """MNIST ``split`` ("train": 60000, "test": 10000) as uint8 ``(N, 1, 28, 28)`` with labels 0..9."""
    image_stem, label_stem = MNIST_FILES[split]
    for description, folder in _layouts(root):
        image_path, label_path = _find(folder, image_stem), _find(folder, label_stem)
        if image_path is None or label_path is None:
            continue
        for path in (image_path, label_path):
            check_md5(path)
        images = parse_idx(_read_bytes(image_path), image_path, ndim=3)
        labels = parse_idx(_read_bytes(label_path), label_path, ndim=1)
        if labels.shape[0] != images.shape[0]:
            raise DataError(f"{label_path}: {labels.shape[0]} labels for {images.shape[0]} images")
        if labels.size and labels.max() > 9:
            raise DataError(f"{label_path}: label {labels.max()} outside 0..9")
        source = f"{description} at {folder}"
        return make_image_set(images[:, None], labels, "mnist", split, source)
    searched = [f"{folder}/{image_stem}[.gz]" for _, folder in _layouts(root)]
    raise missing_error("mnist", split, searched, "Pass --set data.download=true to fetch it (md5-checked).")
