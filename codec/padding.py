"""Padding an image to a multiple of the model's downsampling (numpy, no torch).

The same arithmetic as CompressAI's ``compressai.ops.compute_padding`` (tested equal in
``tests/runtime/test_runtime.py``): the padding is split between both sides, the smaller half on
the left/top, and filled by replicating the edge pixels.
"""

from __future__ import annotations

import numpy as np

__all__ = ["compute_padding", "pad_rgb", "to_input"]


def compute_padding(in_h: int, in_w: int, *, min_div: int = 1) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """Padding that takes an ``in_h x in_w`` image to the next multiple of ``min_div``.

    Returns ``(pad, unpad)``: ``pad = (left, right, top, bottom)`` and ``unpad`` its negation,
    exactly as ``compressai.ops.compute_padding(in_h, in_w, min_div=min_div)``.
    """
    out_h = (in_h + min_div - 1) // min_div * min_div
    out_w = (in_w + min_div - 1) // min_div * min_div
    left = (out_w - in_w) // 2
    right = out_w - in_w - left
    top = (out_h - in_h) // 2
    bottom = out_h - in_h - top
    return (left, right, top, bottom), (-left, -right, -top, -bottom)


def pad_rgb(rgb: np.ndarray, multiple: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (H', W', 3) uint8, H' and W' the next multiples of ``multiple``,
    padded by replicating the edges (centred: :func:`compute_padding`)."""
    height, width = rgb.shape[:2]
    (left, right, top, bottom), _ = compute_padding(height, width, min_div=multiple)
    if left or right or top or bottom:
        return np.pad(rgb, ((top, bottom), (left, right), (0, 0)), mode="edge")
    return rgb


def to_input(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [0, 1] (``x / 255`` in float32, as torch's
    ``x.float().div_(255.0)``), C-contiguous: the analysis transform's input."""
    x = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32)
    x /= np.float32(255.0)
    return x
