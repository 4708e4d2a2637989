"""Errors with one-line messages; the CLI prints them and exits non-zero."""

from __future__ import annotations

__all__ = ["WalkbackError", "ConfigError", "CheckpointError", "TrainingError"]


class WalkbackError(Exception):
    """Base class: a user-facing problem, reported as one line (exit code ``exit_code``)."""

    exit_code = 1


class ConfigError(WalkbackError):
    """Unknown preset or key, wrong value type or range (exit code 2)."""

    exit_code = 2


class CheckpointError(WalkbackError):
    """A missing, truncated, corrupt or mismatched checkpoint or run folder."""


class TrainingError(WalkbackError):
    """Training diverged (NaN/Inf) or cannot continue."""
