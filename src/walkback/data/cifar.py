"""CIFAR-10 reader: torchvision's batch pickles (folder or tarball) and the offline zip copies.

Splits: "train" (50000), "test" (10000) and "train200", the first 200 training images in the
original order (``data_batch_1[:200]``), which is what the lossless PNG fixture zip holds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

from .errors import DataError
from .files import KNOWN_MD5, check_md5, decode_image, missing_error, open_zip, read_member
from .imageset import ImageSet, make_image_set

__all__ = ["CIFAR10_CLASSES", "read_cifar10"]

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
FOLDER = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
JPEG_ZIP = "cifar10_jpeg_q75_{split}.zip"
PNG_ZIP = "cifar10_train_first200_kaggle_png.zip"
_BATCHES = {
    "train": [f"data_batch_{i}" for i in range(1, 6)],
    "test": ["test_batch"],
    "train200": ["data_batch_1"],
}
_NUMPY_CORE = "numpy._core" if importlib.util.find_spec("numpy._core") else "numpy.core"
_Arrays = tuple[np.ndarray, np.ndarray]


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only resolves the numpy globals a CIFAR batch needs.

    Pickle can run arbitrary code; these files are data, are only read after their md5 matched
    torchvision's list, and this whitelist refuses any other global as a second line of defence.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        if module.startswith(("numpy.core.", "numpy._core.")):
            module = _NUMPY_CORE + module[module.index(".", 6):]
        return super().find_class(module, name)


def _load_batch(data: bytes, where: str) -> _Arrays:
    """A batch pickle (dict with b"data" uint8 (n, 3072), b"labels") -> ``(n, 3, 32, 32)``, ``(n,)``."""
    try:
        batch = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:  # pickle raises many types on truncated or foreign input
        raise DataError(f"{where}: not a readable CIFAR-10 batch ({type(exc).__name__}: {exc})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{where}: not a CIFAR-10 batch (no b'data'/b'labels' keys)")
    images = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3072:
        raise DataError(f"{where}: data has shape {images.shape} {images.dtype}, expected (n, 3072) uint8")
    if labels.shape != (images.shape[0],) or (labels.size and not 0 <= labels.min() <= labels.max() <= 9):
        raise DataError(f"{where}: labels do not match the images (shape {labels.shape}, range 0..9)")
    return images.reshape(-1, 3, 32, 32), labels


def _read_folder(folder: Path, names: list[str]) -> list[_Arrays]:
    """torchvision's extracted ``cifar-10-batches-py/`` folder; each file md5-checked first."""
    out = []
    for name in names:
        path = folder / name
        if not path.is_file():
            raise DataError(f"{path}: missing (the torchvision layout in {folder} is incomplete)")
        check_md5(path)
        out.append(_load_batch(path.read_bytes(), str(path)))
    return out


def _read_archive(path: Path, names: list[str]) -> list[_Arrays]:
    """torchvision's downloaded ``cifar-10-python.tar.gz``, read without extracting it."""
    check_md5(path)
    out, member = [], ""
    try:
        with tarfile.open(path, "r:gz") as tar:
            for name in names:
                member = f"{FOLDER}/{name}"
                handle = tar.extractfile(member)
                data = handle.read() if handle is not None else b""
                expected = KNOWN_MD5.get(name)
                if expected is not None and hashlib.md5(data).hexdigest() != expected:
                    raise DataError(f"{path}: member {member} has the wrong md5 (corrupt archive)")
                out.append(_load_batch(data, f"{path}:{member}"))
    except KeyError:
        raise DataError(f"{path}: member {member} is missing") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(f"{path}: truncated or corrupt archive ({exc})") from None
    return out


def _decode32(data: bytes, where: str) -> np.ndarray:
    """JPEG/PNG bytes -> uint8 ``(3, 32, 32)``."""
    image = decode_image(data, where, "RGB")
    if image.shape != (32, 32, 3):
        raise DataError(f"{where}: image is {image.shape[1]}x{image.shape[0]}, expected 32x32")
    return image.transpose(2, 0, 1)


def _read_jpeg_zip(path: Path, split: str) -> _Arrays:
    """``split/<class>/NNNN.jpg`` members, ordered by (class index, NNNN); labels from the folder.

    NNNN is the image's rank within its class in the original order; the interleaving of
    classes in the original batches is not recoverable from this copy.
    """
    check_md5(path)
    entries = []
    with open_zip(path) as archive:
        for member in archive.namelist():
            parts = member.split("/")
            if len(parts) != 3 or parts[0] != split or not parts[2].endswith(".jpg"):
                continue
            if parts[1] not in CIFAR10_CLASSES or not parts[2][:-4].isdigit():
                raise DataError(f"{path}: unexpected member {member}")
            entries.append((CIFAR10_CLASSES.index(parts[1]), int(parts[2][:-4]), member))
        if not entries:
            raise DataError(f"{path}: no {split}/<class>/NNNN.jpg members")
        entries.sort()
        images = [_decode32(read_member(archive, m, path), f"{path}:{m}") for _, _, m in entries]
    return np.stack(images), np.array([label for label, _, _ in entries], dtype=np.int64)


def _png_labels(text: str, path: Path) -> list[tuple[int, int]]:
    """``trainLabels.csv`` lines ``N.png,class`` (optional header) -> sorted ``(N, label)``."""
    rows = []
    for line in text.split():
        key, _, name = line.strip().partition(",")
        if name == "label":
            continue
        stem = key[:-4] if key.endswith(".png") else key
        if name not in CIFAR10_CLASSES or not stem.isdigit():
            raise DataError(f"{path}: bad line {line!r} in trainLabels.csv")
        rows.append((int(stem), CIFAR10_CLASSES.index(name)))
    return sorted(rows)


def _read_png_zip(path: Path) -> _Arrays:
    """The Kaggle-style fixture: ``train/N.png`` (N = 1..200, original order) + ``trainLabels.csv``."""
    check_md5(path)
    with open_zip(path) as archive:
        rows = _png_labels(read_member(archive, "trainLabels.csv", path).decode("utf-8", "replace"), path)
        if [n for n, _ in rows] != list(range(1, 201)):
            raise DataError(f"{path}: trainLabels.csv does not list exactly 1.png..200.png")
        images = [
            _decode32(read_member(archive, f"train/{n}.png", path), f"{path}:train/{n}.png")
            for n, _ in rows
        ]
    return np.stack(images), np.array([label for _, label in rows], dtype=np.int64)


def _from_batches(batches: list[_Arrays], split: str, where: Path) -> _Arrays:
    """Concatenate batches; "train200" keeps the first 200 images of ``data_batch_1``."""
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    if split == "train200":
        if images.shape[0] < 200:
            raise DataError(f"{where}: data_batch_1 holds {images.shape[0]} images, fewer than 200")
        return images[:200], labels[:200]
    return images, labels


def read_cifar10(root: Path, split: str) -> ImageSet:
    """CIFAR-10 ``split`` as uint8 ``(N, 3, 32, 32)`` with labels 0..9 (``CIFAR10_CLASSES`` order).

    Searched in order: ``root/cifar-10-batches-py/``, ``root/cifar-10-python.tar.gz``, then the
    offline zips (JPEG q75 copy for train/test, PNG fixture for train200) in ``root`` and ``root/cifar10``.
    """
    names, folder, archive = _BATCHES[split], root / FOLDER, root / ARCHIVE
    if folder.is_dir() and any((folder / n).is_file() for n in names):
        images, labels = _from_batches(_read_folder(folder, names), split, folder)
        return make_image_set(images, labels, "cifar10", split, f"torchvision layout at {folder}")
    if archive.is_file():
        images, labels = _from_batches(_read_archive(archive, names), split, archive)
        return make_image_set(images, labels, "cifar10", split, f"torchvision archive {archive}")
    zip_name = PNG_ZIP if split == "train200" else JPEG_ZIP.format(split=split)
    for path in (root / zip_name, root / "cifar10" / zip_name):
        if path.is_file() and split == "train200":
            source = f"CIFAR-10 first-200 PNG copy (lossless) {path}"
            return make_image_set(*_read_png_zip(path), "cifar10", split, source)
        if path.is_file():
            source = f"CIFAR-10 JPEG q75 copy (lossy) {path}"
            return make_image_set(*_read_jpeg_zip(path, split), "cifar10", split, source)
    searched = [f"{folder}/", str(archive), str(root / zip_name), str(root / "cifar10" / zip_name)]
    raise missing_error("cifar10", split, searched, "Pass --set data.download=true to fetch it (md5-checked).")
