"""File checks shared by the image readers: md5 table, zip members, image decoding.

Every check raises :class:`DataError` with a one-line message that names the file.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DataError, DataMissingError

__all__ = [
    "KNOWN_MD5",
    "md5_of",
    "check_md5",
    "missing_error",
    "open_zip",
    "read_member",
    "decode_image",
    "first_existing",
]

# File name -> md5. torchvision's lists (mnist.py, cifar.py, svhn.py, celeba.py) for the files it
# downloads; the shared offline copies were hashed here and their sha256 matched their READMEs.
# A file whose name is not in the table gets structural checks only (shape, size, decodability).
# The table is a plain dict so tests can register fixture files (monkeypatch.setitem).
KNOWN_MD5: dict[str, str] = {
    # MNIST, compressed (torchvision MNIST.resources) and uncompressed (the offline copy's README)
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    # CIFAR-10 (torchvision CIFAR10)
    "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    # CIFAR-10 offline copies (the lossy JPEG q75 copy and its lossless PNG fixture)
    "cifar10_jpeg_q75_train.zip": "96c4e50b3fa210f78faf533cdb6a8747",
    "cifar10_jpeg_q75_test.zip": "22a464547f82ec9d68c88f721e4b6a5f",
    "cifar10_train_first200_kaggle_png.zip": "f2091d250c965861a1cef6f73d8bfd2a",
    # SVHN cropped digits (torchvision SVHN.split_list)
    "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
    "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
    "extra_32x32.mat": "a93ce644f1a588dc4d68dda5feec44a7",
    # CelebA (torchvision CelebA.file_list) and the offline 10k subset
    "img_align_celeba.zip": "00d2c5bc6d35e252742224ab0c1e8fcb",
    "list_eval_partition.txt": "d32c9cbf5e040fd4025c592c306e6668",
    "celeba_first10k_89x109_jpg.zip": "3397dcdc4580198ab961b106448c5b95",
}


def md5_of(path: Path) -> str:
    """Hex md5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_md5(path: Path, expected: str | None = None) -> None:
    """Raise if ``path``'s md5 differs from ``expected`` (default: ``KNOWN_MD5[path.name]``)."""
    path = Path(path)
    expected = expected if expected is not None else KNOWN_MD5.get(path.name)
    if expected is None:
        return
    try:
        got = md5_of(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if got != expected:
        size = path.stat().st_size
        raise DataError(
            f"{path}: md5 {got} does not match the expected {expected} "
            f"({size} bytes; truncated, corrupt or a different file); delete it and fetch it again"
        )


def missing_error(dataset: str, split: str, searched: list[str], hint: str) -> DataMissingError:
    """The one-line 'not found' error: what was looked for, where, and how to get it."""
    return DataMissingError(
        f"{dataset} ({split}): no data found; searched {'; '.join(searched)}. {hint}"
    )


def first_existing(paths: list[Path]) -> Path | None:
    """The first path in ``paths`` that is a file, else None."""
    return next((p for p in paths if p.is_file()), None)


def open_zip(path: Path) -> zipfile.ZipFile:
    """Open a zip archive (read-only) or raise a one-line error naming it."""
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise DataError(f"{path}: not a readable zip archive (truncated or corrupt: {exc})") from None


def read_member(archive: zipfile.ZipFile, member: str, path: Path) -> bytes:
    """Bytes of one zip member; a missing or damaged member names the archive and member."""
    try:
        return archive.read(member)
    except KeyError:
        raise DataError(f"{path}: member {member} is missing") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise DataError(f"{path}: member {member} is damaged ({exc})") from None


def decode_image(data: bytes, where: str, mode: str = "RGB") -> np.ndarray:
    """Decode PNG/JPEG bytes to uint8 ``(H, W, C)`` (C = 1 for mode "L", 3 for "RGB")."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            array = np.asarray(image.convert(mode), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{where}: cannot decode image ({exc})") from None
    return array[:, :, None] if array.ndim == 2 else array
