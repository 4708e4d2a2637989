"""Image readers: every on-disk format from tiny fixtures built here, the one-line errors, the
pixel scalings, downloads (network faked), and the shared offline copies where present."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from walkback.data.celeba import _subset_members, centre_crop_resize
from walkback.data.cifar import CIFAR10_CLASSES
from walkback.data.download import download_dataset, fetch
from walkback.data.errors import DataError, DataMissingError
from walkback.data.files import KNOWN_MD5, check_md5, md5_of
from walkback.data.images import dequantize, load_image_dataset, to_display_uint8, to_model_space
from walkback.errors import ConfigError

from conftest import SHARED as SHARED_ROOT

SHARED = SHARED_ROOT / "data"
MNIST_TRAIN_SHA256 = "3df0e1efd86ae2d91be6457363b4d919598354f8de8037a3e82a4a6fdb17f14b"
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _trust(monkeypatch: pytest.MonkeyPatch, *paths: Path) -> None:
    """Register fixture files in the md5 table, as if they were the real ones."""
    for path in paths:
        monkeypatch.setitem(KNOWN_MD5, path.name, md5_of(path))


def _one_line(info: pytest.ExceptionInfo, *needles: object) -> None:
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert str(needle) in message, message


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network touched without download=True")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


# ---------------------------------------------------------------------------------------- MNIST
def _idx(array: np.ndarray) -> bytes:
    return struct.pack(f">I{array.ndim}I", 0x800 + array.ndim, *array.shape) + array.tobytes()


def _write_mnist(folder: Path, n: int, *, gz: bool) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    folder.mkdir(parents=True, exist_ok=True)
    images = _rng().integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = _rng(1).integers(0, 10, n).astype(np.uint8)
    paths = []
    for stem, array in (("train-images-idx3-ubyte", images), ("train-labels-idx1-ubyte", labels)):
        path = folder / (stem + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(_idx(array)) if gz else _idx(array))
        paths.append(path)
    return images, labels, paths


@pytest.mark.parametrize("sub, gz", [("MNIST/raw", True), ("MNIST/raw", False), ("", True)])
def test_mnist_layouts_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sub: str, gz: bool) -> None:
    images, labels, paths = _write_mnist(tmp_path / sub, 7, gz=gz)
    _trust(monkeypatch, *paths)
    data = load_image_dataset("mnist", "train", root=tmp_path)
    assert data.images.dtype == torch.uint8 and data.images.shape == (7, 1, 28, 28)
    assert data.labels is not None and data.labels.dtype == torch.int64
    assert np.array_equal(data.images[:, 0].numpy(), images)
    assert np.array_equal(data.labels.numpy(), labels)
    assert ("torchvision" in data.source) == bool(sub) and str(tmp_path / sub) in data.source


def test_mnist_wrong_md5_and_truncation_name_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, (image_path, label_path) = _write_mnist(tmp_path, 5, gz=True)
    with pytest.raises(DataError) as info:  # fixture bytes are not the real MNIST: md5 differs
        load_image_dataset("mnist", "train", root=tmp_path)
    _one_line(info, image_path, "md5")
    image_path.write_bytes(image_path.read_bytes()[:-30])  # cut the gzip stream short
    _trust(monkeypatch, image_path, label_path)
    with pytest.raises(DataError) as info:
        load_image_dataset("mnist", "train", root=tmp_path)
    _one_line(info, image_path, "truncated")
    raw = tmp_path / "MNIST" / "raw"
    _, _, (image_raw, label_raw) = _write_mnist(raw, 5, gz=False)
    image_raw.write_bytes(image_raw.read_bytes()[:-1])
    _trust(monkeypatch, image_raw, label_raw)
    with pytest.raises(DataError) as info:
        load_image_dataset("mnist", "train", root=tmp_path)
    _one_line(info, image_raw, "truncated IDX")


def test_missing_data_lists_layouts_and_never_downloads(tmp_path: Path) -> None:
    with pytest.raises(DataMissingError) as info:
        load_image_dataset("mnist", "test", root=tmp_path)
    _one_line(info, tmp_path / "MNIST" / "raw", "--set data.download=true")
    for name in ("cifar10", "svhn", "celeba"):
        with pytest.raises(DataMissingError) as info:
            load_image_dataset(name, "test", root=tmp_path)
        _one_line(info, tmp_path)


def test_bad_arguments_are_config_errors(tmp_path: Path) -> None:
    for name, split, resolution in [("imagenet", "train", None), ("mnist", "valid", None), ("cifar10", "train", 64)]:
        with pytest.raises(ConfigError):
            load_image_dataset(name, split, root=tmp_path, resolution=resolution)


# ------------------------------------------------------------------------------------- CIFAR-10
def _write_batches(folder: Path, counts: dict[str, int]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    folder.mkdir(parents=True)
    out = {}
    for seed, (name, n) in enumerate(counts.items()):
        images = _rng(seed).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        labels = _rng(seed + 50).integers(0, 10, n)
        batch = {b"batch_label": name.encode(), b"labels": labels.tolist(), b"data": images.reshape(n, 3072)}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        out[name] = (images, labels)
    return out


def _cifar_counts() -> dict[str, int]:
    return {"data_batch_1": 200, **{f"data_batch_{i}": 3 for i in range(2, 6)}, "test_batch": 5}


def test_cifar_torchvision_folder_archive_and_png_copy_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "a" / "cifar-10-batches-py"
    batches = _write_batches(folder, _cifar_counts())
    _trust(monkeypatch, *folder.iterdir())
    train = load_image_dataset("cifar10", "train", root=tmp_path / "a")
    assert train.images.shape == (212, 3, 32, 32) and "torchvision layout" in train.source
    expected = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    assert np.array_equal(train.images.numpy(), expected)
    assert np.array_equal(train.labels.numpy(), np.concatenate([batches[f"data_batch_{i}"][1] for i in range(1, 6)]))
    first200 = load_image_dataset("cifar10", "train200", root=tmp_path / "a")
    assert torch.equal(first200.images, train.images[:200])
    (tmp_path / "b").mkdir()
    archive = tmp_path / "b" / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    _trust(monkeypatch, archive)
    test_b = load_image_dataset("cifar10", "test", root=tmp_path / "b")
    assert "archive" in test_b.source
    assert test_b.checksum == load_image_dataset("cifar10", "test", root=tmp_path / "a").checksum
    png = tmp_path / "c" / "cifar10_train_first200_kaggle_png.zip"  # Kaggle-style lossless copy
    png.parent.mkdir()
    with zipfile.ZipFile(png, "w") as archive_zip:
        for n, (image, label) in enumerate(zip(*batches["data_batch_1"]), start=1):
            buffer = io.BytesIO()
            Image.fromarray(image.transpose(1, 2, 0)).save(buffer, "PNG")
            archive_zip.writestr(f"train/{n}.png", buffer.getvalue())
        archive_zip.writestr("trainLabels.csv", "".join(
            f"{n}.png,{CIFAR10_CLASSES[label]}\n" for n, label in enumerate(batches["data_batch_1"][1], start=1)))
    _trust(monkeypatch, png)
    from_png = load_image_dataset("cifar10", "train200", root=tmp_path / "c")
    assert from_png.checksum == first200.checksum and "lossless" in from_png.source
    assert torch.equal(from_png.labels, first200.labels)


def test_cifar_jpeg_zip_orders_by_class_then_number(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "cifar10_jpeg_q75_test.zip"
    colours = {("truck", 1): 200, ("airplane", 3): 40, ("airplane", 0): 10, ("bird", 0): 90}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("test/", b"")
        for (cls, number), value in colours.items():
            buffer = io.BytesIO()
            Image.new("RGB", (32, 32), (value, value, value)).save(buffer, "JPEG", quality=95)
            archive.writestr(f"test/{cls}/{number:04d}.jpg", buffer.getvalue())
    _trust(monkeypatch, path)
    data = load_image_dataset("cifar10", "test", root=tmp_path)
    assert data.images.shape == (4, 3, 32, 32) and "lossy" in data.source
    assert data.labels.tolist() == [0, 0, 2, 9]
    means = data.images.float().mean(dim=(1, 2, 3))
    assert torch.allclose(means, torch.tensor([10.0, 40.0, 90.0, 200.0]), atol=2)


def test_cifar_refuses_foreign_pickles_and_truncated_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    _write_batches(folder, {"test_batch": 4})
    path = folder / "test_batch"
    with pytest.raises(DataError) as info:
        load_image_dataset("cifar10", "test", root=tmp_path)
    _one_line(info, path, "md5")
    path.write_bytes(path.read_bytes()[:500])
    _trust(monkeypatch, path)
    with pytest.raises(DataError) as info:
        load_image_dataset("cifar10", "test", root=tmp_path)
    _one_line(info, path, "not a readable CIFAR-10 batch")
    path.write_bytes(pickle.dumps({b"data": print}, protocol=2))  # a global outside the whitelist
    _trust(monkeypatch, path)
    with pytest.raises(DataError) as info:
        load_image_dataset("cifar10", "test", root=tmp_path)
    _one_line(info, path, "not allowed")


def test_truncated_zip_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "cifar10_jpeg_q75_train.zip"
    path.write_bytes(b"PK\x03\x04 this is not a whole zip")
    _trust(monkeypatch, path)
    with pytest.raises(DataError) as info:
        load_image_dataset("cifar10", "train", root=tmp_path)
    _one_line(info, path, "zip")


# ----------------------------------------------------------------------------------------- SVHN
def test_svhn_mat_round_trip_and_label_ten_is_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scipy_io = pytest.importorskip("scipy.io")
    x = _rng().integers(0, 256, (32, 32, 3, 6), dtype=np.uint8)
    y = np.array([[1], [10], [3], [10], [9], [5]], dtype=np.uint8)
    path = tmp_path / "test_32x32.mat"
    scipy_io.savemat(path, {"X": x, "y": y})
    _trust(monkeypatch, path)
    data = load_image_dataset("svhn", "test", root=tmp_path)
    assert data.images.shape == (6, 3, 32, 32) and data.labels.tolist() == [1, 0, 3, 0, 9, 5]
    assert np.array_equal(data.images[4].numpy(), x[:, :, :, 4].transpose(2, 0, 1))
    path.write_bytes(path.read_bytes()[:400])
    _trust(monkeypatch, path)
    with pytest.raises(DataError) as info:
        load_image_dataset("svhn", "test", root=tmp_path)
    _one_line(info, path)


# --------------------------------------------------------------------------------------- CelebA
def _jpeg(size: tuple[int, int], seed: int) -> bytes:
    buffer = io.BytesIO()
    array = _rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(array).save(buffer, "JPEG")
    return buffer.getvalue()


def test_centre_crop_keeps_exactly_the_centre_square() -> None:
    for size, box in [((178, 218), (15, 35, 163, 183)), ((89, 109), (8, 18, 82, 92))]:
        image = Image.new("RGB", size, (0, 0, 255))
        image.paste((255, 0, 0), box)
        for resolution in (32, 64):
            out = centre_crop_resize(image, resolution)
            assert out.shape == (3, resolution, resolution) and out.dtype == np.uint8
            assert (out[0] == 255).all() and (out[2] == 0).all()


def test_celeba_folder_zip_and_subset_layouts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path / "a" / "celeba"
    (base / "img_align_celeba").mkdir(parents=True)
    names, parts = [f"{i:06d}.jpg" for i in range(1, 7)], [0, 0, 0, 1, 2, 2]
    for i, name in enumerate(names):
        (base / "img_align_celeba" / name).write_bytes(_jpeg((178, 218), i))
    (base / "list_eval_partition.txt").write_text("".join(f"{n} {p}\n" for n, p in zip(names, parts)))
    _trust(monkeypatch, base / "list_eval_partition.txt")
    sizes = {split: len(load_image_dataset("celeba", split, root=tmp_path / "a", resolution=32))
             for split in ("train", "valid", "test")}
    assert sizes == {"train": 3, "valid": 1, "test": 2}
    test64 = load_image_dataset("celeba", "test", root=tmp_path / "a")
    assert test64.images.shape == (2, 3, 64, 64) and test64.labels is None
    zipped = tmp_path / "b" / "celeba" / "img_align_celeba.zip"  # torchvision's downloaded zip
    zipped.parent.mkdir(parents=True)
    with zipfile.ZipFile(zipped, "w") as archive:
        for name in names:
            archive.write(base / "img_align_celeba" / name, f"img_align_celeba/{name}")
    (zipped.parent / "list_eval_partition.txt").write_bytes((base / "list_eval_partition.txt").read_bytes())
    _trust(monkeypatch, zipped)
    assert load_image_dataset("celeba", "test", root=tmp_path / "b").checksum == test64.checksum
    subset = tmp_path / "c" / "celeba_first10k_89x109_jpg.zip"
    subset.parent.mkdir()
    with zipfile.ZipFile(subset, "w") as archive:
        for number in (8999, 9000, 9001, 9002, 9003):
            archive.writestr(f"celebA/{number:06d}.jpg", _jpeg((89, 109), number))
    _trust(monkeypatch, subset)
    assert load_image_dataset("celeba", "train", root=tmp_path / "c", resolution=32).images.shape == (2, 3, 32, 32)
    assert len(load_image_dataset("celeba", "test", root=tmp_path / "c")) == 3
    with pytest.raises(DataError) as info:
        load_image_dataset("celeba", "valid", root=tmp_path / "c")
    _one_line(info, subset, "valid")
    (base / "img_align_celeba" / names[4]).write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(DataError) as info:
        load_image_dataset("celeba", "test", root=tmp_path / "a")
    _one_line(info, base / "img_align_celeba" / names[4], "decode")


# -------------------------------------------------------------------------------------- scaling
def test_model_space_display_round_trip_and_display_clipping() -> None:
    x = torch.arange(256, dtype=torch.uint8)
    y = to_model_space(x)
    assert y.dtype == torch.float32 and y[0] == -1 and y[-1] == 1
    assert torch.equal(to_display_uint8(y), x)
    assert to_display_uint8(torch.tensor([-3.0, 3.0])).tolist() == [0, 255]
    with pytest.raises(TypeError):
        to_model_space(y)


def test_dequantize_range_bins_mean_and_determinism() -> None:
    x = torch.arange(256, dtype=torch.uint8).repeat(2000)
    v = dequantize(x, generator=torch.Generator().manual_seed(0))
    assert v.dtype == torch.float32 and v.min() >= 0 and v.max() < 1
    assert (torch.floor(v.double() * 256) == x.double()).float().mean() > 0.999
    centre = (x.double() + 0.5) / 256
    assert abs((v.double() - centre).mean()) < 1e-3 / 256 * 10
    assert torch.equal(v, dequantize(x, generator=torch.Generator().manual_seed(0)))
    assert dequantize(torch.full((10_000_000,), 255, dtype=torch.uint8), generator=None).max() < 1


# ------------------------------------------------------------------------------------ downloads
class _Served(io.BytesIO):
    def __enter__(self) -> "_Served":
        return self


def _serve(monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes], calls: list[str]) -> None:
    def urlopen(request: urllib.request.Request, timeout: float = 0) -> _Served:
        url = request.full_url
        calls.append(url)
        if url.rsplit("/", 1)[-1] not in files:
            raise urllib.error.URLError("unreachable mirror")
        return _Served(files[url.rsplit("/", 1)[-1]])

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)


def test_fetch_checks_md5_and_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    payload, calls = b"fixture bytes" * 1000, []
    _serve(monkeypatch, {"f.bin": payload}, calls)
    dest = tmp_path / "d" / "f.bin"
    fetch(("http://down.example/g.bin", "http://ok.example/f.bin"), dest, hashlib.md5(payload).hexdigest())
    assert dest.read_bytes() == payload and len(calls) == 2
    check_md5(dest, hashlib.md5(payload).hexdigest())
    bad = tmp_path / "d" / "bad.bin"
    with pytest.raises(DataError) as info:
        fetch(("http://ok.example/f.bin",), bad, "0" * 32)
    _one_line(info, bad, "md5")
    assert sorted(p.name for p in dest.parent.iterdir()) == ["f.bin"]  # no temp or bad file
    with pytest.raises(DataError) as info:
        download_dataset("celeba", tmp_path)
    _one_line(info, "img_align_celeba.zip", tmp_path / "celeba")


@pytest.mark.skipif(not (SHARED / "mnist").is_dir(), reason="shared MNIST copy not present")
def test_download_true_fetches_mnist_into_torchvision_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    _serve(monkeypatch, {p.name: p.read_bytes() for p in (SHARED / "mnist").glob("t10k-*.gz")}, calls)
    data = load_image_dataset("mnist", "test", root=tmp_path, download=True)
    assert len(calls) == 2 and "torchvision layout" in data.source and len(data) == 10000
    assert sorted(p.name for p in (tmp_path / "MNIST" / "raw").iterdir()) == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    load_image_dataset("mnist", "test", root=tmp_path, download=True)
    assert len(calls) == 2  # present and verified: not fetched again


# ------------------------------------------------------------------------------- shared copies
def _shared(sub: str) -> Path:
    if not (SHARED / sub).is_dir():
        pytest.skip(f"shared copy {SHARED / sub} not present")
    return SHARED / sub


def test_shared_mnist() -> None:
    root = _shared("mnist")
    train = load_image_dataset("mnist", "train", root=root)
    assert train.images.shape == (60000, 1, 28, 28)
    assert train.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert torch.bincount(train.labels).tolist() == MNIST_TRAIN_COUNTS
    assert train.checksum == MNIST_TRAIN_SHA256
    raw = gzip.decompress((root / "train-images-idx3-ubyte.gz").read_bytes())[16:]
    assert hashlib.sha256(b"60000,1,28,28:" + raw).hexdigest() == MNIST_TRAIN_SHA256  # the definition
    assert load_image_dataset("mnist", "test", root=SHARED).images.shape == (10000, 1, 28, 28)


def test_shared_cifar10_jpeg_test_split_and_png_fixture() -> None:
    root = _shared("cifar10")
    test = load_image_dataset("cifar10", "test", root=root)
    assert test.images.shape == (10000, 3, 32, 32) and "lossy" in test.source
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    png = load_image_dataset("cifar10", "train200", root=root)
    assert png.images.shape == (200, 3, 32, 32) and "lossless" in png.source
    assert png.labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert png.images[0, 0, 0, :3].tolist() == [59, 43, 50]


def test_shared_celeba_subset_at_32_and_64() -> None:
    root = _shared("celeba")
    assert len(_subset_members(root / "celeba_first10k_89x109_jpg.zip", "train")) == 9000
    for resolution in (32, 64):
        data = load_image_dataset("celeba", "test", root=SHARED, resolution=resolution)
        assert data.images.shape == (1000, 3, resolution, resolution) and "subset" in data.source
        assert 60 < data.images.float().mean() < 200


def test_dequantize_model_space_stays_in_the_value_s_bin() -> None:
    from walkback.data.images import dequantize_model_space

    k = torch.arange(256, dtype=torch.float32).repeat(40)
    x = k / 127.5 - 1
    y = dequantize_model_space(x, generator=torch.Generator().manual_seed(0))
    assert ((y >= k / 128 - 1) & (y < (k + 1) / 128 - 1)).all()
    # uniform within the bin: mean offset half a bin
    assert abs(float(((y + 1) * 128 - k).mean()) - 0.5) < 0.02
