"""Feature networks (FID Inception, the MNIST classifier, or a stand-in in tests) and the cached
reference features of real data.

Reference statistics are computed once per data set copy, split, resolution and network and cached
under the cache folder (``--cache-dir``, else ``$WALKBACK_CACHE``, else ``~/.cache/walkback``):
``fid/<data>-<split>[-first<n>]-<H>x<W>-<network>-<checksum[:16]>.npz`` (``FeatureStats``, the full
data checksum stored and verified on load: a file from another copy is a one-line error) and, for
KID, ``...kid.npz`` with the features of the first ``KID_MAX`` images (float32, same check).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .. import distributed
from ..atomic import atomic_write_bytes
from ..data.imageset import ImageSet
from ..metrics.classifier import FEATURE_DIM, ClassifierInfo, MNISTClassifier
from ..metrics.fid import FeatureStats, MetricsError, cached_reference_stats, check_images
from ..metrics.inception import FEATURE_DIM as INCEPTION_DIM
from ..metrics.inception import load_fid_inception

__all__ = ["FeatureNet", "FeatureSet", "default_cache_dir", "inception_net", "classifier_net",
           "extract_features", "reference_features", "KID_MAX"]

KID_MAX = 10_000  # reference features kept for KID (the first ones of the split)
CACHE_ENV = "WALKBACK_CACHE"
KID_FORMAT = "walkback-kid-features-v1"


@dataclass
class FeatureNet:
    """``fn``: uint8 ``(B, C, H, W)`` on ``device`` -> ``(B, dim)`` features; ``name`` tags cache
    files (it must change when the features would); ``source`` says where the weights came from."""

    name: str
    dim: int
    fn: Callable[[torch.Tensor], torch.Tensor]
    source: str
    batch_size: int = 100


@dataclass
class FeatureSet:
    """Streamed statistics of all images and the features of the first ``KID_MAX`` (float32)."""

    stats: FeatureStats
    kid_features: torch.Tensor | None


def default_cache_dir() -> Path:
    """``$WALKBACK_CACHE`` or ``~/.cache/walkback``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "walkback").expanduser()


def inception_net(weights: str | None, device: torch.device) -> FeatureNet:
    """The FID Inception (pool3, 2048-d, TF-style resize); ``weights`` as ``--fid-weights``."""
    net = load_fid_inception(weights, device=device)
    return FeatureNet("inception-2015-12-05-pool3-tf", INCEPTION_DIM, net, net.source, batch_size=100)


def classifier_net(model: MNISTClassifier, info: ClassifierInfo) -> FeatureNet:
    """The MNIST classifier's penultimate layer (128-d), tagged by its weights' sha256."""
    return FeatureNet(f"mnist-cnn-{info.weights_sha256[:12]}", FEATURE_DIM, model.features,
                      info.file or "in memory", batch_size=1000)


@torch.no_grad()
def extract_features(images: torch.Tensor, net: FeatureNet, *, device: torch.device,
                     keep: int = KID_MAX, progress: bool = False, desc: str = "features",
                     shared: bool = False) -> FeatureSet:
    """Stream uint8 ``images`` ``(N, C, H, W)`` through ``net``: statistics of all, features of the
    first ``keep`` (float32, CPU). Batches of ``net.batch_size``: no effect on the result.
    ``shared``: every process (torchrun) calls this with the same images; each streams its share
    of whole batches and every process gets the whole set (float64 sums in another order)."""
    check_images(images)
    first, stop = distributed.share(len(images), net.batch_size) if shared else (0, len(images))
    stats, kept = FeatureStats.empty(net.dim), []
    n_kept = first
    for batch in tqdm(images[first:stop].split(net.batch_size), disable=not progress, desc=desc,
                      unit="batch"):
        f = net.fn(batch.to(device)).detach()
        stats.update(f)
        if n_kept < keep:
            kept.append(f[: keep - n_kept].to("cpu", torch.float32))
            n_kept += len(kept[-1])
    if shared and distributed.world().distributed:
        parts = distributed.all_gather((stats, kept))
        stats = parts[0][0]
        for other, _ in parts[1:]:
            stats = stats.merge(other)
        kept = [t for _, share in parts for t in share]
    return FeatureSet(stats, torch.cat(kept)[:keep] if kept else None)


def _stem(cache_dir: Path, data: ImageSet, first: int | None, net: FeatureNet) -> Path:
    c, h, w = data.image_shape
    part = f"-first{first}" if first is not None else ""
    return cache_dir / "fid" / f"{data.name}-{data.split}{part}-{h}x{w}-{net.name}-{data.checksum[:16]}"


def _save_kid(path: Path, features: torch.Tensor, checksum: str) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, format=np.array(KID_FORMAT), data_checksum=np.array(checksum),
             features=features.numpy())
    atomic_write_bytes(path, buffer.getvalue())


def _load_kid(path: Path, checksum: str, dim: int) -> torch.Tensor:
    try:
        with np.load(path, allow_pickle=False) as z:
            fmt, stored, features = str(z["format"]), str(z["data_checksum"]), np.array(z["features"])
    except Exception as exc:
        raise MetricsError(f"{path}: unreadable KID features ({type(exc).__name__}: {exc})") from None
    if fmt != KID_FORMAT or features.ndim != 2 or features.shape[1] != dim:
        raise MetricsError(f"{path}: not {KID_FORMAT} features of dimension {dim}")
    if stored != checksum:
        raise MetricsError(f"{path}: features come from data with checksum {stored}, but the data "
                           f"now has {checksum}; delete the file to recompute")
    return torch.from_numpy(features)


def reference_features(cache_dir: Path, data: ImageSet, net: FeatureNet, *, device: torch.device,
                       first: int | None = None, need_kid: bool = True,
                       progress: bool = False) -> tuple[FeatureSet, dict]:
    """Cached features of ``data`` (its first ``first`` images if given) and their protocol."""
    images = data.images if first is None else data.images[:first]
    checksum = data.checksum if first is None else f"{data.checksum}:first{first}"
    stem = _stem(Path(cache_dir), data, first, net)
    stats_path, kid_path = stem.with_suffix(".npz"), stem.with_suffix(".kid.npz")
    computed: dict[str, FeatureSet] = {}

    def compute() -> FeatureStats:
        computed["set"] = extract_features(images, net, device=device, progress=progress,
                                           desc=f"{data.name} {data.split} features")
        return computed["set"].stats

    meta = {"data": data.name, "split": data.split, "source": data.source, "num": len(images),
            "network": net.name, "network_source": net.source}
    stats = cached_reference_stats(stats_path, data_checksum=checksum, compute=compute, meta=meta)
    kid_features = None
    if need_kid:
        if "set" not in computed and kid_path.exists():
            kid_features = _load_kid(kid_path, checksum, net.dim)
        else:
            if "set" not in computed:
                compute()
            kid_features = computed["set"].kid_features
            _save_kid(kid_path, kid_features, checksum)
    elif "set" in computed:
        _save_kid(kid_path, computed["set"].kid_features, checksum)
    protocol = {**meta, "checksum": checksum, "stats_file": str(stats_path),
                "kid_features": min(len(images), KID_MAX) if need_kid else None}
    return FeatureSet(stats, kid_features), protocol
