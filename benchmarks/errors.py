"""Exceptions raised by the benchmark suite.

All derive from :class:`vqz.errors.VqzError`, so the CLI prints them as one line on stderr
and exits with status 1.
"""

from __future__ import annotations

from vqz.errors import VqzError

__all__ = ["BenchmarkError", "CodecUnavailable", "DatasetError"]


class BenchmarkError(VqzError):
    """A benchmark option, input or intermediate result is invalid."""


class CodecUnavailable(BenchmarkError):
    """A codec adapter cannot run here (missing library, Pillow built without it, no API yet)."""


class DatasetError(BenchmarkError):
    """A dataset cannot be resolved, downloaded or verified."""
