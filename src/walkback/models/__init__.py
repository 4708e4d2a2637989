"""Backbones: networks ``(s, cond) -> (F, G)`` that know nothing of temperature schedules."""

from .linear import LinearGaussianBackbone
from .mlp import MLPBackbone

__all__ = ["LinearGaussianBackbone", "MLPBackbone"]
