"""A Pillow plugin for ``.vqz`` files, registered by ``import vqz``.

>>> import vqz
>>> from PIL import Image
>>> Image.open("photo.png").save("photo.vqz", quality=6)     # doctest: +SKIP
>>> Image.open("photo.vqz").format                           # doctest: +SKIP
'VQZ'

Opening parses and verifies the whole container (magic, version, CRC-32, every field,
see docs/FORMAT.md) with :func:`vqz.bitstream.unpack`, so ``Image.open`` is cheap and needs
neither torch nor the model; ``load()`` decodes with the model that wrote the file.
``im.info`` holds ``quality``, ``stages`` and ``model_id`` from the header, and the file's
metadata as Pillow's own formats put it: ``exif`` (with the ``Exif\\0\\0`` prefix, as from
a JPEG), ``xmp`` (bytes) and ``icc_profile``. The decoder's realism (as ``vqz.decode(...,
realism=)``) is the image's ``realism`` attribute, set before ``load()``:
``im = Image.open("x.vqz"); im.realism = 1.0; im.load()``; likewise ``im.fast = True`` for the light
synthesis (``vqz.decode(..., fast=True)``); a realism outside [0, 1] raises
``ValueError`` from ``load()``.

Saving takes ``quality`` (1 .. the model's number of stages, default
``vqz.DEFAULT_QUALITY``) or one of ``target_size`` (bytes) / ``target_bpp`` / ``target_psnr``
(see :mod:`vqz.codec.rate_control`), ``effort`` (with ``quality``: 1 .. 4, as in
:func:`vqz.encode`) and ``model`` (an id or a weights file). Images are
stored as 8-bit RGB: grayscale, palette and CMYK images are converted; images with alpha
or more than 8 bits per sample raise ``OSError`` (Pillow's ``cannot write mode``).
Metadata: ``exif``, ``xmp`` and ``icc_profile`` arguments are written (``b""``: none);
without them the image's own (``im.info``) are kept; ``strip`` and ``srgb`` as in
:func:`vqz.encode`.

Errors follow Pillow's conventions: a file without the ``.vqz`` magic is not claimed
(``UnidentifiedImageError``); a ``.vqz`` file that is corrupt, truncated or of an unknown
version raises ``OSError`` from ``Image.open``; a missing model raises ``OSError`` from
``load()``; a bad ``quality`` or ``effort`` raises ``ValueError`` from ``save()``.
"""

from __future__ import annotations

from typing import IO

from PIL import Image, ImageFile

from vqz.bitstream import MAGIC, unpack_file
from vqz.errors import FormatError, ImageError, VqzError

FORMAT = "VQZ"
EXTENSION = ".vqz"
MIME = "image/x-vqz"
MAX_FILE_BYTES = 1 << 31
_Tile = getattr(ImageFile, "_Tile", None)  # a namedtuple since Pillow 11, a plain tuple before

__all__ = ["EXTENSION", "FORMAT", "MIME", "VqzDecoder", "VqzImageFile", "register"]


def _accept(prefix: bytes) -> bool:
    return prefix[: len(MAGIC)] == MAGIC


def _read_all(fp: IO[bytes]) -> bytes:
    data = fp.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise OSError(f"cannot open .vqz file: larger than {MAX_FILE_BYTES} bytes")
    return data


class VqzImageFile(ImageFile.ImageFile):
    """An opened ``.vqz`` file: size and mode from the header, pixels decoded on ``load()``."""

    format = FORMAT
    format_description = "vqz learned image codec"

    def _open(self) -> None:
        assert self.fp is not None
        if not _accept(self.fp.read(len(MAGIC))):
            raise SyntaxError("not a .vqz file")
        self.fp.seek(0)
        try:
            parsed = unpack_file(_read_all(self.fp))
        except FormatError as exc:
            raise OSError(f"cannot open .vqz file: {exc}") from exc
        header, payloads = parsed.header, parsed.payloads
        self._size = (header.width, header.height)
        self._mode = "RGB" if parsed.alpha is None else "RGBA"
        self.info.update(quality=header.quality, stages=len(payloads), model_id=header.model_id)
        if header.coded_cells is not None:  # the last stage stops part-way
            self.info["coded_cells"] = header.coded_cells
            self.info["partway"] = "order" if header.mask is None else "mask"
            if header.mask is not None:
                self.info["mask_blocks"] = int.from_bytes(header.mask, "little").bit_count()
        from vqz.codec.metadata import Metadata
        from vqz.fileinfo import pillow_info

        self.info.update(pillow_info(Metadata(parsed.exif, parsed.xmp, parsed.icc)))
        #: the decoder's realism in [0, 1] (``vqz.decode(..., realism=)``); set it before ``load()``
        self.realism = 0.0
        #: the light synthesis (``vqz.decode(..., fast=True)``); set it before ``load()``
        self.fast = False
        self._set_tile()

    def _set_tile(self) -> None:
        tile = ("vqz", (0, 0, *self._size), 0, (self.realism, bool(self.fast)))
        self.tile = [_Tile(*tile) if _Tile is not None else tile]

    def load(self):
        if self.tile:  # not yet decoded: the realism and speed asked for now
            self._set_tile()
        return super().load()


class VqzDecoder(ImageFile.PyDecoder):
    """Decodes the whole file at once (the model needs every stage of every cell)."""

    _pulls_fd = True

    def decode(self, buffer: bytes) -> tuple[int, int]:
        assert self.fd is not None
        from vqz.api import decode_array

        realism = self.args[0] if self.args else 0.0
        fast = self.args[1] if len(self.args) > 1 else False
        try:
            pixels = decode_array(_read_all(self.fd), realism=realism, fast=fast)
        except VqzError as exc:
            raise OSError(f"cannot decode .vqz file: {exc}") from exc
        self.set_as_raw(pixels.tobytes(), "RGBA" if pixels.shape[2] == 4 else "RGB")
        return -1, 0


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    from vqz.api import encode, quality_levels

    options = im.encoderinfo
    model = options.get("model")
    try:
        # the API checks the options (vqz.options.EncodeOptions: ValueError); the quality's range needs the model
        quality = options.get("quality")
        if quality is not None:
            levels = quality_levels(model)
            if isinstance(quality, bool) or not isinstance(quality, int) or quality not in levels:
                raise ValueError(f"quality must be an integer in {levels.start}..{levels.stop - 1}, got {quality!r}")
        metadata = {key: options[key] for key in ("exif", "xmp", "icc_profile") if options.get(key) is not None}
        if isinstance(metadata.get("exif"), Image.Exif):
            metadata["exif"] = metadata["exif"].tobytes()
        data = encode(im, quality, target_bpp=options.get("target_bpp"), target_psnr=options.get("target_psnr"),
                      target_size=options.get("target_size"), model=model, effort=options.get("effort", 1),
                      strip=options.get("strip", ()), srgb=bool(options.get("srgb", False)), **metadata)
    except ImageError as exc:
        raise OSError(f"cannot write mode {im.mode} as {FORMAT}: {exc}") from exc
    except VqzError as exc:
        raise OSError(f"cannot write {FORMAT}: {exc}") from exc
    fp.write(data)


def register() -> None:
    """Make Pillow open and save ``.vqz`` (idempotent; ``import vqz`` calls it)."""
    Image.register_open(FORMAT, VqzImageFile, _accept)
    Image.register_decoder("vqz", VqzDecoder)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, EXTENSION)
    Image.register_mime(FORMAT, MIME)
