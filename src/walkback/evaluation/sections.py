"""The sections of an image ``eval.json``: sample quality (with the real-vs-real floor), the long
chain, the variational bound in bits/dim and the Parzen-window log-likelihood, each with its
protocol."""

from __future__ import annotations

import torch

from ..metrics.likelihood import estimate_bound
from ..metrics.parzen import parzen_evaluate
from .chains import ChainRun
from .context import ImageData
from ..streams import DEFAULT_BLOCK

__all__ = ["REPORTED", "REPORTED_STATES", "quality_sections", "chain_section", "bound_section",
           "parzen_section"]

REPORTED = ("samples: the mean of the last step (the noise-free output), clipped to [-1, 1] and "
            "rounded to uint8 for the metrics")
REPORTED_STATES = ("states: the chains' states (the last step's noise included), clipped to "
                   "[-1, 1] and rounded to uint8 for the metrics")
PARZEN_VALIDATION = 10_000  # the last images of the train split (GAN / GSN protocol)


def quality_sections(quality: dict, floor: dict | None, base: dict, networks: dict) -> dict:
    """Top-level ``fid`` / ``kid`` / ``classes`` sections of a sample set, each with its protocol
    (``base``: data copy, split, N, K, E ...; ``networks``: feature networks and reference files)."""
    floor = floor or {}
    floor_protocol = floor.get("protocol")
    out: dict = {}
    if "fid" in quality:
        out["fid"] = {"value": quality["fid"], "protocol": {**base, **networks.get("inception", {})},
                      "floor": {"value": floor.get("fid"), "protocol": floor_protocol}}
    if "kid" in quality:
        out["kid"] = {**quality["kid"], "protocol": {**base, **networks.get("inception", {})},
                      "floor": {**floor.get("kid", {}), "protocol": floor_protocol}}
    if "classes" in quality:
        out["classes"] = {**quality["classes"],
                          "protocol": {**base, "classifier": networks.get("classifier")},
                          "floor": {"fractions": floor.get("classes", {}).get("fractions"),
                                    "min_fraction": floor.get("classes", {}).get("min_fraction"),
                                    "classifier_fid": floor.get("classifier_fid"),
                                    "protocol": floor_protocol}}
    return out


def _mixing(run: ChainRun, i: int, labels: list[torch.Tensor | None]) -> dict:
    snap = run.snapshots[i]
    mixing = {"previous_E": run.snapshots[i - 1].extra_steps if i else None,
              "move_from_previous_per_dim": snap.move_from_previous,
              "last_step_move_per_dim": snap.last_step_move,
              "pair_distance_per_dim": snap.pair_distance}
    if i and labels[i] is not None and labels[i - 1] is not None:
        mixing["class_change_fraction"] = float((labels[i] != labels[i - 1]).double().mean())
    return mixing


def chain_section(run: ChainRun, quality: dict[int, tuple[dict, torch.Tensor | None]],
                  base: dict) -> dict:
    """Per snapshot E: the sample metrics (``quality[E]``), mixing and non-finite fractions."""
    labels = [quality[s.extra_steps][1] for s in run.snapshots]
    snapshots = []
    for i, snap in enumerate(run.snapshots):
        snapshots.append({"E": snap.extra_steps, "chain_steps": snap.chain_index,
                          **quality[snap.extra_steps][0], "mixing": _mixing(run, i, labels),
                          "nonfinite_fraction": snap.nonfinite_fraction,
                          "outside_fraction": snap.outside_fraction})
    protocol = {**base, "E": [s.extra_steps for s in run.snapshots],
                "mixing": "model-space distances per dimension, ||a - b|| / sqrt(D); pair distance "
                          f"between different chains (first {len(run.snapshots[0].kept)})"}
    return {"protocol": protocol, "snapshots": snapshots}


def bound_section(model, data: ImageData, split: str, num_points: int | None, ms: list[int], *,
                  seed: int, batch_size: int, block: int = DEFAULT_BLOCK,
                  progress: bool = False) -> dict | None:
    """Bits/dim of the bound on ``split`` for each M in ``ms`` (seeds ``seed``, ``seed + 1``, ...);
    ``None`` on the processes other than rank 0 under torchrun."""
    images = data.split(split)
    x = images.images if num_points is None else images.images[:num_points]
    estimates = []
    for i, m in enumerate(ms):
        est = estimate_bound(model, x, num_paths=m, seed=seed + i, batch_size=batch_size, block=block,
                             progress=progress)
        estimates.append(None if est is None else {**est.as_dict(), "seed": seed + i})
    if None in estimates:  # another process holds the results (torchrun: rank 0)
        return None
    protocol = {"data": data.name, "split": split, "source": images.source, "checksum": images.checksum,
                "num_points": len(x), "K": len(model.active_temperatures), "M": ms,
                "units": "bits/dim (8-bit data)", "dequantization": "v = (x + u) / 256, u ~ U[0, 1)",
                "model_space": "y = 2 v - 1", "formula": "bits/dim = 8 - (L_y + D ln 2) / (D ln 2)",
                "breakdown": "plain bound (log w averaged over paths): heating step t adds "
                             "-[log p(s_t-1|s_t) - log q(s_t|s_t-1)] / (D ln 2); the prior "
                             "-log p*(s_K) / (D ln 2); the constant 7"}
    return {"protocol": protocol, "estimates": estimates}


def parzen_section(samples: torch.Tensor, data: ImageData, base: dict, *, device: torch.device,
                   progress: bool = False) -> dict:
    """Parzen log-likelihood of the test split (nats) under the samples, sigma chosen on the last
    images of the train split; pixels in [0, 1] (uint8 / 255)."""
    train, test = data.split("train"), data.split("test")
    n_val = min(PARZEN_VALIDATION, len(train) // 6)
    if n_val < 1:
        raise ValueError(f"parzen: the train split of {data.name} has too few images ({len(train)})")
    unit = lambda x: x.flatten(1).double() / 255.0  # noqa: E731
    r = parzen_evaluate(unit(samples), unit(train.images[-n_val:]), unit(test.images), device=device,
                        progress=progress)
    protocol = {**base, "validation": f"last {n_val} images of the train split ({train.checksum[:16]})",
                "split": "test", "test_checksum": test.checksum, "pixels": "[0, 1] (uint8 / 255)",
                "units": "nats per image", "kernel": "isotropic Gaussian on each sample",
                "note": "legacy metric (2014-2017 tables), unreliable in high dimension"}
    return {"protocol": protocol, **r.__dict__}
