"""What the image metrics compare against: the data set copy (splits read once, described by
source and checksum), the FID network with its cached reference, the MNIST classifier with its
cached reference, and the real-vs-real floor (docs/evaluation.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..data.images import IMAGE_SPLITS, load_image_dataset
from ..data.imageset import ImageSet
from ..metrics.classifier import ClassifierInfo, MNISTClassifier, cached_classifier, predict
from ..metrics.classifier import class_histogram
from ..metrics.fid import MetricsError, fid_from_stats
from .features import FeatureNet, classifier_net, inception_net, reference_features
from .quality import QualityContext, kid_entry

__all__ = ["ImageData", "build_context", "fid_splits", "real_floor"]


@dataclass
class ImageData:
    """Splits of one image data set copy under ``root``, read on first use."""

    name: str
    root: str
    resolution: int | None = None
    cache: dict[str, ImageSet] = field(default_factory=dict)

    def split(self, split: str) -> ImageSet:
        if split not in self.cache:
            self.cache[split] = load_image_dataset(self.name, split, root=self.root,
                                                   resolution=self.resolution)
        return self.cache[split]

    def describe(self) -> dict:
        """Every split read so far: where it came from, its checksum and size."""
        return {"name": self.name, "root": str(self.root), "resolution": self.resolution,
                "splits": {s: {"source": d.source, "checksum": d.checksum, "num": len(d)}
                           for s, d in self.cache.items()}}


def fid_splits(name: str) -> tuple[str, str]:
    """(reference split, floor split): MNIST test (floor: train); others train (floor: test)."""
    if name == "mnist":
        return "test", "train"
    other = "test" if "test" in IMAGE_SPLITS.get(name, ()) else "valid"
    return "train", other


def _classifier(data: ImageData, cache_dir: Path, device: torch.device, progress: bool, epochs: int,
                given: tuple[MNISTClassifier, ClassifierInfo] | None
                ) -> tuple[MNISTClassifier, ClassifierInfo]:
    if data.name != "mnist":
        raise MetricsError(f"metric 'classes' needs MNIST data, got {data.name}")
    if given is not None:
        return given[0].to(device).eval(), given[1]
    return cached_classifier(cache_dir, data.split("train"), data.split("test"), device=device,
                             progress=progress, epochs=epochs)


def build_context(data: ImageData, metrics: set[str], *, cache_dir: Path, device: torch.device,
                  seed: int, progress: bool, fid_weights: str | None, feature_net: FeatureNet | None,
                  classifier: tuple[MNISTClassifier, ClassifierInfo] | None, classifier_epochs: int
                  ) -> tuple[QualityContext, dict]:
    """The quality context for ``metrics`` and its protocol (networks, reference files)."""
    ctx = QualityContext(device=device, seed=seed, progress=progress, want_fid="fid" in metrics,
                         want_kid="kid" in metrics)
    protocol: dict = {}
    ref_split, _ = fid_splits(data.name)
    if ctx.want_fid or ctx.want_kid:
        ctx.inception = feature_net or inception_net(fid_weights, device)
        ctx.reference, ref = reference_features(cache_dir, data.split(ref_split), ctx.inception,
                                                device=device, need_kid=ctx.want_kid, progress=progress)
        protocol["inception"] = {"network": ctx.inception.name, "weights": ctx.inception.source,
                                 "reference": ref}
    if "classes" in metrics:
        model, info = _classifier(data, cache_dir, device, progress, classifier_epochs, classifier)
        ctx.classifier, ctx.classifier_net = model, classifier_net(model, info)
        ctx.classifier_reference, ref = reference_features(
            cache_dir, data.split(ref_split), ctx.classifier_net, device=device, need_kid=False)
        protocol["classifier"] = {**asdict(info), "network": ctx.classifier_net.name, "reference": ref}
    return ctx, protocol


def real_floor(data: ImageData, ctx: QualityContext, n: int, *, cache_dir: Path) -> dict:
    """The same metrics for ``n`` real images of the other split against the reference:
    the value a perfect generator would get with ``n`` samples."""
    _, floor_split = fid_splits(data.name)
    real = data.split(floor_split)
    n = min(n, len(real))
    out: dict = {"protocol": {"data": data.name, "split": floor_split, "source": real.source,
                              "checksum": real.checksum, "num_samples": n,
                              "reference_split": fid_splits(data.name)[0]}}
    if ctx.inception is not None and ctx.reference is not None:
        floor, _ = reference_features(cache_dir, real, ctx.inception, device=ctx.device, first=n,
                                      need_kid=ctx.want_kid, progress=ctx.progress)
        if ctx.want_fid:
            out["fid"] = fid_from_stats(floor.stats, ctx.reference.stats)
        if ctx.want_kid and floor.kid_features is not None and ctx.reference.kid_features is not None:
            out["kid"] = kid_entry(floor.kid_features, ctx.reference.kid_features, ctx.seed)
    if ctx.classifier is not None and ctx.classifier_net is not None:
        floor, _ = reference_features(cache_dir, real, ctx.classifier_net, device=ctx.device,
                                      first=n, need_kid=False)
        out["classifier_fid"] = fid_from_stats(floor.stats, ctx.classifier_reference.stats)
        labels, probs = predict(ctx.classifier, real.images[:n], device=ctx.device)
        out["classes"] = asdict(class_histogram(labels, probs))
    return out
