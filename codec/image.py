"""Reading images into 8-bit RGB arrays and writing decoded arrays back out.

Every array here is ``(H, W, 3) uint8`` RGB. Conversions done on input:
EXIF orientation is applied; grayscale, palette (without transparency), CMYK and
YCbCr images are converted to RGB. Images with an alpha channel and high-bit-depth
images are refused with a clear ImageError for now.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vqz.errors import ImageError

DEFAULT_MAX_PIXELS = 1 << 28  # 268 megapixels; raise with the CLI's --max-pixels
ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray, bytes]

WRITE_FORMATS = {".png": "PNG", ".ppm": "PPM", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}


def _from_pil(image: Image.Image) -> np.ndarray:
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a malformed EXIF block must not stop decoding the pixels
        pass
    mode = image.mode
    if mode == "P":
        if "transparency" in image.info:
            raise ImageError("images with transparency are not supported yet")
        image = image.convert("RGB")
    elif mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        raise ImageError("images with an alpha channel are not supported yet")
    elif mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        raise ImageError(f"{mode} images (more than 8 bits per sample) are not supported yet")
    elif mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)


def to_rgb_array(source: ImageInput, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Return ``source`` as a (H, W, 3) uint8 RGB array (a path, bytes, PIL image or array)."""
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8:
            raise ImageError(f"arrays must be uint8, got {source.dtype}")
        if source.ndim == 2:
            source = np.repeat(source[:, :, None], 3, axis=2)
        if source.ndim != 3 or source.shape[2] != 3 or 0 in source.shape:
            raise ImageError(f"arrays must have shape (H, W, 3), got {source.shape}")
        return np.ascontiguousarray(source)
    if isinstance(source, Image.Image):
        return _from_pil(source)
    if not isinstance(source, bytes) and Path(source).is_dir():
        raise ImageError("is a directory")
    try:
        stream = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")
    except OSError as exc:
        raise ImageError(f"cannot open: {exc.strerror or exc}") from None
    with stream:
        try:
            with Image.open(stream) as image:
                if image.width * image.height > max_pixels:
                    raise ImageError(
                        f"{image.width}x{image.height} image exceeds the cap of {max_pixels} pixels (raise it with --max-pixels)"
                    )
                image.load()
                return _from_pil(image)
        except ImageError:
            raise
        except UnidentifiedImageError:
            raise ImageError(f"not an image file, or a format Pillow cannot read") from None
        except Image.DecompressionBombError as exc:
            raise ImageError(f"{exc}") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"cannot read image ({exc})") from None


def write_image(array: np.ndarray, path: Path, format_name: str | None = None) -> None:
    """Write a (H, W, 3) uint8 array to ``path``; the format follows the suffix unless given."""
    fmt = format_name or WRITE_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ImageError(f"unsupported output format (use one of {', '.join(sorted(WRITE_FORMATS))})")
    Image.fromarray(array, "RGB").save(path, format=fmt)


def encode_image_bytes(array: np.ndarray, format_name: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, "RGB").save(buffer, format=format_name)
    return buffer.getvalue()
