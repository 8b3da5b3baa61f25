"""Lossless coding of an 8-bit alpha plane: PNG-style "Sub" filter + zlib (deflate).

``encode_alpha((H, W) uint8) -> bytes`` and ``decode_alpha(bytes, H, W) -> (H, W) uint8``.
The decoder never inflates more than ``H * W + 1`` bytes, so a hostile payload cannot
make it allocate beyond what the (already capped) image size allows.
"""

from __future__ import annotations

import zlib

import numpy as np

from vqz.errors import FormatError


def encode_alpha(alpha: np.ndarray) -> bytes:
    if alpha.ndim != 2 or alpha.dtype != np.uint8:
        raise ValueError(f"alpha must be an (H, W) uint8 array, got {alpha.shape} {alpha.dtype}")
    filtered = alpha.copy()
    filtered[:, 1:] = alpha[:, 1:] - alpha[:, :-1]  # wraps modulo 256
    return zlib.compress(filtered.tobytes(), 9)


def decode_alpha(data: bytes, height: int, width: int) -> np.ndarray:
    expected = height * width
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(data, expected + 1)
    except zlib.error as exc:
        raise FormatError(f"alpha plane does not decompress: {exc}") from None
    if len(raw) != expected or not inflater.eof or inflater.unused_data:
        raise FormatError("alpha plane has the wrong size")
    filtered = np.frombuffer(raw, dtype=np.uint8).reshape(height, width)
    return np.cumsum(filtered, axis=1, dtype=np.uint8)
