"""The MNIST classifier: training on a learnable synthetic digit set, the accuracy check, the
cache (checksums verified, nothing written on failure), the class histogram and the features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from walkback.data.imageset import ImageSet, make_image_set
from walkback.metrics import classifier as C
from walkback.metrics.fid import MetricsError


def synthetic_digits(n: int, seed: int, split: str = "train") -> ImageSet:
    """Class k: a bright 8x8 square at one of 10 places, plus noise (learnable in a few steps)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 60, (n, 1, 28, 28)).astype(np.uint8)
    for i, k in enumerate(labels):
        r, c = 2 + 14 * (k // 5), 1 + 5 * (k % 5)
        images[i, 0, r:r + 8, c:c + 5] = 255
    return make_image_set(images, labels, "mnist", split, f"synthetic seed {seed}")


@pytest.fixture(scope="module")
def data() -> tuple[ImageSet, ImageSet]:
    return synthetic_digits(320, 0), synthetic_digits(200, 1, "test")


def _train(data: tuple[ImageSet, ImageSet], **kwargs):
    return C.train_classifier(*data, epochs=2, batch_size=16, lr=3e-3, **kwargs)


def test_trains_checks_accuracy_and_caches(data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train, test = data
    model, info = C.cached_classifier(tmp_path, train, test, epochs=2, batch_size=16, lr=3e-3,
                                      min_accuracy=0.95)
    assert info.test_accuracy >= 0.95 and info.train_checksum == train.checksum
    stem = tmp_path / "classifier" / f"mnist-cnn-v2-{train.checksum[:16]}"
    assert stem.with_suffix(".safetensors").is_file() and stem.with_suffix(".json").is_file()

    def refuse(*args, **kwargs):
        raise AssertionError("trained again instead of loading the cache")

    monkeypatch.setattr(C, "train_classifier", refuse)
    loaded, info2 = C.cached_classifier(tmp_path, train, test)
    assert info2.weights_sha256 == info.weights_sha256 and info2.test_accuracy == info.test_accuracy
    labels, probs = C.predict(model, test.images)
    labels2, probs2 = C.predict(loaded, test.images, batch_size=7)
    assert torch.equal(labels, labels2)
    torch.testing.assert_close(probs, probs2)
    features = loaded.features(test.images[:5])
    assert features.shape == (5, C.FEATURE_DIM) and bool((features >= 0).all())


def test_training_is_seeded(data) -> None:
    a, _ = _train(data, min_accuracy=0.0, seed=3)
    b, _ = _train(data, min_accuracy=0.0, seed=3)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_too_low_accuracy_is_refused_and_nothing_is_cached(data, tmp_path: Path) -> None:
    train, test = data
    shuffled = ImageSet(train.images, train.labels[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))],
                        "mnist", "train", "shuffled labels", train.checksum)
    with pytest.raises(MetricsError, match="test accuracy") as info:
        C.cached_classifier(tmp_path, shuffled, test, epochs=1, batch_size=32, min_accuracy=0.99)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "classifier").exists() or not any((tmp_path / "classifier").iterdir())


def test_cache_from_another_copy_or_corrupt_weights_is_a_one_line_error(data, tmp_path: Path) -> None:
    model, info = _train(data, min_accuracy=0.0)
    stem = tmp_path / "clf"
    C.save_classifier(model, info, stem)
    with pytest.raises(MetricsError, match="checksum") as err:
        C.load_classifier(stem, train_checksum="0" * 64)
    assert str(stem.with_suffix(".json")) in str(err.value) and "\n" not in str(err.value)
    weights = stem.with_suffix(".safetensors")
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(MetricsError, match="corrupt") as err:
        C.load_classifier(stem, train_checksum=info.train_checksum)
    assert str(weights) in str(err.value)


def test_class_histogram() -> None:
    labels = torch.tensor([0, 0, 0, 1, 2, 2, 9, 9])
    probs = torch.full((8, 10), 0.05)
    probs[:, 0] = 0.55
    h = C.class_histogram(labels, probs)
    assert h.num == 8 and sum(h.fractions) == pytest.approx(1.0)
    assert h.fractions[0] == pytest.approx(3 / 8) and h.max_class == 0 and h.max_fraction == pytest.approx(3 / 8)
    assert h.min_fraction == 0.0 and h.min_class == 3  # first absent class
    assert h.mean_confidence == pytest.approx(0.55)


def test_wrong_input_is_an_error() -> None:
    with pytest.raises(MetricsError, match="uint8"):
        C.MNISTClassifier().features(torch.zeros(2, 1, 28, 28))
    with pytest.raises(MetricsError, match=r"\(N, 1, 28, 28\)"):
        C.MNISTClassifier().features(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))


def test_random_shift_translates_by_whole_pixels() -> None:
    x = torch.zeros(3, 1, 28, 28)
    x[:, 0, 10, 12] = 1.0
    shifted = C.random_shift(x, 2, torch.Generator().manual_seed(0))
    for img in shifted:
        (r, c), = torch.nonzero(img[0] == 1.0).tolist()
        assert abs(r - 10) <= 2 and abs(c - 12) <= 2 and float(img.sum()) == 1.0
