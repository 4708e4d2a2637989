"""Data: 2-D toy generators (image readers live beside them)."""

from .toy import (
    CHECKERBOARD_CELLS,
    MOG_STD,
    RING8_RADIUS,
    RING8_STD,
    SPIRAL_NOISE,
    TOY_DATASETS,
    make_toy,
    toy_modes,
)

__all__ = [
    "CHECKERBOARD_CELLS",
    "MOG_STD",
    "RING8_RADIUS",
    "RING8_STD",
    "SPIRAL_NOISE",
    "TOY_DATASETS",
    "make_toy",
    "toy_modes",
]
