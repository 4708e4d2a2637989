"""Shared test settings: where the offline data copies live (``../shared`` beside the checkout)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WALKBACK_SHARED", REPO.parent / "shared"))

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs two workers, one per core
    import torch

    torch.set_num_threads(1)
