"""FID and KID from streamed Inception pool3 features (docs/evaluation.md, "Sample quality").

- ``FeatureStats``: count ``n``, ``sum_i f_i`` and ``sum_i f_i f_i^T`` in float64; mean and unbiased
  covariance from them; merged across batches, so the result does not depend on the batch size.
- FID ``= |mu_1 - mu_2|^2 + tr(S_1) + tr(S_2) - 2 tr((S_1 S_2)^(1/2))``, with
  ``tr((S_1 S_2)^(1/2)) = ||S_2^(1/2) S_1^(1/2)||_*`` (nuclear norm; symmetric square roots; float64).
- KID: unbiased MMD^2, ``k(x, y) = (x.y / d + 1)^3``, over random subsets (torch-fidelity, clean-fid).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from ..errors import WalkbackError

__all__ = [
    "FeatureStats", "KID", "MetricsError", "cached_reference_stats", "check_images",
    "compute_stats", "fid_from_stats", "frechet_distance", "kid", "to_uint8",
]

STATS_FORMAT = "walkback-fid-stats-v1"


class MetricsError(WalkbackError):
    """Missing or corrupt FID weights or statistics, mismatched data checksum, bad samples."""


def check_images(x: Any, *, name: str = "images") -> None:
    """Require a uint8 tensor ``(N >= 1, C in {1, 3}, H >= 8, W >= 8)``; one-line error otherwise."""
    if not isinstance(x, torch.Tensor):
        raise MetricsError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dtype != torch.uint8:
        raise MetricsError(f"{name}: expected dtype uint8 (0..255), got {x.dtype}; use to_uint8()")
    if x.ndim != 4 or x.shape[0] < 1 or x.shape[1] not in (1, 3) or min(x.shape[2:]) < 8:
        raise MetricsError(f"{name}: expected shape (N, C in {{1, 3}}, H >= 8, W >= 8), "
                           f"got {tuple(x.shape)}")


def to_uint8(samples: torch.Tensor, *, limit: float = 4.0) -> torch.Tensor:
    """Float samples in model space ``[-1, 1]`` -> uint8 ``round((clip(x, -1, 1) + 1) * 127.5)``.
    Values beyond ``+-limit`` (e.g. data in 0..255) or non-finite values are an error."""
    if not isinstance(samples, torch.Tensor) or not samples.is_floating_point():
        raise MetricsError(f"samples: expected a float tensor in [-1, 1], got "
                           f"{getattr(samples, 'dtype', type(samples).__name__)}")
    if not torch.isfinite(samples).all():
        raise MetricsError("samples: non-finite values (NaN/Inf)")
    hi = samples.abs().max().item() if samples.numel() else 0.0
    if hi > limit:
        raise MetricsError(f"samples: values reach {hi:.3g}, expected model space [-1, 1] "
                           f"(limit {limit}); is this 0..255 data?")
    return ((samples.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


@dataclass
class FeatureStats:
    """Running sums of features ``f (D,)``: ``count``, ``sum`` (D,), ``sum_outer`` (D, D); float64."""

    count: int = 0
    sum: torch.Tensor = field(default_factory=lambda: torch.zeros(2048, dtype=torch.float64))
    sum_outer: torch.Tensor = field(
        default_factory=lambda: torch.zeros(2048, 2048, dtype=torch.float64))

    @classmethod
    def empty(cls, dim: int = 2048) -> FeatureStats:
        """Zero statistics for ``dim``-dimensional features."""
        return cls(0, torch.zeros(dim, dtype=torch.float64),
                   torch.zeros(dim, dim, dtype=torch.float64))

    def update(self, features: torch.Tensor) -> FeatureStats:
        """Add a batch ``(N, D)`` of features (summed in float64 on CPU). Returns ``self``."""
        f = features.detach().to("cpu", torch.float64)
        if f.ndim != 2 or f.shape[1] != self.sum.shape[0]:
            raise MetricsError(f"features: expected shape (N, {self.sum.shape[0]}), "
                               f"got {tuple(f.shape)}")
        self.count += f.shape[0]
        self.sum += f.sum(0)
        self.sum_outer += f.T @ f
        return self

    def merge(self, other: FeatureStats) -> FeatureStats:
        """Statistics of the union of both sets (e.g. from several workers)."""
        return FeatureStats(self.count + other.count, self.sum + other.sum,
                            self.sum_outer + other.sum_outer)

    @property
    def mean(self) -> torch.Tensor:
        """``mu = sum / n`` (D,)."""
        return self.sum / self.count

    @property
    def cov(self) -> torch.Tensor:
        """Unbiased covariance ``(sum_outer - n mu mu^T) / (n - 1)`` (D, D); needs ``n >= 2``."""
        if self.count < 2:
            raise MetricsError(f"FID statistics need at least 2 images, got {self.count}")
        mu = self.mean
        return (self.sum_outer - self.count * torch.outer(mu, mu)) / (self.count - 1)

    def save_npz(self, path: str | Path, *, data_checksum: str, meta: dict | None = None) -> None:
        """Write atomically (temp file + rename) with the checksum of the data they came from."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp.npz", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, format=np.array(STATS_FORMAT), count=np.array(self.count),
                         sum=self.sum.numpy(), sum_outer=self.sum_outer.numpy(),
                         data_checksum=np.array(data_checksum),
                         meta=np.array(json.dumps(meta or {}, sort_keys=True)))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @classmethod
    def load_npz(cls, path: str | Path, *, expected_checksum: str | None) -> FeatureStats:
        """Read statistics saved by ``save_npz``; raise if the stored data checksum differs from
        ``expected_checksum`` (``None`` skips that check)."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                fmt, stored = str(z["format"]), str(z["data_checksum"])
                count, s, so = int(z["count"]), np.array(z["sum"]), np.array(z["sum_outer"])
        except Exception as e:
            raise MetricsError(f"{path}: unreadable FID statistics ({type(e).__name__}: {e})") from None
        d = s.shape[0] if s.ndim == 1 else -1
        if fmt != STATS_FORMAT or d < 1 or so.shape != (d, d) or count < 0:
            raise MetricsError(f"{path}: not {STATS_FORMAT} statistics (format {fmt!r}, sum "
                               f"{s.shape}, sum_outer {so.shape})")
        if expected_checksum is not None and stored != expected_checksum:
            raise MetricsError(f"{path}: statistics come from data with checksum {stored}, but the "
                               f"data now has {expected_checksum}; delete the file to recompute")
        return cls(count, torch.from_numpy(s).double(), torch.from_numpy(so).double())

    @staticmethod
    def read_meta(path: str | Path) -> dict:
        """The ``meta`` dict stored by ``save_npz``."""
        with np.load(path, allow_pickle=False) as z:
            return json.loads(str(z["meta"]))


def _as_np(a: Any) -> np.ndarray:
    return a.detach().cpu().double().numpy() if isinstance(a, torch.Tensor) else np.asarray(a, float)


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    """Symmetric square root of a PSD matrix (negative rounding eigenvalues clipped to 0)."""
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: Any, cov1: Any, mu2: Any, cov2: Any) -> float:
    """``|mu1 - mu2|^2 + tr(S1 + S2) - 2 tr((S1 S2)^(1/2))`` in float64. The trace term is the sum of
    singular values of ``S2^(1/2) S1^(1/2)`` (= ``sum sqrt(eig(S1^(1/2) S2 S1^(1/2)))``): no sqrt of
    rounding noise, so singular (few-sample) covariances give FID(a, a) ~ 1e-12, not ~1e-5 (sqrtm)."""
    mu1, mu2, c1, c2 = _as_np(mu1), _as_np(mu2), _as_np(cov1), _as_np(cov2)
    if mu1.shape != mu2.shape or c1.shape != c2.shape or c1.shape != mu1.shape * 2:
        raise MetricsError(f"frechet_distance: shapes differ: mu {mu1.shape} / {mu2.shape}, "
                           f"cov {c1.shape} / {c2.shape}")
    if not all(np.isfinite(a).all() for a in (mu1, mu2, c1, c2)):
        raise MetricsError("frechet_distance: non-finite mean or covariance (NaN/Inf features?)")
    tr_sqrt = np.linalg.svd(_sqrt_psd(c2) @ _sqrt_psd(c1), compute_uv=False).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(c1) + np.trace(c2) - 2 * tr_sqrt)


def fid_from_stats(a: FeatureStats, b: FeatureStats) -> float:
    """FID between two feature statistics."""
    return frechet_distance(a.mean, a.cov, b.mean, b.cov)


class KID(NamedTuple):
    """KID = unbiased MMD^2 (polynomial kernel): mean and std (ddof 0) over subsets."""

    mean: float
    std: float


def _mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``sum_{i != j} [k(x_i, x_j) + k(y_i, y_j)] / (m (m - 1)) - 2 sum_{i, j} k(x_i, y_j) / m^2``."""
    m, d = x.shape
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    same = (kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return same - 2 * kxy.sum() / m**2


def kid(features_x: torch.Tensor, features_y: torch.Tensor, *, subsets: int = 100,
        subset_size: int = 1000, generator: torch.Generator | None = None) -> KID:
    """KID of features ``(N, D)`` and ``(M, D)``: per subset, ``m = min(N, M, subset_size)`` rows of
    each drawn without replacement; unbiased MMD^2 averaged over ``subsets`` (float64)."""
    x, y = _as_tensor(features_x), _as_tensor(features_y)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise MetricsError(f"kid: features must be (N, D) and (M, D), got {tuple(x.shape)}, "
                           f"{tuple(y.shape)}")
    m = min(x.shape[0], y.shape[0], subset_size)
    if m < 2 or subsets < 1:
        raise MetricsError(f"kid: need subset size >= 2 and subsets >= 1, got {m}, {subsets}")
    vals = torch.empty(subsets, dtype=torch.float64)
    for i in range(subsets):
        ix = torch.randperm(x.shape[0], generator=generator)[:m]
        iy = torch.randperm(y.shape[0], generator=generator)[:m]
        vals[i] = _mmd2_unbiased(x[ix], y[iy])
    return KID(float(vals.mean()), float(vals.std(unbiased=False)))


def _as_tensor(a: Any) -> torch.Tensor:
    t = a if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))
    return t.detach().to("cpu", torch.float64)


def _batches(images: torch.Tensor | Iterable[torch.Tensor], batch_size: int):
    """Re-chunk a tensor or an iterable of batches into batches of at most ``batch_size``."""
    for chunk in (images,) if isinstance(images, torch.Tensor) else images:
        check_images(chunk)
        yield from chunk.split(batch_size)


def compute_stats(images: torch.Tensor | Iterable[torch.Tensor],
                  net: Callable[[torch.Tensor], torch.Tensor], *, batch_size: int = 50,
                  device: str | torch.device = "cpu", progress: bool = False,
                  dim: int = 2048) -> FeatureStats:
    """Stream uint8 images ``(N, C, H, W)`` (one tensor or an iterable of batches) through ``net``
    (uint8 -> ``(B, dim)`` features) and accumulate ``FeatureStats``; no feature set is held."""
    if batch_size < 1:
        raise MetricsError(f"batch_size must be >= 1, got {batch_size}")
    stats = FeatureStats.empty(dim)
    total = images.shape[0] if isinstance(images, torch.Tensor) else None
    with torch.inference_mode(), tqdm(total=total, disable=not progress, desc="FID features",
                                      unit="img") as bar:
        for batch in _batches(images, batch_size):
            stats.update(net(batch.to(device)))
            bar.update(batch.shape[0])
    return stats


def cached_reference_stats(path: str | Path, *, data_checksum: str,
                           compute: Callable[[], FeatureStats], meta: dict | None = None
                           ) -> FeatureStats:
    """Load ``path`` if present (raising on a checksum mismatch, nothing overwritten); else
    ``compute()`` once and save it with ``data_checksum`` and ``meta``."""
    if Path(path).exists():
        return FeatureStats.load_npz(path, expected_checksum=data_checksum)
    stats = compute()
    stats.save_npz(path, data_checksum=data_checksum, meta=meta)
    return stats

