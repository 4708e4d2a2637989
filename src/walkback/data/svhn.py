"""SVHN cropped digits reader: torchvision's ``root/{train,test,extra}_32x32.mat`` (MATLAB v5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import DataError
from .files import check_md5, first_existing, missing_error
from .imageset import ImageSet, make_image_set

__all__ = ["SVHN_FILES", "read_svhn"]

SVHN_FILES: dict[str, str] = {split: f"{split}_32x32.mat" for split in ("train", "test", "extra")}


def _loadmat(path: Path) -> dict:
    """``scipy.io.loadmat`` (scipy is imported only here, when SVHN is read)."""
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DataError(f"{path}: reading SVHN .mat files needs scipy (pip install scipy)") from None
    try:
        return loadmat(str(path), variable_names=["X", "y"])
    except Exception as exc:  # scipy raises ValueError, MatReadError, OSError, ... on bad files
        raise DataError(f"{path}: truncated or corrupt .mat file ({type(exc).__name__}: {exc})") from None


def _arrays(mat: dict, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """X uint8 ``(32, 32, 3, N)`` -> ``(N, 3, 32, 32)``; y ``(N, 1)`` in 1..10 (10 = digit 0) -> 0..9."""
    if "X" not in mat or "y" not in mat:
        raise DataError(f"{path}: no X/y arrays (not an SVHN cropped-digits file)")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != y.shape[0]:
        raise DataError(f"{path}: X has shape {x.shape} {x.dtype}, y {y.shape}; expected (32,32,3,N) uint8")
    labels = y.astype(np.int64)
    if labels.size and not 1 <= labels.min() <= labels.max() <= 10:
        raise DataError(f"{path}: labels outside 1..10")
    labels[labels == 10] = 0
    return np.transpose(x, (3, 2, 0, 1)), labels


def read_svhn(root: Path, split: str) -> ImageSet:
    """SVHN ``split`` (train 73257, test 26032, extra 531131) as uint8 ``(N, 3, 32, 32)``, labels 0..9."""
    name = SVHN_FILES[split]
    candidates = [root / name, root / "svhn" / name]
    path = first_existing(candidates)
    if path is None:
        searched = [str(p) for p in candidates]
        raise missing_error("svhn", split, searched, "Pass --set data.download=true to fetch it (md5-checked).")
    check_md5(path)
    images, labels = _arrays(_loadmat(path), path)
    return make_image_set(images, labels, "svhn", split, f"torchvision layout at {path}")
