"""Downloads (only when the caller passes ``download=True``, ``--set data.download=true``), md5-checked.

Files go where torchvision puts them, so torchvision and these readers share one copy:
MNIST ``root/MNIST/raw/*.gz``, CIFAR-10 ``root/cifar-10-python.tar.gz`` (read without
extracting), SVHN ``root/{split}_32x32.mat``. CelebA lives on Google Drive behind a
confirmation page: it is not downloaded; the error says what to fetch and where to put it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from .errors import DataError
from .files import KNOWN_MD5, md5_of

__all__ = ["Resource", "RESOURCES", "download_dataset", "fetch"]

_USER_AGENT = "walkback (python urllib)"
_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"


@dataclass(frozen=True)
class Resource:
    """One file: mirror ``urls`` tried in order, saved as ``root/folder/filename``.

    Its md5 is ``KNOWN_MD5[filename]``; ``splits`` are the splits that need it.
    """

    urls: tuple[str, ...]
    filename: str
    folder: str
    splits: tuple[str, ...]


def _mnist(filename: str, split: str) -> Resource:
    return Resource(tuple(m + filename for m in _MNIST_MIRRORS), filename, "MNIST/raw", (split,))


RESOURCES: dict[str, list[Resource]] = {
    "mnist": [
        _mnist("train-images-idx3-ubyte.gz", "train"),
        _mnist("train-labels-idx1-ubyte.gz", "train"),
        _mnist("t10k-images-idx3-ubyte.gz", "test"),
        _mnist("t10k-labels-idx1-ubyte.gz", "test"),
    ],
    "cifar10": [
        Resource(("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                 "cifar-10-python.tar.gz", "", ("train", "test", "train200")),
    ],
    "svhn": [
        Resource((f"{_SVHN_URL}{s}_32x32.mat",), f"{s}_32x32.mat", "", (s,))
        for s in ("train", "test", "extra")
    ],
}
CELEBA_MANUAL = (
    "celeba: automatic download is not supported (Google Drive); fetch img_align_celeba.zip and "
    "list_eval_partition.txt from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html and place them "
    "in {folder}/ (unzipping to {folder}/img_align_celeba/ is optional)"
)


def _fetch_one(url: str, dest: Path, md5: str) -> None:
    """Stream ``url`` to a temp file beside ``dest``, check its md5, then rename atomically."""
    handle, temp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        digest = hashlib.md5()
        request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(request, timeout=60) as response:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
        got = digest.hexdigest()
        if got != md5:
            raise DataError(f"{dest}: download from {url} has md5 {got}, expected {md5}; not used")
        os.replace(temp, dest)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def fetch(urls: tuple[str, ...], dest: Path, md5: str) -> Path:
    """Download ``dest`` from the first mirror that serves bytes with the right ``md5``."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    problems = []
    for url in urls:
        try:
            _fetch_one(url, dest, md5)
            return dest
        except DataError as exc:
            problems.append(str(exc))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            problems.append(f"{url}: {exc}")
    detail = " | ".join(problems).replace("\n", " ")
    raise DataError(f"{dest}: download failed ({detail})")


def download_dataset(name: str, root: str | Path, split: str | None = None) -> list[Path]:
    """Fetch the files of data set ``name`` (only those ``split`` needs, if given) into ``root``.

    Files already present with the right md5 are kept. Returns the paths of the files.
    """
    root = Path(root)
    if name == "celeba":
        raise DataError(CELEBA_MANUAL.format(folder=root / "celeba"))
    if name not in RESOURCES:
        raise ConfigError(f"unknown data set {name!r}; downloadable: {', '.join(RESOURCES)}")
    paths = []
    for resource in RESOURCES[name]:
        if split is not None and split not in resource.splits:
            continue
        dest = root / resource.folder / resource.filename
        md5 = KNOWN_MD5[resource.filename]
        if not (dest.is_file() and md5_of(dest) == md5):
            fetch(resource.urls, dest, md5)
        paths.append(dest)
    return paths
