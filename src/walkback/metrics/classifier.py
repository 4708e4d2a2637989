"""A small MNIST classifier trained by the project: the class histogram of generated digits and a
classifier-feature FID (penultimate layer, the same Frechet code as Inception FID), a second opinion.

Network (``MNISTClassifier``): uint8 ``(N, 1, 28, 28)`` -> ``(x / 255 - 0.1307) / 0.3081`` ->
conv 3x3 1->32, BatchNorm, ReLU, max-pool 2 -> conv 3x3 32->64, BatchNorm, ReLU, max-pool 2 ->
fc 3136->128, ReLU (the 128-d features) -> dropout 0.25 -> fc 128->10 (logits).
Training: Adam (lr 2e-3, cosine decay to 0), batch 128, ``epochs`` (5) passes over the whole train
split with random shifts of up to ``max_shift`` (2) pixels, seeded; accepted only if its test
accuracy reaches ``min_accuracy`` (0.99). About 15 s on one GPU, several minutes on a laptop CPU.
Cache: ``<cache>/classifier/mnist-cnn-v2-<train checksum[:16]>.safetensors`` plus a ``.json``
holding the MNIST train checksum, the test accuracy and the weights' sha256, verified on load.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from ..atomic import atomic_write_bytes, atomic_write_text
from ..data.imageset import ImageSet
from .fid import MetricsError

__all__ = ["MNISTClassifier", "ClassifierInfo", "ClassHistogram", "train_classifier", "accuracy",
           "predict", "save_classifier", "load_classifier", "cached_classifier", "class_histogram"]

FORMAT = "walkback-mnist-classifier-v2"
FEATURE_DIM, NUM_CLASSES = 128, 10
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def standardise(x: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] -> ``(x - 0.1307) / 0.3081``."""
    return (x - MNIST_MEAN) / MNIST_STD


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image ``(B, C, H, W)`` by integers ``(dy, dx)`` in ``[-m, m]`` (zero fill)."""
    b, _, h, w = x.shape
    shift = torch.randint(-max_shift, max_shift + 1, (b, 2), generator=generator).to(x)
    theta = torch.zeros(b, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 2], theta[:, 1, 2] = -2.0 * shift[:, 1] / w, -2.0 * shift[:, 0] / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


class MNISTClassifier(nn.Module):
    """Two conv layers, one hidden fc layer (features), a linear head (module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.fc = nn.Linear(64 * 7 * 7, FEATURE_DIM)
        self.head = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    @staticmethod
    def normalise(images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(N, 1, 28, 28)`` -> float32 ``(x / 255 - mean) / std``."""
        if images.dtype != torch.uint8 or tuple(images.shape[1:]) != (1, 28, 28):
            raise MetricsError(f"MNIST classifier: expected uint8 (N, 1, 28, 28), got "
                               f"{images.dtype} {tuple(images.shape)}")
        return standardise(images.float() / 255.0)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised ``(N, 1, 28, 28)`` -> penultimate features ``(N, 128)`` (non-negative)."""
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return F.relu(self.fc(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images -> logits ``(N, 10)``."""
        return self.head(F.dropout(self.hidden(x), 0.25, self.training))

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> features ``(N, 128)`` (eval mode: for the classifier FID)."""
        return self.hidden(self.normalise(images.to(self.fc.weight.device)))


@dataclass
class ClassifierInfo:
    """Provenance of a trained classifier (the cache's JSON)."""

    train_checksum: str
    test_checksum: str
    test_accuracy: float
    epochs: int
    seed: int
    max_shift: int = 0
    weights_sha256: str = ""
    file: str = ""
    format: str = FORMAT


@torch.no_grad()
def predict(model: MNISTClassifier, images: torch.Tensor, *, batch_size: int = 1000,
            device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted labels ``(N,)`` and class probabilities ``(N, 10)`` (CPU) of uint8 images."""
    model.eval()
    probs = [F.softmax(model(model.normalise(b.to(device))), 1).cpu() for b in images.split(batch_size)]
    p = torch.cat(probs) if probs else torch.zeros(0, NUM_CLASSES)
    return p.argmax(1), p


def accuracy(model: MNISTClassifier, images: torch.Tensor, labels: torch.Tensor, **kwargs) -> float:
    """Fraction of ``images`` classified as ``labels``."""
    return float((predict(model, images, **kwargs)[0] == labels.cpu()).double().mean())


def _epoch(model: MNISTClassifier, opt: torch.optim.Optimizer, sched, data: ImageSet,
           batch_size: int, max_shift: int, generator: torch.Generator, device: torch.device,
           bar: tqdm) -> None:
    """One pass over ``data`` in a seeded random order, images randomly shifted."""
    model.train()
    order = torch.randperm(len(data), generator=generator)
    for idx in order.split(batch_size):
        model.normalise(data.images[idx[:1]])  # checks dtype and shape
        x = data.images[idx].to(device).float() / 255.0
        if max_shift > 0:
            x = random_shift(x, max_shift, generator)
        x = standardise(x)
        loss = F.cross_entropy(model(x), data.labels[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.update(1)


def train_classifier(train: ImageSet, test: ImageSet, *, epochs: int = 5, batch_size: int = 128,
                     lr: float = 2e-3, max_shift: int = 2, seed: int = 0,
                     device: str | torch.device = "cpu", min_accuracy: float = 0.99,
                     progress: bool = False) -> tuple[MNISTClassifier, ClassifierInfo]:
    """Train on ``train`` (images and labels); raise ``MetricsError`` if the test accuracy is below
    ``min_accuracy``. Seeded: the global RNG is left as it was."""
    if train.labels is None or test.labels is None:
        raise MetricsError(f"{train.name}: the classifier needs labelled train and test splits")
    device = torch.device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MNISTClassifier().to(device)
        steps = epochs * math.ceil(len(train) / batch_size)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        generator = torch.Generator().manual_seed(seed)
        with tqdm(total=steps, disable=not progress, desc="MNIST classifier", unit="batch") as bar:
            for _ in range(epochs):
                _epoch(model, opt, sched, train, batch_size, max_shift, generator, device, bar)
    model.eval()
    acc = accuracy(model, test.images, test.labels, device=device)
    if acc < min_accuracy:
        raise MetricsError(f"MNIST classifier: test accuracy {acc:.4f} < required {min_accuracy} "
                           f"after {epochs} epochs; not cached")
    return model, ClassifierInfo(train.checksum, test.checksum, acc, epochs, seed, max_shift)


def _paths(stem: Path) -> tuple[Path, Path]:
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def save_classifier(model: MNISTClassifier, info: ClassifierInfo, stem: str | Path) -> ClassifierInfo:
    """Write ``<stem>.safetensors`` then ``<stem>.json`` (atomically); returns the info with the
    weights' sha256 and file name filled in."""
    weights_path, json_path = _paths(Path(stem))
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    payload = save_safetensors(state)
    info = ClassifierInfo(**{**asdict(info), "weights_sha256": hashlib.sha256(payload).hexdigest(),
                             "file": str(weights_path)})
    atomic_write_bytes(weights_path, payload)
    atomic_write_text(json_path, json.dumps(asdict(info), indent=2))
    return info


def load_classifier(stem: str | Path, *, train_checksum: str | None,
                    device: str | torch.device = "cpu") -> tuple[MNISTClassifier, ClassifierInfo]:
    """Read a classifier saved by ``save_classifier``; the JSON's format, train checksum
    (unless ``None``) and weights sha256 are verified (one-line ``MetricsError`` naming the file)."""
    weights_path, json_path = _paths(Path(stem))
    try:
        raw = json.loads(json_path.read_text())
        info = ClassifierInfo(**{**raw, "file": str(weights_path)})
    except (OSError, ValueError, TypeError) as exc:
        raise MetricsError(f"{json_path}: unreadable classifier description "
                           f"({type(exc).__name__})") from None
    if info.format != FORMAT:
        raise MetricsError(f"{json_path}: format {info.format!r}, expected {FORMAT!r}")
    if train_checksum is not None and info.train_checksum != train_checksum:
        raise MetricsError(f"{json_path}: classifier trained on MNIST train data with checksum "
                           f"{info.train_checksum[:16]}..., this copy has {train_checksum[:16]}...")
    try:
        payload = weights_path.read_bytes()
        if hashlib.sha256(payload).hexdigest() != info.weights_sha256:
            raise MetricsError(f"{weights_path}: sha256 differs from {json_path.name} (corrupt file)")
        state = load_safetensors(payload)
        model = MNISTClassifier()
        model.load_state_dict(state)
    except (OSError, SafetensorError, RuntimeError) as exc:
        raise MetricsError(f"{weights_path}: unreadable classifier weights "
                           f"({type(exc).__name__})") from None
    return model.to(device).eval(), info


def cached_classifier(cache_dir: str | Path, train: ImageSet, test: ImageSet, *,
                      device: str | torch.device = "cpu", progress: bool = False,
                      **train_kwargs) -> tuple[MNISTClassifier, ClassifierInfo]:
    """The classifier for this MNIST train copy: loaded from the cache, else trained and saved."""
    stem = Path(cache_dir).expanduser() / "classifier" / f"mnist-cnn-v2-{train.checksum[:16]}"
    if _paths(stem)[1].exists():
        return load_classifier(stem, train_checksum=train.checksum, device=device)
    model, info = train_classifier(train, test, device=device, progress=progress, **train_kwargs)
    return model, save_classifier(model, info, stem)


@dataclass
class ClassHistogram:
    """Predicted classes of ``num`` images: ``fractions`` (10), the rarest and most frequent class
    and their fractions, and the mean top-class probability ``mean_confidence``."""

    num: int
    fractions: list[float]
    min_class: int
    min_fraction: float
    max_class: int
    max_fraction: float
    mean_confidence: float


def class_histogram(labels: torch.Tensor, probs: torch.Tensor | None = None,
                    num_classes: int = NUM_CLASSES) -> ClassHistogram:
    """Fractions of ``labels`` ``(N,)`` per class (``probs`` ``(N, C)`` gives the confidence)."""
    counts = torch.bincount(labels.long().cpu(), minlength=num_classes).double()
    n = int(labels.numel())
    frac = counts / max(n, 1)
    conf = float(probs.max(1).values.double().mean()) if probs is not None and n else math.nan
    return ClassHistogram(n, frac.tolist(), int(frac.argmin()), float(frac.min()),
                          int(frac.argmax()), float(frac.max()), conf)
