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

import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Union

import numpy as np
from PIL import Image

from vqz.bitstream import unpack_file
from vqz.codec import metadata as _metadata
from vqz.codec.image import DEFAULT_MAX_PIXELS, ImageInput, read_image
from vqz.fileinfo import MAX_FILE_BYTES, VqzInfo, VqzInput, pillow_info, read_info
from vqz.fileinfo import read_vqz as _read_vqz
from vqz.options import DEFAULT_QUALITY, EncodeOptions

if TYPE_CHECKING:
    from vqz.codec.rate_control import RateChoice
    from vqz.codec.weights import LoadedWeights

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


def load_model(name: str | os.PathLike | None = None) -> LoadedWeights:
    """A model by id (``None``: the default bundled model) or by the path of a weights file.

    Models are loaded once per process and cached. Raises ``ModelError`` if not installed.
    """
    from vqz.codec.registry import load_model as _load

    return _load(name)


def _weights(model: ModelInput) -> LoadedWeights:
    from vqz.codec.weights import LoadedWeights

    return model if isinstance(model, LoadedWeights) else load_model(model)


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
    target_size: int | None = None,
    model: ModelInput = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    strip: Iterable[str] = (),
    srgb: bool = False,
    exif: bytes | None = None,
    xmp: bytes | str | None = None,
    icc_profile: bytes | None = None,
    effort: int = 1,
) -> bytes:
    """Compress an image to the bytes of a ``.vqz`` file.

    ``image``: a path, the bytes of an image file, a PIL image (EXIF orientation is
    applied; grayscale, palette and CMYK are converted to RGB) or an (H, W, 3) uint8 array;
    an alpha channel (RGBA/LA images, transparency, an (H, W, 4) array) is kept losslessly.
    Give at most one of ``quality`` (1 .. ``quality_levels()[-1]``; default
    ``DEFAULT_QUALITY``), ``target_size`` (the largest file of at most this many bytes,
    metadata included: the highest whole level that fits and as many cells of the next stage
    as fit; quality 1 if even that is larger), ``target_bpp`` (the same for a budget of this
    many bits per pixel) or ``target_psnr`` (the smallest file whose decoded image reaches
    this PSNR in dB, else the best quality); the level used is in ``read_info(data).quality``
    (``.level`` as a fraction, when the last stage stops part-way). ``max_pixels`` refuses larger image files (a
    decompression-bomb guard; ``ImageError``).

    Metadata: the image's EXIF (orientation set to 1, as the pixels are turned upright),
    XMP and ICC profile are kept, the pixels staying in the profile's colour space;
    ``srgb=True`` converts them to sRGB instead (no profile kept). ``strip`` drops some:
    any of ``"all"``, ``"exif"``, ``"xmp"``, ``"icc"``, ``"gps"`` (the EXIF's GPS block).
    ``exif``, ``xmp``, ``icc_profile`` replace the image's own (``b""``: none). Malformed or
    oversized metadata is dropped with a ``UserWarning``.

    ``effort`` (with ``quality``): 1 (default, fast: the greedy quantizer) .. 4, a slower
    encoder-side search for indices that give a better image per byte; the file is a normal
    ``.vqz`` file (same decoder). Rate control uses effort 1; another effort with a target, or
    an effort outside 1..4, raises ``ValueError``.
    """
    options = EncodeOptions(quality, target_bpp, target_psnr, target_size, effort, strip, srgb)
    weights = _weights(model)
    loaded = read_image(image, max_pixels, srgb=options.srgb)
    metadata = loaded.metadata
    given = _metadata.checked(exif, xmp, icc_profile)
    for name, value in (("exif", exif), ("xmp", xmp), ("icc", icc_profile)):
        if value is not None:
            metadata = replace(metadata, **{name: getattr(given, name)})
    return encode_loaded(weights, loaded.rgb, loaded.alpha, metadata, options).data


def encode_loaded(weights: LoadedWeights, rgb: np.ndarray, alpha: np.ndarray | None, metadata: _metadata.Metadata,
                  options: EncodeOptions) -> RateChoice:
    """The one encode path of the API, the CLI and the Pillow plugin: an (H, W, 3) uint8 image (and (H, W)
    alpha) with its metadata (stripped here as ``options.strip`` says) -> the file and the level chosen. A
    fixed quality codes that level directly; a target goes through rate control."""
    from vqz.codec.pipeline import encode_array
    from vqz.codec.rate_control import RateChoice, encode_for_target

    metadata = metadata.stripped(options.strip)
    quality = options.fixed_quality
    if quality is None:
        return encode_for_target(weights, rgb, target_bpp=options.target_bpp, target_psnr=options.target_psnr,
                                 target_size=options.target_size, alpha=alpha, metadata=metadata)
    data = encode_array(weights, rgb, quality, alpha, options.effort, metadata=metadata)[0]
    return RateChoice(data, quality, 8 * len(data) / (rgb.shape[0] * rgb.shape[1]), None, True)


def decode_array(data: VqzInput, stages: int | None = None, realism: float = 0.0, fast: bool = False) -> np.ndarray:
    """A ``.vqz`` file (bytes or path) -> (H, W, 3) uint8 RGB array, or (H, W, 4) RGBA when
    the file carries an alpha plane.

    ``stages`` decodes only the first N stages: the image the encoder would have made at
    quality N (a coarser, progressive preview of the same file). The model that wrote the
    file (same id and weights hash) must be installed, else ``ModelError``.

    ``realism`` in [0, 1] picks the decoder: 0 (default) the faithful one, 1 the model's realistic
    synthesis (trained adversarially: real texture instead of blur, a lower PSNR), values between
    mix them. It changes stage-only files (levels 1-4) and ``stages`` previews; a residual level
    decodes faithfully, and so does a model without a realistic synthesis (:func:`realism_applies`).

    ``fast`` (with realism 0) runs the model's light synthesis instead of its own: about 4x less work
    per pixel for large photos, at a measured PSNR cost (docs/RUNTIME.md). Like realism, it changes
    stage-only files and ``stages`` previews; a residual level decodes with the model's own synthesis.
    """
    return decode_file(data, stages, realism, fast).pixels


@dataclass(frozen=True)
class Decoded:
    """What :func:`decode_file` returns: ``pixels`` ((H, W, 3) uint8, (H, W, 4) with alpha), the file's
    ``metadata`` (:class:`vqz.codec.metadata.Metadata`), the ``realism`` the decoder ran at (0 where
    the asked realism does not apply) and whether it ran the light synthesis (``fast``)."""

    pixels: np.ndarray
    metadata: _metadata.Metadata
    realism: float
    fast: bool = False


def decode_file(data: VqzInput, stages: int | None = None, realism: float = 0.0, fast: bool = False) -> Decoded:
    """Decode a ``.vqz`` file (bytes or path), parsing it once: :func:`decode_array`'s pixels, with the file's
    metadata, the realism used and whether the light synthesis ran."""
    if stages is not None and stages < 1:
        raise ValueError(f"stages must be at least 1, got {stages}")
    from vqz.codec.pipeline import decode_parsed
    from vqz.codec.realism import check_realism
    from vqz.codec.registry import model_for_file

    realism = check_realism(realism)
    parsed = unpack_file(_read_vqz(data))
    header = parsed.header
    if not isinstance(fast, (bool, np.bool_)):
        raise TypeError(f"fast must be True or False, got {type(fast).__name__}")
    rgb, alpha, used, fast_used = decode_parsed(model_for_file(header.model_id, header.model_hash), parsed, stages,
                                                realism=realism, fast=bool(fast))
    pixels = rgb if alpha is None else np.concatenate([rgb, alpha[:, :, None]], axis=2)
    return Decoded(pixels, _metadata.Metadata(parsed.exif, parsed.xmp, parsed.icc), used, fast_used)


def decode(data: VqzInput, stages: int | None = None, realism: float = 0.0, fast: bool = False) -> Image.Image:
    """A ``.vqz`` file (bytes or path) -> an RGB (or RGBA) PIL image; ``stages``, ``realism`` and ``fast`` as in
    :func:`decode_array`.

    The file's metadata is in ``image.info`` as Pillow's readers put it: ``"exif"`` (with the
    ``Exif\\0\\0`` prefix, as from a JPEG), ``"xmp"`` (bytes) and ``"icc_profile"``; so
    ``image.save("x.jpg", exif=image.info["exif"], ...)`` works for every Pillow format.
    """
    decoded = decode_file(data, stages, realism, fast)
    image = Image.fromarray(decoded.pixels, "RGBA" if decoded.pixels.shape[2] == 4 else "RGB")
    image.info.update(pillow_info(decoded.metadata))
    return image


def realism_applies(data: VqzInput, stages: int | None = None) -> bool:
    """Whether ``realism`` above 0 changes how this file decodes (with ``stages``): its model has an installed
    realistic synthesis and the decode adds no residual layer."""
    from vqz.codec.pipeline import realism_used
    from vqz.codec.registry import model_for_file

    parsed = unpack_file(_read_vqz(data))
    header = parsed.header
    whole = stages is None or stages >= len(parsed.payloads)
    return realism_used(model_for_file(header.model_id, header.model_hash),
                        parsed.residual is not None and whole, 1.0) > 0
