"""Backbones: networks ``(s, cond) -> (F, G)`` that know nothing of temperature schedules."""

from .conv2017 import Conv2017Backbone
from .linear import LinearGaussianBackbone
from .mlp import MLPBackbone
from .rate import RateNetworkBackbone
from .unet import UNetBackbone

__all__ = ["Conv2017Backbone", "LinearGaussianBackbone", "MLPBackbone", "RateNetworkBackbone",
           "UNetBackbone"]
