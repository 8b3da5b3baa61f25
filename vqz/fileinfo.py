"""What a ``.vqz`` file says about itself, read without numpy, a model or ONNX Runtime.

:func:`read_info` (re-exported by :mod:`vqz.api` and ``vqz``) and the helpers that
``vqz info``, the Pillow plugin's ``Image.open`` and :mod:`vqz.api` share: reading a file's
bytes and turning its metadata into Pillow's ``image.info`` keys. Only the container
parser and the metadata module are imported here, so ``vqz info`` starts fast.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Union

from vqz.bitstream import unpack_file
from vqz.bitstream.container import mask_blocks
from vqz.codec import metadata as _metadata
from vqz.errors import FormatError

MAX_FILE_BYTES = 1 << 31

#: A ``.vqz`` file: its bytes (``bytes``, ``bytearray``, ``memoryview``) or its path.
VqzInput = Union[bytes, bytearray, memoryview, str, os.PathLike]

__all__ = ["MAX_FILE_BYTES", "VqzInfo", "VqzInput", "pillow_info", "read_info", "read_vqz"]


@dataclass(frozen=True)
class VqzInfo:
    """What a ``.vqz`` file says about itself. ``bpp`` counts every byte of the file.

    ``quality`` is the level the file was made at (with rate control: the level chosen);
    ``stages`` is the number of payloads; ``payload_bytes`` their sizes, stage 0 first;
    ``coded_cells`` is set when the last stage stops part-way: it codes that many of its
    ``grid_height * grid_width`` cells (``None``: every stage is whole), chosen as
    ``partway`` says: ``"order"``, the first in the order derived from the stages before, or
    ``"mask"``, the cells of ``mask_blocks`` of the grid's ``grid_blocks`` blocks (docs/FORMAT.md,
    "Part-way last stage"; all three ``None`` without a part-way stage, the last two without a mask);
    ``residual_bytes`` is the pixel residual layer (0: none; format version 3), coded at the luma step
    ``residual_step`` (pixel units; chroma ``residual_step * residual_chroma``);
    ``postfilter_hash`` (hex) and ``postfilter_strength`` name the post-filter the decoder runs (None:
    none; format version 4);
    ``header_bytes`` everything else (header fields and CRC). ``metadata_bytes``: the size of
    each metadata chunk (``exif``, ``xmp``, ``icc``); ``camera_make``, ``camera_model``,
    ``date`` (DateTimeOriginal, else DateTime) and ``gps`` (a GPS block is present) come
    from the EXIF chunk.
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
    metadata_bytes: dict[str, int] = field(default_factory=dict)
    camera_make: str | None = None
    camera_model: str | None = None
    date: str | None = None
    gps: bool = False
    coded_cells: int | None = None
    partway: str | None = None
    mask_blocks: int | None = None
    grid_blocks: int | None = None
    residual_bytes: int = 0
    residual_step: float | None = None
    residual_chroma: float | None = None
    postfilter_hash: str | None = None
    postfilter_strength: float | None = None

    @property
    def level(self) -> float:
        """The quality as a fraction: ``stages - 1 + coded_cells / cells`` for a part-way last stage."""
        if self.coded_cells is None:
            return float(self.quality)
        return self.stages - 1 + self.coded_cells / (self.grid_height * self.grid_width)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def read_vqz(data: VqzInput) -> bytes:
    """The bytes of a ``.vqz`` file given as bytes or a path (``FormatError`` if unreadable)."""
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


def pillow_info(metadata: _metadata.Metadata) -> dict[str, bytes]:
    """Metadata as the ``image.info`` keys of Pillow's own formats."""
    info = {}
    if metadata.exif:
        info["exif"] = _metadata.EXIF_PREFIX + metadata.exif
    if metadata.xmp:
        info["xmp"] = metadata.xmp
    if metadata.icc:
        info["icc_profile"] = metadata.icc
    return info


def read_info(data: VqzInput) -> VqzInfo:
    """Parse and verify a file's header and CRC without decoding the image (needs no model)."""
    raw = read_vqz(data)
    parsed = unpack_file(raw)
    header, payloads = parsed.header, parsed.payloads
    sizes = [len(p) for p in payloads]
    alpha_bytes = len(parsed.alpha) if parsed.alpha is not None else 0
    residual_bytes = len(parsed.residual) if parsed.residual is not None else 0
    step = chroma = None
    if residual_bytes >= 3:  # its first fields: u16 step * 16, u8 chroma multiplier * 16 (codec/residual.py)
        step, chroma = int.from_bytes(parsed.residual[:2], "little") / 16, parsed.residual[2] / 16
    chunks = parsed.metadata_bytes
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
        header_bytes=len(raw) - sum(sizes) - alpha_bytes - residual_bytes - sum(chunks.values()),
        total_bytes=len(raw),
        bpp=8 * len(raw) / (header.width * header.height),
        metadata_bytes=chunks,
        coded_cells=header.coded_cells,
        partway=None if header.coded_cells is None else "order" if header.mask is None else "mask",
        mask_blocks=None if header.mask is None else int.from_bytes(header.mask, "little").bit_count(),
        grid_blocks=None if header.mask is None else mask_blocks(header.grid_height, header.grid_width),
        residual_bytes=residual_bytes,
        residual_step=step,
        residual_chroma=chroma,
        postfilter_hash=None if header.postfilter is None else header.postfilter.filter_hash.hex(),
        postfilter_strength=None if header.postfilter is None else header.postfilter.strength,
        **_metadata.exif_summary(parsed.exif),  # type: ignore[arg-type]
    )
