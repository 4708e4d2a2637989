"""Metrics: toy 2-D metrics (modes, nearest-neighbour ratio, MMD) and the 2-D drift's curl."""

from .drift import (
    DriftField,
    HelmholtzParts,
    biot_savart,
    curl_divergence,
    drift_field,
    helmholtz_parts,
    rotational_magnitude,
)
from .toy import (
    ModeStats,
    NearestDistance,
    median_bandwidth,
    mmd_rbf,
    mode_statistics,
    nearest_distance_ratio,
    nearest_distances,
    subsample,
    toy_metrics,
)

__all__ = [
    "DriftField",
    "HelmholtzParts",
    "ModeStats",
    "NearestDistance",
    "biot_savart",
    "curl_divergence",
    "drift_field",
    "helmholtz_parts",
    "median_bandwidth",
    "mmd_rbf",
    "mode_statistics",
    "nearest_distance_ratio",
    "nearest_distances",
    "rotational_magnitude",
    "subsample",
    "toy_metrics",
]
