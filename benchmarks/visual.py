"""Visual comparison: the same crop of an image from every codec at matched bitrates.

For each image and each target bitrate (bpp), every codec's setting whose measured bpp on
that image is closest to the target is encoded again, decoded, and the same square crop is
cut from the result. The crop position is the most detailed of a 5 x 5 grid of candidate
windows (largest luminance variance in the original), so flat sky is not what gets compared.
Labels carry the whole image's bpp and PSNR from the results rows.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from vqz.benchmarks.adapter import Codec, setting_key
from vqz.benchmarks.datasets import load_rgb
from vqz.benchmarks.runner import Row

__all__ = ["Crop", "VisualSet", "crop_box", "visual_comparison"]


@dataclass(frozen=True)
class Crop:
    """One codec's crop: PNG bytes of the crop, and the whole-image bpp / PSNR (dB)."""

    codec: str
    label: str
    setting: str
    bpp: float
    psnr: float
    png: bytes


@dataclass(frozen=True)
class VisualSet:
    """All codecs' crops of one image near one target bpp; ``box`` = (left, top, size) in pixels."""

    image: str
    target_bpp: float
    box: tuple[int, int, int]
    original: bytes
    crops: tuple[Crop, ...]


def crop_box(img: np.ndarray, size: int) -> tuple[int, int, int]:
    """``(left, top, side)`` of the most detailed ``size`` x ``size`` window (clamped to the image)."""
    height, width = img.shape[:2]
    side = min(size, height, width)
    luma = img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    best, best_var = (0, 0), -1.0
    for top in np.linspace(0, height - side, 5).astype(int):
        for left in np.linspace(0, width - side, 5).astype(int):
            var = float(luma[top:top + side, left:left + side].var())
            if var > best_var:
                best, best_var = (int(left), int(top)), var
    return best[0], best[1], side


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def visual_comparison(images: Sequence[Path], codecs: Sequence[Codec], rows: Sequence[Row],
                      targets: Sequence[float] = (0.15, 0.4), crop: int = 192) -> list[VisualSet]:
    """Crops of ``images`` for each target bpp and each codec that has rows for that image."""
    by_image: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        by_image.setdefault((row.codec, row.image), []).append(row)
    sets = []
    for path in images:
        img = load_rgb(path)
        left, top, side = crop_box(img, crop)
        window = (slice(top, top + side), slice(left, left + side))
        original = _png(img[window])
        for target in targets:
            crops = []
            for codec in codecs:
                candidates = by_image.get((codec.name, path.name))
                if not candidates:
                    continue
                row = min(candidates, key=lambda r: abs(r.bpp - target))
                setting = {setting_key(s): s for s in codec.settings()}.get(row.setting)
                if setting is None:
                    continue
                decoded = codec.decode(codec.encode(img, setting))
                crops.append(Crop(codec.name, codec.label, row.setting, row.bpp, row.psnr_rgb,
                                  _png(np.ascontiguousarray(decoded[window]))))
            sets.append(VisualSet(path.name, target, (left, top, side), original, tuple(crops)))
    return sets
