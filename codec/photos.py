"""Folders of photos: listing, loading, and the held-out split by file name (numpy and Pillow only).

The split depends only on each file's name (a hash), so it is stable across machines, runs and
additions to the folder; trainers, benchmarks and probes share it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

__all__ = ["IMAGE_SUFFIXES", "is_validation", "list_images", "load_rgb"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"}


def is_validation(name: str, fraction: float) -> bool:
    """True when the file called ``name`` belongs to the held-out validation split of ``fraction``."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def list_images(folder: Path) -> list[Path]:
    """The image files of ``folder`` (by suffix, not recursive), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def load_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8, EXIF orientation applied."""
    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
