"""The one interface every benchmarked codec implements.

A codec turns an ``(H, W, 3)`` uint8 RGB array into a complete, self-describing file
(``bytes``) at one of its *settings*, and turns such bytes back into an array of the same
shape. The benchmark's rate is always ``len(bytes) * 8 / (W * H)`` bits per pixel: the whole
file, headers and containers included.

Settings are plain numbers whose meaning is per codec (a quality value for JPEG/WebP/AVIF/
JPEG XL/vqz, a target bpp for JPEG 2000); they are written to the CSV as ``str(setting)``.
"""

from __future__ import annotations

import abc
from typing import ClassVar, TypeAlias

import numpy as np

__all__ = ["Codec", "Setting", "benchmark_threads", "setting_key"]

Setting: TypeAlias = int | float
"""One point of a codec's rate sweep (meaning per codec, see :meth:`Codec.settings`)."""


def setting_key(setting: Setting | str) -> str:
    """The CSV spelling of a setting: ``str(setting)`` (``75``, ``0.25``)."""
    return str(setting)


def benchmark_threads() -> int:
    """Threads a codec may use: ``torch.get_num_threads()`` (also given to AVIF and JPEG XL)."""
    import torch

    return int(torch.get_num_threads())


class Codec(abc.ABC):
    """A codec under test.

    Class attributes:

    * ``name``: registry key used on the command line and in the CSV (``"jpeg"``);
    * ``label``: display name for plots and tables;
    * ``rd``: whether the codec belongs in RD plots and BD-rate tables by default (``False``
      for models with untrained weights, kept for speed comparisons only).

    Constructors raise :class:`~vqz.benchmarks.errors.CodecUnavailable` when the codec
    cannot run on this machine.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    rd: ClassVar[bool] = True

    @property
    @abc.abstractmethod
    def description(self) -> str:
        """One sentence: implementation, version and the non-default options used."""

    @abc.abstractmethod
    def settings(self) -> list[Setting]:
        """The rate sweep, from the smallest files to the largest where the codec allows."""

    @abc.abstractmethod
    def encode(self, img: np.ndarray, setting: Setting) -> bytes:
        """``(H, W, 3)`` uint8 RGB -> the complete file bytes at ``setting``."""

    @abc.abstractmethod
    def decode(self, data: bytes) -> np.ndarray:
        """Complete file bytes -> ``(H, W, 3)`` uint8 RGB array."""

    def prepare(self, setting: Setting) -> None:
        """Load whatever ``setting`` needs (model weights, tables) so that it is not timed.

        Called before timing :meth:`encode`/:meth:`decode`; the default does nothing.
        """

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
