"""Data-file errors: one line naming the file (exit code 1)."""

from __future__ import annotations

from ..errors import WalkbackError

__all__ = ["DataError", "DataMissingError"]


class DataError(WalkbackError):
    """A missing, truncated, corrupt or wrong-checksum data file; the message names the file."""

    exit_code = 1


class DataMissingError(DataError):
    """No supported on-disk layout of the data set was found under the root folder."""
