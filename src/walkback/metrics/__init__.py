"""Metrics: toy 2-D metrics, the 2-D drift's curl, FID / KID with the FID Inception-v3, bits/dim
of the bound, the MNIST classifier and Parzen windows."""

from .drift import (
    DriftField,
    HelmholtzParts,
    biot_savart,
    curl_divergence,
    drift_field,
    helmholtz_parts,
    rotational_magnitude,
)
from .fid import (
    KID,
    FeatureStats,
    MetricsError,
    cached_reference_stats,
    check_images,
    compute_stats,
    fid_from_stats,
    frechet_distance,
    kid,
    to_uint8,
)
from .classifier import MNISTClassifier, cached_classifier, class_histogram
from .inception import FIDInception, load_fid_inception, resolve_fid_weights
from .likelihood import bits_per_dim, estimate_bound
from .nonequilibrium import (
    EntropyProduction,
    entropy_production,
    linear_gaussian_entropy_production,
    weight_asymmetry,
)
from .parzen import parzen_evaluate, parzen_log_likelihood, select_sigma
from .toy import (
    ModeStats,
    NearestDistance,
    median_bandwidth,
    mmd_rbf,
    mode_statistics,
    nearest_centre,
    nearest_distance_ratio,
    nearest_distances,
    subsample,
    toy_metrics,
)

__all__ = [
    "DriftField",
    "EntropyProduction",
    "FIDInception",
    "FeatureStats",
    "KID",
    "MNISTClassifier",
    "MetricsError",
    "bits_per_dim",
    "cached_classifier",
    "class_histogram",
    "entropy_production",
    "estimate_bound",
    "linear_gaussian_entropy_production",
    "parzen_evaluate",
    "parzen_log_likelihood",
    "select_sigma",
    "cached_reference_stats",
    "check_images",
    "compute_stats",
    "fid_from_stats",
    "frechet_distance",
    "kid",
    "load_fid_inception",
    "resolve_fid_weights",
    "to_uint8",
    "weight_asymmetry",
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
    "nearest_centre",
    "nearest_distance_ratio",
    "nearest_distances",
    "rotational_magnitude",
    "subsample",
    "toy_metrics",
]
