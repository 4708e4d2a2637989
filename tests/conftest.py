"""Shared test settings: where the offline data copies live (``../shared`` beside the checkout)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WALKBACK_SHARED", REPO.parent / "shared"))

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs two workers, one per core
    import torch

    torch.set_num_threads(1)


# Saved configs before each backbone had its own section: today's section.key -> the key it had
# in "model" (written out here, apart from the library's own table, walkback.config.MOVED).
OLD_MODEL_KEYS = {
    "mlp.hidden": "hidden", "mlp.depth": "depth", "unet.channels": "channels",
    "unet.channel_mults": "channel_mults", "unet.num_res_blocks": "num_res_blocks",
    "unet.dropout": "dropout", "rate.hidden_units": "hidden_units", "rate.symmetric": "symmetric",
    "rate.relax_steps": "relax_steps", "rate.gain": "rate_gain", "rate.inner_steps": "inner_steps",
    "rate.input_scale": "input_scale", "rate.hidden_min_var": "hidden_min_var",
}


def old_layout(tree: dict) -> dict:
    """A saved config (``config_to_dict``) as earlier versions wrote it: every backbone's keys in
    ``model``, a rate network's leak as ``model.alpha``, and ``train.max_file_mb``."""
    old = {k: v for k, v in tree.items() if k not in ("mlp", "unet", "rate")}
    model = dict(tree["model"])
    for new, key in OLD_MODEL_KEYS.items():
        section, leaf = new.split(".")
        model[key] = tree[section][leaf]
    if model["backbone"] == "rate":
        model["alpha"] = tree["rate"]["leak"]
    old["model"] = model
    old["train"] = {**tree["train"], "max_file_mb": 15.0}
    return old
