"""Data: 2-D toy generators and image readers (torchvision layouts and the offline copies)."""

from .errors import DataError
from .images import (
    IMAGE_DATASETS,
    dequantize,
    download_dataset,
    load_image_dataset,
    to_display_uint8,
    to_model_space,
)
from .imageset import ImageSet
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
    "DataError",
    "IMAGE_DATASETS",
    "ImageSet",
    "MOG_STD",
    "RING8_RADIUS",
    "RING8_STD",
    "SPIRAL_NOISE",
    "TOY_DATASETS",
    "dequantize",
    "download_dataset",
    "load_image_dataset",
    "make_toy",
    "to_display_uint8",
    "to_model_space",
    "toy_modes",
]
