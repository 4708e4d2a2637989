"""Toy 2-D metrics (docs/evaluation.md, "Toy 2-D data"): mode coverage, nearest-neighbour distance
ratio against held-out data, and an unbiased RBF MMD^2.

All distances are computed in float64 with exact (non-matmul) ``torch.cdist`` in row chunks, so
20k x 20k comparisons need only a few tens of MB.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.toy import toy_modes

__all__ = [
    "ModeStats",
    "NearestDistance",
    "median_bandwidth",
    "mmd_rbf",
    "mode_statistics",
    "nearest_centre",
    "nearest_distance_ratio",
    "nearest_distances",
    "radius_error_median",
    "subsample",
    "toy_metrics",
]

CHUNK_ENTRIES = 2_000_000  # distance-matrix entries per chunk (16 MB in float64)
MEDIAN_POINTS = 2000  # pooled points used for the median-heuristic bandwidth
MMD_POINTS = 5000  # cap on each set in ``toy_metrics``'s MMD
COVERED_FRACTION = 0.01  # a mode is covered when it holds >= 1% of ALL samples (within radius)


def _as_f64(x: torch.Tensor) -> torch.Tensor:
    """Detach and flatten to ``(N, D)`` float64 on CPU."""
    return x.detach().to("cpu", torch.float64).flatten(1)


def _exact_cdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``||a_i - b_j||``, shape ``(N, M)``, without the cancellation-prone matmul path."""
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def _row_chunk(num_cols: int) -> int:
    """Rows per chunk so that a chunk of the distance matrix has about ``CHUNK_ENTRIES`` entries."""
    return max(1, CHUNK_ENTRIES // max(1, num_cols))


def subsample(x: torch.Tensor, n: int) -> torch.Tensor:
    """Deterministic subsample: at most ``n`` rows of ``x`` at evenly spaced indices, ``(min(N, n), D)``."""
    if len(x) <= n:
        return x
    return x[torch.linspace(0, len(x) - 1, n).round().long()]


@dataclass
class ModeStats:
    """Mode statistics of samples against mixture centres.

    ``fraction_within``: fraction of ALL samples within ``radius * std`` of their nearest centre.
    ``weights``: per mode, fraction of the within-radius samples whose nearest centre is that mode
    (sums to 1 when any sample is within; all zeros otherwise).
    ``modes_covered``: modes whose within-radius samples are at least 1% of ALL samples.
    """

    fraction_within: float
    weights: list[float]
    modes_covered: int
    num_modes: int


def nearest_centre(samples: torch.Tensor,
                   centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distance ``(N,)`` from each sample ``(N, 2)`` to its nearest centre ``(M, 2)`` and
    that centre's index ``(N,)``."""
    return _exact_cdist(_as_f64(samples), _as_f64(centres)).min(dim=1)


def mode_statistics(
    samples: torch.Tensor, centres: torch.Tensor, std: float, *, radius: float = 3.0
) -> ModeStats:
    """Assign each sample ``(N, 2)`` to its nearest centre ``(M, 2)``; count those within ``radius * std``."""
    s, c = _as_f64(samples), _as_f64(centres)
    dist, nearest = nearest_centre(s, c)
    within = dist <= radius * std
    counts = torch.bincount(nearest[within], minlength=len(c)).double()
    num_within = counts.sum()
    weights = counts / num_within if num_within > 0 else counts
    covered = int((counts >= COVERED_FRACTION * len(s)).sum()) if len(s) > 0 else 0
    fraction = float(num_within / len(s)) if len(s) > 0 else 0.0
    return ModeStats(fraction, weights.tolist(), covered, len(c))


def nearest_distances(queries: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``min_j ||q_i - r_j||`` for each query, shape ``(N,)`` float64, computed in row chunks."""
    q, r = _as_f64(queries), _as_f64(reference)
    step = _row_chunk(len(r))
    parts = [_exact_cdist(q[i : i + step], r).min(dim=1).values for i in range(0, len(q), step)]
    return torch.cat(parts) if parts else torch.empty(0, dtype=torch.float64)


@dataclass
class NearestDistance:
    """``ratio = sample_median / heldout_median`` of nearest-data-point distances (ideal about 1)."""

    sample_median: float
    heldout_median: float
    ratio: float


def nearest_distance_ratio(
    samples: torch.Tensor, data: torch.Tensor, heldout: torch.Tensor
) -> NearestDistance:
    """``median_i min_j ||x_i - d_j|| / median_k min_j ||h_k - d_j||`` for samples ``x``, data ``d``
    and held-out points ``h`` (the held-out points must not be part of ``data``)."""
    sample_median = float(nearest_distances(samples, data).median())
    heldout_median = float(nearest_distances(heldout, data).median())
    ratio = sample_median / heldout_median if heldout_median > 0 else float("inf")
    return NearestDistance(sample_median, heldout_median, ratio)


def median_bandwidth(x: torch.Tensor, y: torch.Tensor, *, max_points: int = MEDIAN_POINTS) -> float:
    """Median of the pairwise distances (``i < j``) of the pooled set ``[x; y]``, computed on at
    most ``max_points`` pooled points taken at evenly spaced indices."""
    pooled = subsample(torch.cat([_as_f64(x), _as_f64(y)]), max_points)
    return float(torch.pdist(pooled).median())


def _kernel_sum(a: torch.Tensor, b: torch.Tensor, bandwidth: float) -> float:
    """``sum_{i,j} exp(-||a_i - b_j||^2 / (2 h^2))`` in float64, computed in row chunks."""
    step, total = _row_chunk(len(b)), 0.0
    for i in range(0, len(a), step):
        sq = _exact_cdist(a[i : i + step], b).square()
        total += float(torch.exp(-sq / (2 * bandwidth**2)).sum())
    return total


def mmd_rbf(x: torch.Tensor, y: torch.Tensor, *, bandwidth: float | None = None) -> float:
    """Unbiased MMD^2 (Gretton et al. 2012, ``MMD^2_u``) with ``k(a, b) = exp(-||a-b||^2 / (2 h^2))``:

    ``sum_{i!=j} k(x_i,x_j) / (n(n-1)) + sum_{i!=j} k(y_i,y_j) / (m(m-1)) - 2 sum_{i,j} k(x_i,y_j) / (nm)``.

    ``h`` is the median pooled pairwise distance when ``bandwidth`` is None. The estimate can be
    slightly negative; for ``y = x`` it equals ``-2 (1 - mean_{i!=j} k(x_i, x_j)) / n``.
    """
    a, b = _as_f64(x), _as_f64(y)
    n, m = len(a), len(b)
    if n < 2 or m < 2:
        raise ValueError(f"mmd_rbf needs at least 2 points per set, got {n} and {m}")
    h = median_bandwidth(a, b) if bandwidth is None else float(bandwidth)
    if h <= 0:
        raise ValueError(f"bandwidth must be positive, got {h}")
    kxx = (_kernel_sum(a, a, h) - n) / (n * (n - 1))  # k(x_i, x_i) = 1 on the diagonal
    kyy = (_kernel_sum(b, b, h) - m) / (m * (m - 1))
    kxy = _kernel_sum(a, b, h) / (n * m)
    return kxx + kyy - 2 * kxy


def toy_metrics(
    name: str, samples: torch.Tensor, data: torch.Tensor, heldout: torch.Tensor
) -> dict[str, float | list | int]:
    """Flat, JSON-friendly toy metrics of ``samples`` ``(N, 2)`` for data set ``name``.

    Keys: ``nearest_distance_ratio``, ``sample_nearest_median``, ``heldout_nearest_median``,
    ``mmd`` (against ``heldout``, each set capped at 5000 evenly spaced points) and, for the
    mixtures (mog, ring8), ``fraction_within_3std``, ``mode_weights``, ``modes_covered``, ``num_modes``;
    for the circle, ``radius_error_median``.
    """
    out: dict[str, float | list | int] = {}
    modes = toy_modes(name)
    if modes is not None:
        stats = mode_statistics(samples, modes[0], modes[1], radius=3.0)
        out["fraction_within_3std"] = stats.fraction_within
        out["mode_weights"] = stats.weights
        out["modes_covered"] = stats.modes_covered
        out["num_modes"] = stats.num_modes
    near = nearest_distance_ratio(samples, data, heldout)
    out["nearest_distance_ratio"] = near.ratio
    out["sample_nearest_median"] = near.sample_median
    out["heldout_nearest_median"] = near.heldout_median
    out["mmd"] = mmd_rbf(subsample(samples, MMD_POINTS), subsample(heldout, MMD_POINTS))
    if name == "circle":  # the data has zero width, so the nearest-distance ratio says little
        out["radius_error_median"] = radius_error_median(samples)
    return out


def radius_error_median(samples: torch.Tensor, radius: float = 1.0) -> float:
    """Median of ``| ||s|| - radius |`` over samples (0 for exact circle data)."""
    return float((samples.double().norm(dim=1) - radius).abs().median())
