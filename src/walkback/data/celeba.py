"""CelebA aligned-faces reader: torchvision's layout (folder or zip) and the offline 10k subset.

Every face is centre-cropped to a square of side ``round(148 / 178 * width)`` (148x148 for the
178x218 originals, 74x74 for the 89x109 subset; offsets as torchvision's ``CenterCrop``,
``round((W - c) / 2)``, ``round((H - c) / 2)``) and resized to ``resolution`` with PIL's
antialiased BICUBIC filter: the CenterCrop(148) + Resize(64) convention of many VAE repos.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from .errors import DataError
from .files import check_md5, missing_error, open_zip, read_member
from .imageset import ImageSet, make_image_set

__all__ = ["CROP_FRACTION", "SUBSET_TRAIN_LAST", "centre_crop_resize", "read_celeba"]

CROP_FRACTION = 148 / 178  # crop side / image width
SUBSET_TRAIN_LAST = 9000  # offline subset: 000001-009000 train, 009001-010000 test
PARTITION = "list_eval_partition.txt"
SUBSET_ZIP = "celeba_first10k_89x109_jpg.zip"
_SPLIT_CODES = {"train": "0", "valid": "1", "test": "2"}


def centre_crop_resize(image: Image.Image, resolution: int) -> np.ndarray:
    """RGB PIL image -> uint8 ``(3, resolution, resolution)``: centre square crop, BICUBIC resize."""
    width, height = image.size
    side = min(round(width * CROP_FRACTION), height)
    left, top = int(round((width - side) / 2)), int(round((height - side) / 2))
    square = image.crop((left, top, left + side, top + side))
    resized = square.resize((resolution, resolution), Image.BICUBIC)
    return np.asarray(resized, dtype=np.uint8).transpose(2, 0, 1)


def _face(data: bytes, where: str, resolution: int) -> np.ndarray:
    """JPEG bytes -> cropped, resized uint8 ``(3, r, r)``; undecodable bytes name ``where``."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return centre_crop_resize(image.convert("RGB"), resolution)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{where}: cannot decode image ({exc})") from None


def _progress(items: list[str], split: str) -> object:
    return tqdm(items, desc=f"celeba {split}", disable=len(items) < 20000, leave=False)


def _partition(path: Path, split: str) -> list[str]:
    """File names of ``split`` from ``list_eval_partition.txt`` (lines ``000001.jpg 0``)."""
    check_md5(path)
    names = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise DataError(f"{path}: line {number} is not '<file> <0|1|2>': {line[:60]!r}")
        if fields[1] == _SPLIT_CODES[split]:
            names.append(fields[0])
    return names


def _read_folder(folder: Path, names: list[str], split: str, resolution: int) -> np.ndarray:
    faces = []
    for name in _progress(names, split):
        path = folder / name
        try:
            data = path.read_bytes()
        except OSError:
            raise DataError(f"{path}: missing or unreadable (listed in {PARTITION})") from None
        faces.append(_face(data, str(path), resolution))
    return np.stack(faces)


def _read_zip(path: Path, members: list[str], split: str, resolution: int) -> np.ndarray:
    with open_zip(path) as archive:
        faces = [
            _face(read_member(archive, m, path), f"{path}:{m}", resolution)
            for m in _progress(members, split)
        ]
    return np.stack(faces)


def _subset_members(path: Path, split: str) -> list[str]:
    """Members ``celebA/NNNNNN.jpg`` of the 10k subset in ``split`` (by image number, see module)."""
    if split == "valid":
        raise DataError(
            f"{path}: the 10k subset has no 'valid' split (all of it is in CelebA's train "
            f"partition); use 'train' (000001-{SUBSET_TRAIN_LAST:06d}) or 'test' (the rest)"
        )
    with open_zip(path) as archive:
        members = [m for m in archive.namelist() if m.startswith("celebA/") and m.endswith(".jpg")]
    stems = [m[len("celebA/") : -4] for m in members]
    if not members or not all(s.isdigit() for s in stems):
        raise DataError(f"{path}: expected members celebA/NNNNNN.jpg")
    in_train = [int(s) <= SUBSET_TRAIN_LAST for s in stems]
    keep = [m for m, t in zip(members, in_train) if t == (split == "train")]
    return sorted(keep)


def read_celeba(root: Path, split: str, resolution: int = 64) -> ImageSet:
    """CelebA ``split`` as uint8 ``(N, 3, resolution, resolution)``, no labels.

    Searched in order: ``root/celeba/img_align_celeba/`` + ``list_eval_partition.txt``, the same
    with ``img_align_celeba.zip``, (both also directly under ``root``), then the offline subset
    zip in ``root`` or ``root/celeba``.
    """
    searched = []
    for base in (root / "celeba", root):
        partition, folder = base / PARTITION, base / "img_align_celeba"
        archive = base / "img_align_celeba.zip"
        searched.append(f"{folder}/ or {archive} with {partition}")
        if partition.is_file() and folder.is_dir():
            faces = _read_folder(folder, _partition(partition, split), split, resolution)
            return make_image_set(faces, None, "celeba", split, f"torchvision layout at {base}")
        if partition.is_file() and archive.is_file():
            check_md5(archive)
            members = [f"img_align_celeba/{n}" for n in _partition(partition, split)]
            faces = _read_zip(archive, members, split, resolution)
            return make_image_set(faces, None, "celeba", split, f"torchvision zip {archive}")
    for path in (root / SUBSET_ZIP, root / "celeba" / SUBSET_ZIP):
        searched.append(str(path))
        if path.is_file():
            check_md5(path)
            faces = _read_zip(path, _subset_members(path, split), split, resolution)
            source = f"CelebA first-10k 89x109 JPEG subset (lossy, half resolution) {path}"
            return make_image_set(faces, None, "celeba", split, source)
    hint = (f"It is not downloaded automatically: fetch img_align_celeba.zip and {PARTITION} from "
            f"https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html into {root / 'celeba'}/.")
    raise missing_error("celeba", split, searched, hint)
