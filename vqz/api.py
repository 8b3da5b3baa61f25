"""The Python API: ``encode``, ``decode``, ``decode_array``, ``read_info``, ``load_model``.

>>> import numpy as np, vqz
>>> data = vqz.encode(np.zeros((16, 16, 3), np.uint8), quality=2)   # doctest: +SKIP
>>> vqz.decode(data).size                                            # doctest: +SKIP
(16, 16)

Importing this module is cheap (numpy and Pillow): the model and ONNX Runtime are imported the
first time a function needs them. Every function raises :class:`vqz.errors.VqzError`
subclasses for bad data (``ImageError``, ``FormatError``, ``ModelError``) and ``ValueError``
/ ``TypeError`` for arguments that make no sense.
"""

from __future__ import annotations

import operator
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np
from PIL import Image

from vqz.bitstream import unpack, unpack_file
from vqz.codec.image import DEFAULT_MAX_PIXELS, ImageInput, load_image
from vqz.errors import FormatError

if TYPE_CHECKING:
    from vqz.codec.weights import LoadedWeights

DEFAULT_QUALITY = 4
MAX_FILE_BYTES = 1 << 31

#: A ``.vqz`` file: its bytes (``bytes``, ``bytearray``, ``memoryview``) or its path.
VqzInput = Union[bytes, bytearray, memoryview, str, os.PathLike]
#: A model: its id, the path of a weights file, an already loaded model, or None (default).
ModelInput = Union[str, os.PathLike, "LoadedWeights", None]

__all__ = [
    "DEFAULT_QUALITY",
    "ModelInput",
    "VqzInfo",
    "VqzInput",
    "decode",
    "decode_array",
    "encode",
    "load_model",
    "quality_levels",
    "read_info",
]


@dataclass(frozen=True)
class VqzInfo:
    """What a ``.vqz`` file says about itself. ``bpp`` counts every byte of the file.

    ``quality`` is the level the file was made at (with rate control: the level chosen);
    ``stages`` is the number of payloads; ``payload_bytes`` their sizes, stage 0 first;
    ``header_bytes`` everything else (header fields and CRC).
    """

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
    alpha_bytes: int  # the lossless alpha plane (0: the file has none)
    header_bytes: int
    total_bytes: int
    bpp: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def load_model(name: str | os.PathLike | None = None) -> LoadedWeights:
    """A model by id (``None``: the default bundled model) or by the path of a weights file.

    Models are loaded once per process and cached. Raises ``ModelError`` if not installed.
    """
    from vqz.codec.registry import load_model as _load

    return _load(name)


def _weights(model: ModelInput) -> LoadedWeights:
    from vqz.codec.weights import LoadedWeights

    return model if isinstance(model, LoadedWeights) else load_model(model)


def _read_vqz(data: VqzInput) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if not isinstance(data, (str, os.PathLike)):
        raise TypeError(f"expected .vqz bytes or a path, got {type(data).__name__}")
    path = Path(data)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise FormatError(f"{path}: file is larger than {MAX_FILE_BYTES} bytes")
        return path.read_bytes()
    except OSError as exc:
        raise FormatError(f"{path}: cannot read: {exc.strerror or exc}") from None


def quality_levels(model: ModelInput = None) -> range:
    """Valid ``quality`` values of a model: 1 (smallest files) .. its number of stages (best)."""
    from vqz.codec.pipeline import quality_range

    return quality_range(_weights(model))


def encode(
    image: ImageInput,
    quality: int | None = None,
    *,
    target_bpp: float | None = None,
    target_psnr: float | None = None,
    model: ModelInput = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> bytes:
    """Compress an image to the bytes of a ``.vqz`` file.

    ``image``: a path, the bytes of an image file, a PIL image (EXIF orientation is
    applied; grayscale, palette and CMYK are converted to RGB) or an (H, W, 3) uint8 array;
    an alpha channel (RGBA/LA images, transparency, an (H, W, 4) array) is kept losslessly.
    Give at most one of ``quality`` (1 .. ``quality_levels()[-1]``; default
    ``DEFAULT_QUALITY``), ``target_bpp`` (the highest quality whose file is at most this
    many bits per pixel, else quality 1) or ``target_psnr`` (the smallest file whose
    decoded image reaches this PSNR in dB, else the best quality); the level used is in
    ``read_info(data).quality``. ``max_pixels`` refuses larger image files (a
    decompression-bomb guard; ``ImageError``).
    """
    if sum(x is not None for x in (quality, target_bpp, target_psnr)) > 1:
        raise ValueError("give at most one of quality, target_bpp and target_psnr")
    weights = _weights(model)
    rgb, alpha = load_image(image, max_pixels)
    if target_bpp is not None or target_psnr is not None:
        from vqz.codec.rate_control import encode_for_target

        return encode_for_target(weights, rgb, target_bpp=target_bpp, target_psnr=target_psnr, alpha=alpha).data
    from vqz.codec.pipeline import encode_array

    data, _ = encode_array(weights, rgb, DEFAULT_QUALITY if quality is None else operator.index(quality), alpha)
    return data


def decode_array(data: VqzInput, stages: int | None = None) -> np.ndarray:
    """A ``.vqz`` file (bytes or path) -> (H, W, 3) uint8 RGB array, or (H, W, 4) RGBA when
    the file carries an alpha plane.

    ``stages`` decodes only the first N stages: the image the encoder would have made at
    quality N (a coarser, progressive preview of the same file). The model that wrote the
    file (same id and weights hash) must be installed, else ``ModelError``.
    """
    if stages is not None and stages < 1:
        raise ValueError(f"stages must be at least 1, got {stages}")
    from vqz.codec.pipeline import decode_image
    from vqz.codec.registry import model_for_file

    raw = _read_vqz(data)
    header, _ = unpack(raw)
    rgb, alpha = decode_image(model_for_file(header.model_id, header.model_hash), raw, stages)
    return rgb if alpha is None else np.concatenate([rgb, alpha[:, :, None]], axis=2)


def decode(data: VqzInput, stages: int | None = None) -> Image.Image:
    """A ``.vqz`` file (bytes or path) -> an RGB (or RGBA) PIL image; ``stages`` as in :func:`decode_array`."""
    pixels = decode_array(data, stages)
    return Image.fromarray(pixels, "RGBA" if pixels.shape[2] == 4 else "RGB")


def read_info(data: VqzInput) -> VqzInfo:
    """Parse and verify a file's header and CRC without decoding the image (needs no model)."""
    raw = _read_vqz(data)
    parsed = unpack_file(raw)
    header, payloads = parsed.header, parsed.payloads
    sizes = [len(p) for p in payloads]
    alpha_bytes = len(parsed.alpha) if parsed.alpha is not None else 0
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
        alpha_bytes=alpha_bytes,
        header_bytes=len(raw) - sum(sizes) - alpha_bytes,
        total_bytes=len(raw),
        bpp=8 * len(raw) / (header.width * header.height),
    )
