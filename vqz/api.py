"""The Python API: ``encode``, ``decode``, ``read_info``, ``load_model``.

>>> import vqz
>>> data = vqz.encode(np.zeros((16, 16, 3), np.uint8), quality=2)   # doctest: +SKIP
>>> vqz.decode(data).size                                            # doctest: +SKIP
(16, 16)
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from vqz.bitstream import unpack
from vqz.codec.image import DEFAULT_MAX_PIXELS, ImageInput, to_rgb_array
from vqz.codec.pipeline import decode_bytes, encode_array, quality_range
from vqz.codec.registry import load_model, model_for_file
from vqz.codec.weights import LoadedWeights

DEFAULT_QUALITY = 4

__all__ = ["DEFAULT_QUALITY", "VqzInfo", "decode", "decode_array", "encode", "load_model", "quality_levels", "read_info"]


@dataclass(frozen=True)
class VqzInfo:
    """What a ``.vqz`` file says about itself. ``bpp`` counts every byte of the file."""

    format_version: int
    model_id: str
    model_hash: str
    width: int
    height: int
    quality: int
    stages: int
    grid_height: int
    grid_width: int
    payload_bytes: list[int]
    header_bytes: int
    total_bytes: int
    bpp: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def quality_levels(model: str | os.PathLike | None = None) -> range:
    """Valid ``quality`` values of a model (default model if None)."""
    return quality_range(load_model(model))


def encode(image: ImageInput, quality: int = DEFAULT_QUALITY, model: str | os.PathLike | LoadedWeights | None = None,
           max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """Compress an image (path, bytes, PIL image or (H, W, 3) uint8 array) to ``.vqz`` bytes."""
    weights = model if isinstance(model, LoadedWeights) else load_model(model)
    data, _ = encode_array(weights, to_rgb_array(image, max_pixels), quality)
    return data


def decode_array(data: bytes, stages: int | None = None) -> np.ndarray:
    """``.vqz`` bytes -> (H, W, 3) uint8 array; ``stages`` decodes only a prefix of the stages."""
    header, _ = unpack(data)
    weights = model_for_file(header.model_id, header.model_hash)
    return decode_bytes(weights, data, stages)


def decode(data: bytes, stages: int | None = None) -> Image.Image:
    """``.vqz`` bytes -> an RGB PIL image."""
    return Image.fromarray(decode_array(data, stages), "RGB")


def read_info(data: bytes) -> VqzInfo:
    """Parse and verify a file's header without decoding the image (needs no model)."""
    header, payloads = unpack(data)
    sizes = [len(p) for p in payloads]
    return VqzInfo(
        format_version=header.version,
        model_id=header.model_id,
        model_hash=header.model_hash.hex(),
        width=header.width,
        height=header.height,
        quality=header.quality,
        stages=len(payloads),
        grid_height=header.grid_height,
        grid_width=header.grid_width,
        payload_bytes=sizes,
        header_bytes=len(data) - sum(sizes),
        total_bytes=len(data),
        bpp=8 * len(data) / (header.width * header.height),
    )

