"""Sample quality of one set of uint8 images against cached references: Inception FID / KID and,
for MNIST, the class histogram and the classifier-feature FID (the same Frechet code)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..metrics.classifier import MNISTClassifier, class_histogram, predict
from ..metrics.fid import fid_from_stats, kid
from .features import FeatureNet, FeatureSet, extract_features

__all__ = ["QualityContext", "kid_entry", "sample_quality", "KID_SUBSETS", "KID_SUBSET_SIZE"]

KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000


@dataclass
class QualityContext:
    """What the metrics compare against. ``inception`` / ``reference``: the FID network and the
    reference split's features (FID and/or KID per ``want_fid`` / ``want_kid``); ``classifier`` /
    ``classifier_net`` / ``classifier_reference``: the MNIST classifier (class histogram and
    classifier FID), or ``None``."""

    device: torch.device
    seed: int
    progress: bool = False
    want_fid: bool = False
    want_kid: bool = False
    inception: FeatureNet | None = None
    reference: FeatureSet | None = None
    classifier: MNISTClassifier | None = None
    classifier_net: FeatureNet | None = None
    classifier_reference: FeatureSet | None = None
    shared: bool = False  # torchrun: every process scores the same images, each its share


def kid_entry(features: torch.Tensor, reference: torch.Tensor, seed: int) -> dict:
    """KID (unbiased MMD^2, cubic kernel) over ``KID_SUBSETS`` subsets, seeded."""
    result = kid(features, reference, subsets=KID_SUBSETS, subset_size=KID_SUBSET_SIZE,
                 generator=torch.Generator().manual_seed(seed))
    size = min(len(features), len(reference), KID_SUBSET_SIZE)
    return {"mean": result.mean, "std": result.std, "subsets": KID_SUBSETS, "subset_size": size,
            "num_reference": len(reference)}


def _inception_entries(images: torch.Tensor, ctx: QualityContext, desc: str) -> dict:
    assert ctx.inception is not None and ctx.reference is not None
    feats = extract_features(images, ctx.inception, device=ctx.device, progress=ctx.progress,
                             desc=f"{desc} features", shared=ctx.shared)
    out: dict = {}
    if ctx.want_fid:
        out["fid"] = fid_from_stats(feats.stats, ctx.reference.stats)
    if ctx.want_kid and feats.kid_features is not None and ctx.reference.kid_features is not None:
        out["kid"] = kid_entry(feats.kid_features, ctx.reference.kid_features, ctx.seed)
    return out


def _class_entries(images: torch.Tensor, ctx: QualityContext) -> tuple[dict, torch.Tensor]:
    """Class histogram of the predicted digits and the classifier-feature FID."""
    assert ctx.classifier is not None and ctx.classifier_net is not None
    labels, probs = predict(ctx.classifier, images, device=ctx.device)
    entry = asdict(class_histogram(labels, probs))
    if ctx.classifier_reference is not None:
        feats = extract_features(images, ctx.classifier_net, device=ctx.device, shared=ctx.shared)
        entry["classifier_fid"] = fid_from_stats(feats.stats, ctx.classifier_reference.stats)
    return entry, labels


def sample_quality(images: torch.Tensor, ctx: QualityContext, *, desc: str = "samples"
                   ) -> tuple[dict, torch.Tensor | None]:
    """The metrics of uint8 ``images`` ``(N, C, H, W)`` as a dict (``fid``, ``kid``, ``classes``),
    and the predicted class of each image (``None`` without a classifier)."""
    out: dict = {}
    if ctx.want_fid or ctx.want_kid:
        out.update(_inception_entries(images, ctx, desc))
    labels = None
    if ctx.classifier is not None:
        out["classes"], labels = _class_entries(images, ctx)
    return out, labels
