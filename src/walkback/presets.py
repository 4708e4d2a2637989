"""Presets are data: nested overrides of ``config.Config`` defaults, one per data set."""

from __future__ import annotations

import copy
from typing import Any

from .config import Config, config_from_dict
from .errors import ConfigError

__all__ = ["PRESETS", "get_preset"]

# 2-D toys: the 2017 operator form (backbone blind to T), K = 30 heating steps, the first 5 at
# T = 1, then T = 1.2^j. The choices were measured against variants (docs/RESULTS.md).
_TOY: dict[str, Any] = {
    "data": {"num_train": 20000, "num_heldout": 5000},
    "model": {"backbone": "mlp", "form": "2017", "hidden": 128, "depth": 3},
    "schedule": {"num_steps": 30, "t0": 1.0, "factor": 1.2, "n1": 5},
    "train": {"steps": 1000, "batch_size": 500, "lr": 1e-3, "mode": "accumulate"},
}


def _toy(name: str, **changes: Any) -> dict[str, Any]:
    preset = copy.deepcopy(_TOY)
    preset["data"]["name"] = name
    for section, values in changes.items():
        preset[section].update(values)
    return preset


PRESETS: dict[str, dict[str, Any]] = {
    "mog": _toy("mog"),
    "spiral": _toy("spiral"),
    "circle": _toy("circle"),
    "ring8": _toy("ring8"),
    "checkerboard": _toy("checkerboard"),
}


def get_preset(name: str) -> Config:
    """The resolved ``Config`` of preset ``name``."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}")
    return config_from_dict({"preset": name, **PRESETS[name]})
