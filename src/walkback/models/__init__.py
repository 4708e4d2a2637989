"""Backbones: networks ``(s, cond) -> (F, G)`` that know nothing of temperature schedules."""

from .mlp import MLPBackbone

__all__ = ["MLPBackbone"]
