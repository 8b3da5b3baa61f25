"""Reading images into 8-bit RGB arrays and writing decoded arrays back out.

Every array here is ``(H, W, 3) uint8`` RGB. What happens to an input image:

* the pixel count is checked against ``max_pixels`` as soon as the header is parsed,
  before any pixel is decoded (a decompression-bomb guard; Pillow's own guard,
  ``Image.MAX_IMAGE_PIXELS``, is made to agree with it, see :func:`_pillow_guard_lifted`);
* animated (or multi-page) images: the first frame, with a ``UserWarning``;
* alpha (RGBA, LA, PA, or a palette / colour key with transparency): :func:`load_image`
  returns it as a separate (H, W) uint8 plane, which the container stores losslessly;
  :func:`to_rgb_array` (RGB only) refuses such images with an ``ImageError``;
* 16-bit grayscale (``I;16*``, ``I``): scaled to 8 bits with rounding
  (``round(v * 255 / 65535)``) and a ``UserWarning``; 16-bit colour images, which Pillow
  itself reduces to 8 bits when it reads them, get the same warning; 32-bit float: ``ImageError``;
* an embedded ICC profile: :func:`read_image` keeps an RGB image's pixels in their own
  colour space and returns the profile with them (as JPEG, WebP and AVIF do), unless
  ``srgb=True``; a profile for another colour space than the pixels' (a grayscale or CMYK
  image, converted to RGB here), or ``srgb=True``, or the pixels-only readers
  (:func:`load_image`, :func:`to_rgb_array`): converted to sRGB with LittleCMS
  (``PIL.ImageCms``) and the profile dropped; an unreadable profile is ignored with a warning;
* grayscale, palette, CMYK (Adobe-inverted JPEGs included), YCbCr: converted to RGB;
* the EXIF orientation tag is applied last (orientation 5..8 swap width and height); the
  metadata :func:`read_image` returns then says orientation 1 (see :mod:`vqz.codec.metadata`).
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from vqz.codec import metadata as _metadata
from vqz.codec.metadata import Metadata
from vqz.errors import ImageError

DEFAULT_MAX_PIXELS = 1 << 28  # 268 megapixels; raise with the CLI's --max-pixels
ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray, bytes]

WRITE_FORMATS = {".png": "PNG", ".ppm": "PPM", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP", ".jpg": "JPEG",
                 ".jpeg": "JPEG", ".webp": "WEBP"}
#: Pillow save options per output format: JPEG at a high quality (a decoded image is final), WebP lossless.
#: PNG at level 1 (``vqz decode --png-level``), :data:`FAST_PNG_LEVEL`: the fast writer of
#: :mod:`vqz.codec.png_writer` (on a 13-megapixel decode 0.17 s against Pillow's 1.1 s at zlib level 1, for 8%
#: more bytes); a decoded image is mostly viewed or re-encoded, rarely archived as it is. Levels 0 and 2-9 are
#: Pillow's writer at that zlib level (9: the smallest files, several times slower).
FAST_PNG_LEVEL = 1
DEFAULT_PNG_LEVEL = FAST_PNG_LEVEL
WRITE_OPTIONS: dict[str, dict[str, object]] = {"JPEG": {"quality": 95, "subsampling": 0}, "WEBP": {"lossless": True}}

ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
SIXTEEN_BIT_WARNING = "converted 16-bit image to 8 bits"
ANIMATED_WARNING = "animated image: only the first frame is encoded"

#: EXIF orientation -> the transposition that displays the image upright (as ImageOps.exif_transpose).
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_EXIF_ORIENTATION_TAG = 0x0112

#: What Pillow's decoders raise on malformed or truncated files (zlib.error: iCCP / zTXt chunks).
_DECODER_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, struct.error, zlib.error)

_GUARD_LOCK = threading.Lock()


# ---------------------------------------------------------------------------- size guard
def check_pixels(width: int, height: int, max_pixels: int) -> None:
    """ImageError naming the size and the cap if ``width * height`` exceeds ``max_pixels``."""
    if width * height > max_pixels:
        raise ImageError(
            f"{width}x{height} image ({width * height} pixels) exceeds the cap of {max_pixels} pixels "
            "(raise it with --max-pixels)"
        )


@contextlib.contextmanager
def _pillow_guard_lifted() -> Iterator[None]:
    """Pillow's decompression-bomb error disabled for one read, then restored.

    ``Image.open`` raises ``DecompressionBombError`` above ``2 * Image.MAX_IMAGE_PIXELS``
    (179 megapixels by default) before we see the header. Our own cap (``max_pixels``,
    checked right after the header is parsed, before any pixel is decoded) is the one
    the user set, so when Pillow's fires first we read the file again with Pillow's
    limit lifted. Only that retry touches the process-global, under a lock, and it is
    restored on the way out; ordinary reads leave it alone.
    """
    with _GUARD_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


# ---------------------------------------------------------------------------- conversions
def _sixteen_to_eight(image: Image.Image) -> Image.Image:
    """A 16-bit grayscale image (``I;16*``, or ``I`` holding 0..65535) -> ``L``, rounded."""
    values = np.asarray(image)
    if image.mode == "I":
        values = np.clip(values, 0, 0xFFFF)
    scaled = (values.astype(np.uint32) * 255 + 0x7FFF) // 0xFFFF  # round(v * 255 / 65535); never a tie
    warnings.warn(SIXTEEN_BIT_WARNING, UserWarning, stacklevel=4)
    return Image.fromarray(scaled.astype(np.uint8), "L")


def _decoded_from_16_bits(image: Image.Image) -> bool:
    """True when Pillow will reduce 16-bit samples to 8 on reading (e.g. a 16-bit RGB PNG,
    raw mode ``RGB;16B``). Looks at the tiles, so call it before ``load()``."""
    for tile in getattr(image, "tile", None) or []:
        rawmode = tile.args[0] if isinstance(tile.args, tuple) and tile.args else tile.args
        if isinstance(rawmode, str) and ";16" in rawmode:
            return True
    return False


def _is_srgb(profile: object) -> bool:
    """A profile whose description names sRGB ("sRGB IEC61966-2.1", "sRGB built-in", ...) is
    taken as sRGB and not converted: converting would at best reproduce the same pixels."""
    description = getattr(getattr(profile, "profile", None), "profile_description", None) or ""
    return "srgb" in description.lower()


def _to_srgb(image: Image.Image, icc: bytes) -> Image.Image:
    """``image`` (RGB, L or CMYK) converted from its ICC profile to sRGB (an RGB image).

    Returns ``image`` unchanged when the profile already is sRGB, and with a warning when
    the profile cannot be used (unreadable, or for another colour space than the pixels').
    """
    try:
        from PIL import ImageCms
    except ImportError:  # Pillow built without LittleCMS
        warnings.warn("ignored the embedded ICC profile: Pillow has no LittleCMS support", UserWarning, stacklevel=4)
        return image
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if _is_srgb(profile):
            return image
        space = profile.profile.xcolor_space.strip()
        if {"RGB": "RGB", "GRAY": "L", "CMYK": "CMYK"}.get(space) != image.mode:
            warnings.warn(f"ignored an ICC profile for {space} on a {image.mode} image", UserWarning, stacklevel=4)
            return image
        converted = ImageCms.profileToProfile(image, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as exc:
        warnings.warn(f"ignored an unreadable ICC profile ({exc})", UserWarning, stacklevel=4)
        return image
    return converted if converted is not None else image


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    except Exception:  # a malformed EXIF block (any of many types) must not stop the pixels
        return 1
    return value if value in _ORIENTATION else 1


@dataclass(frozen=True)
class LoadedImage:
    """An input image: (H, W, 3) uint8 RGB, (H, W) uint8 alpha or None, and its metadata
    (EXIF with orientation 1, XMP, and the ICC profile the pixels are in, if any)."""

    rgb: np.ndarray
    alpha: np.ndarray | None
    metadata: Metadata


def _from_pil(image: Image.Image, keep_alpha: bool = False, srgb: bool = True,
              with_metadata: bool = False) -> tuple[np.ndarray, np.ndarray | None, Metadata]:
    """Any Pillow image -> ((H, W, 3) uint8 RGB, (H, W) uint8 alpha or None, metadata), upright.

    With ``keep_alpha=False`` an image with transparency is an ImageError. With ``srgb``
    the pixels are converted to sRGB and no profile is returned; else an RGB image keeps
    its colour space and its profile. Metadata is only read ``with_metadata``.
    """
    if getattr(image, "is_animated", False):
        warnings.warn(ANIMATED_WARNING, UserWarning, stacklevel=3)
    reduced = _decoded_from_16_bits(image)
    image.load()
    icc = image.info.get("icc_profile")
    orientation = _orientation(image)
    found = _metadata.from_pil(image) if with_metadata else Metadata()
    mode = image.mode
    alpha = None
    if mode in ALPHA_MODES or "transparency" in image.info:
        if not keep_alpha:
            kind = (f"{mode} image" if mode in ALPHA_MODES else "palette image with transparency" if mode == "P"
                    else f"{mode} image with a transparent colour")
            raise ImageError(f"{kind}: alpha channel is not supported here (use vqz.encode / load_image)")
        try:
            rgba = image.convert("RGBA")
        except ValueError as exc:
            raise ImageError(f"cannot convert a {mode} image with alpha to RGBA ({exc})") from None
        alpha = rgba.getchannel("A")
        image = rgba.convert("L" if mode in ("LA", "La") else "RGB")
        mode = image.mode
    if mode == "F":
        raise ImageError("32-bit floating-point images are not supported")
    if mode in SIXTEEN_BIT_MODES:
        image = _sixteen_to_eight(image)
    elif reduced:
        warnings.warn(SIXTEEN_BIT_WARNING, UserWarning, stacklevel=3)
    if image.mode in ("P", "1"):
        image = image.convert("RGB" if image.mode == "P" else "L")
    kept_icc = None
    if icc and not srgb and image.mode == "RGB" and found.icc and _metadata.check_icc(found.icc) == "RGB":
        kept_icc = found.icc  # the pixels stay in this colour space; the profile travels with them
    elif icc:
        image = _to_srgb(image, icc)
    if image.mode != "RGB":
        try:
            image = image.convert("RGB")
        except ValueError as exc:
            raise ImageError(f"cannot convert a {image.mode} image to RGB ({exc})") from None
    if orientation != 1:
        image = image.transpose(_ORIENTATION[orientation])
        alpha = None if alpha is None else alpha.transpose(_ORIENTATION[orientation])
    found = _metadata.upright(replace_icc(found, kept_icc), orientation)
    rgb = np.asarray(image, dtype=np.uint8)
    return rgb, None if alpha is None else np.asarray(alpha, dtype=np.uint8), found


def replace_icc(metadata: Metadata, icc: bytes | None) -> Metadata:
    return Metadata(metadata.exif, metadata.xmp, icc)


def _read(stream: IO[bytes], max_pixels: int, keep_alpha: bool, srgb: bool,
          with_metadata: bool) -> tuple[np.ndarray, np.ndarray | None, Metadata]:
    with Image.open(stream) as image:  # parses the header only
        check_pixels(image.width, image.height, max_pixels)
        return _from_pil(image, keep_alpha, srgb, with_metadata)


def to_rgb_array(source: ImageInput, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """``source`` as a (H, W, 3) uint8 sRGB array; images with transparency are refused."""
    return load_image(source, max_pixels, keep_alpha=False)[0]


def load_image(source: ImageInput, max_pixels: int = DEFAULT_MAX_PIXELS,
               keep_alpha: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Return ``source`` as ((H, W, 3) uint8 sRGB, (H, W) uint8 alpha or None), without its
    metadata (so colour-managed pixels are converted to sRGB); see :func:`read_image`."""
    loaded = _load(source, max_pixels, keep_alpha, srgb=True, with_metadata=False)
    return loaded.rgb, loaded.alpha


def read_image(source: ImageInput, max_pixels: int = DEFAULT_MAX_PIXELS, *, keep_alpha: bool = True,
               srgb: bool = False) -> LoadedImage:
    """``source`` as a :class:`LoadedImage`: pixels, alpha, and metadata (EXIF, XMP, ICC).

    ``source``: a path, the bytes of an image file, a PIL image or an (H, W, 3) / (H, W, 4)
    / (H, W) uint8 array (the 4th channel is alpha; arrays carry no metadata). Files and
    PIL images larger than ``max_pixels`` pixels are refused before their pixels are
    decoded. An RGB image with an ICC profile keeps its colour space and returns the
    profile, unless ``srgb`` (then it is converted to sRGB, no profile). Raises
    ``ImageError`` for anything unreadable or unsupported; warns (``UserWarning``, one
    line each) when it drops frames, bits or malformed metadata.
    """
    return _load(source, max_pixels, keep_alpha, srgb=srgb, with_metadata=True)


def _load(source: ImageInput, max_pixels: int, keep_alpha: bool, srgb: bool, with_metadata: bool) -> LoadedImage:
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8:
            raise ImageError(f"arrays must be uint8, got {source.dtype}")
        if source.ndim == 2:
            source = np.repeat(source[:, :, None], 3, axis=2)
        if source.ndim == 3 and source.shape[2] == 4 and 0 not in source.shape:
            if not keep_alpha:
                raise ImageError("(H, W, 4) array: alpha channel is not supported here")
            return LoadedImage(np.ascontiguousarray(source[:, :, :3]), np.ascontiguousarray(source[:, :, 3]), Metadata())
        if source.ndim != 3 or source.shape[2] != 3 or 0 in source.shape:
            raise ImageError(f"arrays must have shape (H, W, 3) or (H, W, 4), got {source.shape}")
        return LoadedImage(np.ascontiguousarray(source), None, Metadata())
    if isinstance(source, Image.Image):
        check_pixels(source.width, source.height, max_pixels)
        return _decoding(lambda: _from_pil(source, keep_alpha, srgb, with_metadata))
    if isinstance(source, (bytearray, memoryview)):
        source = bytes(source)
    if isinstance(source, bytes):
        stream: IO[bytes] = io.BytesIO(source)
    else:
        if Path(source).is_dir():
            raise ImageError("is a directory")
        try:
            stream = open(source, "rb")
        except OSError as exc:
            raise ImageError(f"cannot open: {exc.strerror or exc}") from None
    with stream:
        return _decoding(lambda: _read_file(stream, max_pixels, keep_alpha, srgb, with_metadata))


_Read = tuple[np.ndarray, np.ndarray | None, Metadata]


def _read_file(stream: IO[bytes], max_pixels: int, keep_alpha: bool, srgb: bool, with_metadata: bool) -> _Read:
    if not stream.read(1):
        raise ImageError("empty file")
    stream.seek(0)
    try:
        return _read(stream, max_pixels, keep_alpha, srgb, with_metadata)
    except Image.DecompressionBombError:
        pass
    except ValueError as exc:  # Pillow's PNG reader refuses more than 64 MB of text chunks (a huge XMP)
        if "MAX_TEXT_MEMORY" not in str(exc):
            raise
        stream.seek(0)
        with _png_text_limit_lifted():
            return _read(stream, max_pixels, keep_alpha, srgb, with_metadata)
    stream.seek(0)
    with _pillow_guard_lifted():
        return _read(stream, max_pixels, keep_alpha, srgb, with_metadata)


@contextlib.contextmanager
def _png_text_limit_lifted() -> Iterator[None]:
    """Pillow's cap on a PNG's text chunks lifted for one read (under the lock, then restored):
    the pixels must not be refused for their metadata, which is then dropped over our own cap."""
    from PIL import PngImagePlugin

    with _GUARD_LOCK:
        saved = PngImagePlugin.MAX_TEXT_MEMORY
        PngImagePlugin.MAX_TEXT_MEMORY = 1 << 62
        try:
            yield
        finally:
            PngImagePlugin.MAX_TEXT_MEMORY = saved


def _decoding(read: Callable[[], _Read]) -> LoadedImage:
    """Run ``read`` turning what Pillow raises on bad files into one clear ImageError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return LoadedImage(*read())
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not an image file, or a format Pillow cannot read") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(str(exc)) from None
    except MemoryError:
        raise ImageError("not enough memory to decode this image") from None
    except _DECODER_ERRORS as exc:
        raise ImageError(f"cannot read image ({exc})") from None


#: Output formats that cannot store an alpha channel.
NO_ALPHA_FORMATS = frozenset({"PPM", "JPEG"})


def _pil_from_array(array: np.ndarray, format_name: str) -> Image.Image:
    """(H, W, 3) -> RGB, (H, W, 4) -> RGBA (refused for formats without alpha)."""
    if array.ndim == 3 and array.shape[2] == 4:
        if format_name in NO_ALPHA_FORMATS:
            raise ImageError(f"{format_name} cannot store the image's alpha channel; write .png, .tif or .bmp")
        return Image.fromarray(array, "RGBA")
    return Image.fromarray(array, "RGB")


def encode_image_bytes(array: np.ndarray, format_name: str = "PNG", metadata: Metadata | None = None,
                       png_level: int = DEFAULT_PNG_LEVEL) -> bytes:
    """A (H, W, 3|4) uint8 array as the bytes of an image file of ``format_name``, carrying
    ``metadata`` (EXIF, XMP, ICC profile) where the format can (a warning for what it cannot);
    ``png_level``: of a PNG, :data:`FAST_PNG_LEVEL` (1) for the fast writer, else Pillow's at that zlib level
    (0 stored .. 9 smallest)."""
    if format_name == "PNG" and png_level == FAST_PNG_LEVEL and array.ndim == 3 and array.shape[2] in (3, 4):
        from vqz.codec.png_writer import png_bytes

        xmp = metadata.xmp.decode("utf-8", "replace").encode("utf-8") if metadata and metadata.xmp else None
        return png_bytes(array, icc=metadata.icc if metadata else None, exif=metadata.exif if metadata else None,
                         xmp=xmp)
    image = _pil_from_array(array, format_name)
    plain = WRITE_OPTIONS.get(format_name, {})
    if format_name == "PNG":
        plain = {**plain, "compress_level": png_level}
    try:
        options = {**plain, **_metadata.save_options(metadata, format_name)}
        buffer = io.BytesIO()
        image.save(buffer, format=format_name, **options)
    except Exception as exc:  # a malformed block Pillow's writer chokes on: the pixels still go out
        if not metadata:
            raise
        warnings.warn(f"cannot write the image's metadata into {format_name} ({type(exc).__name__}: {exc}); "
                      "written without it", UserWarning, stacklevel=2)
        buffer = io.BytesIO()
        image.save(buffer, format=format_name, **plain)
    return buffer.getvalue()
