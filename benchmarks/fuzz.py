"""Fuzzing the ``.vqz`` decoder: mutated real files may only ever raise ``VqzError``.

Seeds are real files: small crops of Kodak (``../shared/data/kodak``) or, without it,
synthetic photo-like images, encoded by the installed model at several qualities. Each
case mutates one seed and runs both decode entry points, :func:`vqz.read_info` and
:func:`vqz.decode_array`; the outcome is ``decoded`` or the kind of ``VqzError`` it
raised. Anything else (a ``TypeError``, a ``MemoryError``, ...) is a *crash* and is
recorded with the bytes that caused it.

Mutations (see ``MUTATORS``): random bit flips, truncations, appended bytes, random byte
runs, inserted / deleted bytes, header fields set to extremes (0, 1, max, sign bit,
-1 as unsigned), payload-length varints maxed or made non-canonical, width/height/grid
made consistent with each other at other sizes, stages dropped / duplicated / spliced
from another file, payloads replaced by random words, the model id or hash changed,
metadata chunks garbled, the coded-cell count of a part-way last stage set to extremes
(or the part-way flag set / cleared, or the block-mask flag bit 3 toggled), a part-way stage's
block mask garbled (bits flipped with or without the count made to agree, unused bits set,
bytes removed or added, a mask put on a part-way file in priority order).

Two modes per case: as mutated (most are stopped cheaply by the CRC-32), and with the
CRC recomputed after mutating, so the mutation reaches the field checks, the model
lookup and the entropy decoder: those are the interesting cases.

Long mode (prints counts by outcome; exit status 1 if anything crashed)::

    python -m vqz.benchmarks.fuzz --cases 100000 [--seed 0] [--crc-fixed 0.3] [--max-side 1024]
"""

from __future__ import annotations

import argparse
import random
import resource
import struct
import sys
import time
import traceback
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vqz.errors import FormatError, ImageError, ModelError, VqzError

__all__ = ["Crash", "FuzzReport", "MUTATORS", "Seed", "fix_crc", "fuzz", "main", "outcome", "run_case", "seed_files"]

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"
CROP = (32, 48)  # (height, width) of each seed image
DEFAULT_QUALITIES = (1, 3, 8)
_CRC = 4

Mutator = Callable[[random.Random, "Seed", Sequence["Seed"], int], bytes]


# ---------------------------------------------------------------------------- seeds
@dataclass(frozen=True)
class Seed:
    """A valid ``.vqz`` file and the byte offsets of its fields (docs/FORMAT.md)."""

    data: bytes
    id_len: int
    varints: tuple[tuple[int, int], ...]  # (offset, size) of each payload-length varint
    payloads: tuple[tuple[int, int], ...]  # (offset, size) of each payload
    chunk_table: int | None = None  # offset of the metadata chunk count, if any
    chunk_entries: tuple[tuple[int, int], ...] = ()  # (offset, size) of each chunk's tag + length varint
    chunks: tuple[tuple[int, int], ...] = ()  # (offset, size) of each metadata chunk's data
    coded_cells: tuple[int, int] | None = None  # (offset, size) of the part-way stage's coded-cell count varint
    mask: tuple[int, int] | None = None  # (offset, size) of the part-way stage's block mask
    postfilter: tuple[int, int] | None = None  # (offset, size) of the post-filter hash and strength

    @classmethod
    def parse(cls, data: bytes) -> Seed:
        from vqz.bitstream import unpack_file

        parsed = unpack_file(data)
        payloads = (parsed.payloads + ([parsed.residual] if parsed.residual is not None else [])
                    + ([parsed.alpha] if parsed.alpha is not None else []))  # their lengths' order in the header
        id_len = data[6]
        pos, varints = 29 + id_len, []

        def skip_varint(at: int) -> int:
            while data[at] & 0x80:
                at += 1
            return at + 1

        for _ in payloads:
            start, pos = pos, skip_varint(pos)
            varints.append((start, pos - start))
        coded_cells = None
        if data[5] & 0x04:
            start, pos = pos, skip_varint(pos)
            coded_cells = (start, pos - start)
        mask = None
        if data[5] & 0x08:
            from vqz.bitstream.container import mask_size

            mask = (pos, mask_size(parsed.header.grid_height, parsed.header.grid_width))
            pos += mask[1]
        postfilter = None
        if data[5] & 0x20:
            postfilter, pos = (pos, 9), pos + 9
        chunk_table, entries = None, []
        if data[5] & 0x02:
            chunk_table, pos = pos, pos + 1
            for _ in range(data[chunk_table]):
                start, pos = pos, skip_varint(pos + 4)
                entries.append((start, pos - start))
        spans = []
        for payload in payloads:
            spans.append((pos, len(payload)))
            pos += len(payload)
        chunks = []
        for size in parsed.metadata_bytes.values():
            chunks.append((pos, size))
            pos += size
        return cls(bytes(data), id_len, tuple(varints), tuple(spans), chunk_table, tuple(entries), tuple(chunks),
                   coded_cells, mask, postfilter)

    def fields(self) -> dict[str, tuple[int, str]]:
        """Header field -> (offset, struct format)."""
        n = self.id_len
        return {"version": (4, "<B"), "flags": (5, "<B"), "id_len": (6, "<B"), "width": (15 + n, "<I"),
                "height": (19 + n, "<I"), "quality": (23 + n, "<B"), "count": (24 + n, "<B"),
                "grid_height": (25 + n, "<H"), "grid_width": (27 + n, "<H")}

    @property
    def header_end(self) -> int:
        return 29 + self.id_len


def _kodak_crops(count: int) -> list[np.ndarray]:
    from PIL import Image

    crops = []
    for path in sorted(KODAK.glob("*.png"))[:count]:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"))
        top, left = rgb.shape[0] // 3, rgb.shape[1] // 3
        crops.append(np.ascontiguousarray(rgb[top : top + CROP[0], left : left + CROP[1]]))
    return crops


def _synthetic(count: int) -> list[np.ndarray]:
    """Photo-like stand-ins: smooth gradients, an edge and mild noise."""
    images = []
    for seed in range(count):
        rng = np.random.default_rng(seed)
        y, x = np.mgrid[0 : CROP[0], 0 : CROP[1]].astype(np.float64)
        planes = [127 + 90 * np.sin(x / (6 + 3 * c + seed) + c) * np.cos(y / (9 + 2 * c)) + 40 * (x > CROP[1] / 2)
                  + rng.normal(0, 5, CROP) for c in range(3)]
        images.append(np.clip(np.stack(planes, axis=2), 0, 255).astype(np.uint8))
    return images


def real_metadata() -> dict[str, bytes]:
    """A camera-like EXIF (make, model, date, orientation, a GPS IFD), an XMP packet and an sRGB ICC profile."""
    from PIL import Image, ImageCms

    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = "FuzzCam", "Model 1", 1
    exif.get_ifd(0x8769)[0x9003] = "2024:01:02 03:04:05"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (48.0, 51.0, 29.5)
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="3"/></rdf:RDF></x:xmpmeta>')
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return {"exif": exif.tobytes(), "xmp": xmp, "icc_profile": icc}


def seed_files(count: int = 2, qualities: Sequence[int] = DEFAULT_QUALITIES, model: object = None,
               metadata: bool = True, partial: bool = True) -> list[Seed]:
    """``count`` real images (Kodak crops, else synthetic) x ``qualities``, encoded; with
    ``metadata``, then each image once more at the middle quality with EXIF, XMP and ICC chunks;
    with ``partial``, twice more with a part-way last stage (a byte budget between qualities 2 and 3),
    its cells in priority order and then a block mask (flag bit 3)."""
    import vqz

    weights = vqz.load_model() if model is None else model
    levels = vqz.quality_levels(weights)
    images = _kodak_crops(count) if KODAK.is_dir() else []
    images += _synthetic(count - len(images))
    seeds = [Seed.parse(vqz.encode(image, quality=q, model=weights)) for image in images for q in qualities if q in levels]
    if metadata:
        chunks = real_metadata()
        middle = [q for q in qualities if q in levels][len(qualities) // 2]
        seeds += [Seed.parse(vqz.encode(image, quality=middle, model=weights, **chunks)) for image in images]
    if partial and len(levels) >= 3:
        from vqz.codec.rate_control import QualityLadder, choose_for_size
        from vqz.codec.stage_context import pack_mask

        for image in images:
            ladder = QualityLadder(weights, image)
            budget = (len(ladder.file(2)) + len(ladder.file(3))) // 2
            ranking = ladder.block_scores(3).ranking  # a mask of the better half of the blocks
            selected = np.zeros(ranking.size, dtype=bool)
            selected[ranking[: (ranking.size + 1) // 2]] = True
            seeds += [Seed.parse(choose_for_size(ladder, budget, ("order",)).data),
                      Seed.parse(ladder.partial_file(3, pack_mask(selected)))]
    return seeds


# ---------------------------------------------------------------------------- mutators
def fix_crc(data: bytes) -> bytes:
    """``data`` with its last 4 bytes replaced by the CRC-32 of everything before them."""
    if len(data) < _CRC:
        return data
    return data[:-_CRC] + struct.pack("<I", zlib.crc32(data[:-_CRC]))


def _set(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    raw = struct.pack(fmt, value)
    return data[:offset] + raw + data[offset + len(raw) :]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value >> 7 else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _rebuild(seed: Seed, payloads: Sequence[bytes]) -> bytes:
    """``seed``'s header fields with other payloads: a structurally valid file, but with
    ``seed``'s old CRC (the harness recomputes it for the CRC-fixed cases only)."""
    head = bytearray(seed.data[: seed.header_end])
    head[seed.fields()["count"][0]] = len(payloads) & 0xFF
    coded = b"" if seed.coded_cells is None else seed.data[seed.coded_cells[0] : sum(seed.coded_cells)]
    coded += b"" if seed.mask is None else seed.data[seed.mask[0] : sum(seed.mask)]
    coded += b"" if seed.postfilter is None else seed.data[seed.postfilter[0] : sum(seed.postfilter)]
    body = bytes(head) + b"".join(_varint(len(p)) for p in payloads) + coded + b"".join(payloads)
    return body + seed.data[-_CRC:]


def _payloads(seed: Seed) -> list[bytes]:
    return [seed.data[start : start + size] for start, size in seed.payloads]


def bit_flips(rng: random.Random, seed: Seed, seeds: Sequence[Seed], max_side: int) -> bytes:
    data = bytearray(seed.data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
        bit = rng.randrange(len(data) * 8)
        data[bit // 8] ^= 1 << (bit % 8)
    return bytes(data)


def truncation(rng: random.Random, seed: Seed, seeds: Sequence[Seed], max_side: int) -> bytes:
    return seed.data[: rng.randrange(len(seed.data))]


def extension(rng: random.Random, seed: Seed, seeds: Sequence[Seed], max_side: int) -> bytes:
    return seed.data + rng.randbytes(rng.choice((1, 3, 4, 17)))


def byte_run(rng: random.Random, seed: Seed, seeds: Sequence[Seed], max_side: int) -> bytes:
    size = rng.randint(1, 16)
    start = rng.randrange(len(seed.data))
    fill = rng.choice((b"\x00" * size, b"\xff" * size, rng.randbytes(size)))
    data = seed.data[:start] + fill + seed.data[start + size :]
    return data[: len(seed.data)]


def insert_or_delete(rng: random.Random, seed: Seed, seeds: Sequence[Seed], max_side: int) -> bytes:
    at = rng.randrange(len(seed.data))
    if rng.random() < 0.5:
        return seed.data[:at] + rng.randbytes(rng.randint(1, 8)) + seed.data[at:]
    return seed.data[:at] + seed.data[at + rng.randint(1, 8) :]


_EXTREMES = {
    "<B": (0, 1, 0x7F, 0x80, 0xFE, 0xFF),
    "<H": (0, 1, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF),
    "<I": (0, 1, 1 << 20, (1 << 20) + 1, (1 << 31) - 1, 1 << 31, (1 << 32) - 2, (1 << 32) - 1),
}


def field_extreme(rng: random.Random, seed: Seed, seeds: Sequence[Seed], max_side: int) -> bytes:
    """One header field set to 0, 1, its maximum, its sign bit, or -1 as unsigned."""
    name, (offset, fmt) = rng.choice(list(seed.fields().items()))
    value = rng.choice(_EXTREMES[fmt] + (rng.randrange(1 << (8 * struct.calcsize(fmt))),))
    return _set(seed.data, offset, fmt, value)


_BAD_VARINTS = (
    b"\xff\xff\xff\xff\x0f",  # 2^32 - 1: above the 2^30 cap
    b"\xff\xff\xff\xff\x7f",  # 35 bits
    b"\x80\x80\x80\x80\x04",  # exactly 2^30
    b"\xff\xff\xff\xff\xff\x01",  # six bytes
    b"\x80\x80\x80\x80\x80",  # never terminated
    b"\x80\x00",  # non-canonical zero
    b"\x00",  # an empty payload
)


def varint_extreme(rng: random.Random, seed: Seed, seeds: Sequence[Seed], max_side: int) -> bytes:
    """A payload-length varint maxed, over-long, unterminated or non-canonical."""
    if not seed.varints:
        return seed.data
    start, size = rng.choice(seed.varints)
    return seed.data[:start] + rng.choice(_BAD_VARINTS) + seed.data[start + size :]


def consistent_size(rng: random.Random, seed: Seed, seeds: Sequence[Seed], max_side: int) -> bytes:
    """Width, height and grid changed together (so they agree): the payloads now hold the
    wrong number of symbols, which only the entropy decoder can notice."""
    fields = seed.fields()
    width = rng.choice((1, 2, 7, 8, 9, rng.randint(1, max_side)))
    height = rng.choice((1, 2, 7, 8, 9, rng.randint(1, max_side)))
    data = _set(seed.data, fields["width"][0], "<I", width)
    data = _set(data, fields["height"][0], "<I", height)
    data = _set(data, fields["grid_height"][0], "<H", -(-height // 8))
    return _set(data, fields["grid_width"][0], "<H", -(-width // 8))


def transposed(rng: random.Random, seed: Seed, seeds: Sequence[Seed], max_side: int) -> bytes:
    """Width and height swapped with the grid (a plausible header for the same payloads)."""
    f = seed.fields()
    w, h = struct.unpack_from("<I", seed.data, f["width"][0])[0], struct.unpack_from("<I", seed.data, f["height"][0])[0]
    gh, gw = struct.unpack_from("<H", seed.data, f["grid_height"][0])[0], struct.unpack_from("<H", seed.data, f["grid_width"][0])[0]
    data = _set(_set(seed.data, f["width"][0], "<I", h), f["height"][0], "<I", w)
    return _set(_set(data, f["grid_height"][0], "<H", gw), f["grid_width"][0], "<H", gh)


def stages(rng: random.Random, seed: Seed, seeds: Sequence[Seed], max_side: int) -> bytes:
    """Payloads dropped, duplicated, reordered or spliced from another file (valid structure)."""
    payloads = _payloads(seed)
    kind = rng.randrange(5)
    if kind == 0 and payloads:
        payloads = payloads[: rng.randrange(len(payloads))]
    elif kind == 1 and payloads:
        payloads = payloads + [rng.choice(payloads)] * rng.randint(1, 9)
    elif kind == 2:
        rng.shuffle(payloads)
    elif kind == 3:
        payloads = _payloads(rng.choice(seeds))
    else:
        payloads = payloads + [b""]
    return _rebuild(seed, payloads)


def payload_words(rng: random.Random, seed: Seed, seeds: Sequence[Seed], max_side: int) -> bytes:
    """One payload replaced: random words, a zero last word, a word dropped or added, empty."""
    payloads = _payloads(seed)
    if not payloads:
        return seed.data
    i = rng.randrange(len(payloads))
    p = payloads[i]
    kind = rng.randrange(6)
    if kind == 0:
        p = rng.randbytes(len(p))
    elif kind == 1:
        p = p[:-4] + b"\0\0\0\0"
    elif kind == 2:
        p = p[4:]
    elif kind == 3:
        p = rng.randbytes(4) + p
    elif kind == 4:
        p = p[:-1]
    else:
        p = b""
    payloads[i] = p
    return _rebuild(seed, payloads)


def model_identity(rng: random.Random, seed: Seed, seeds: Sequence[Seed], max_side: int) -> bytes:
    """The model id or hash changed (the file then needs a model that is not installed)."""
    data = bytearray(seed.data)
    if rng.random() < 0.5:
        pos = 7 + rng.randrange(seed.id_len)
        data[pos] = rng.choice((0x00, 0x7F, 0xC3, ord("x"), ord(" ")))
    else:
        data[7 + seed.id_len + rng.randrange(8)] ^= 1 << rng.randrange(8)
    return bytes(data)


_CHUNK_TAGS = (b"EXIF", b"ICCP", b"XMP ", b"exif", b"\0\0\0\0", b"\xff\xff\xff\xff", b"XMP\0")
_CHUNK_LENGTHS = (b"\x00", b"\x01", b"\xf7\xff\x03", b"\xf8\xff\x03", b"\x80\x80\x80\x80\x04",
                  b"\x80\x80\xa0\x32", b"\xff\xff\xff\xff\x0f", b"\x80\x00")  # 0, 1, EXIF cap, cap + 1, 2^30, 100 MB, ...


def metadata_chunks(rng: random.Random, seed: Seed, seeds: Sequence[Seed], max_side: int) -> bytes:
    """The metadata chunk count, a tag or a length set to extremes (0, over the cap, 100 MB,
    non-canonical), or a chunk's contents garbled, truncated, emptied or swapped for another's."""
    if seed.chunk_table is None:
        return seed.data
    data = seed.data
    kind = rng.randrange(5)
    if kind == 0:
        return _set(data, seed.chunk_table, "<B", rng.choice((0, 1, 2, 3, 4, 0xFF)))
    start, size = rng.choice(seed.chunk_entries)
    if kind == 1:
        return data[:start] + rng.choice(_CHUNK_TAGS) + data[start + 4 :]
    if kind == 2:
        return data[:start + 4] + rng.choice(_CHUNK_LENGTHS) + data[start + size :]
    offset, length = rng.choice(seed.chunks)
    if kind == 3:  # contents garbled in place (a malformed EXIF, a corrupt ICC, a broken XMP)
        garbage = bytearray(data[offset : offset + length])
        for _ in range(rng.randint(1, 16)):
            garbage[rng.randrange(length)] = rng.randrange(256)
        if rng.random() < 0.5:
            garbage[: min(8, length)] = rng.randbytes(min(8, length))
        return data[:offset] + bytes(garbage) + data[offset + length :]
    cut = rng.randrange(length)  # truncated contents, the declared length unchanged
    return data[:offset] + data[offset : offset + cut] + data[offset + length :]


def coded_cells(rng: random.Random, seed: Seed, seeds: Sequence[Seed], max_side: int) -> bytes:
    """A part-way stage's coded-cell count set to 0, the grid, one past it, a huge or a
    non-canonical value; or the part-way flag set on a whole file (a count inserted) or
    cleared on a part-way one (its count removed); or the block-mask flag (bit 3) toggled,
    alone (refused on a whole file) or with the part-way flag (the bytes after the count then
    read as a mask, or a mask read as payload)."""
    data = seed.data
    if rng.random() < 0.15 and seed.mask is None:
        return _set(data, 5, "<B", data[5] ^ 0x08)
    if rng.random() < 0.3 and seed.mask is not None:  # the mask's bytes now read as the first payload's
        return _set(data, 5, "<B", data[5] & ~0x08)
    if seed.coded_cells is None:  # make it part-way: flag bit 2 and a count after the length varints
        cut = seed.varints[-1][0] + seed.varints[-1][1] if seed.varints else seed.header_end
        count = rng.choice((0, 1, rng.randrange(1 << 14)))
        return _set(data[:cut] + _varint(count) + data[cut:], 5, "<B", data[5] | 0x04)
    start, size = seed.coded_cells
    if rng.random() < 0.2:  # the flag cleared, the count removed: the last payload now claims every cell
        return _set(data[:start] + data[start + size :], 5, "<B", data[5] & ~0x04)
    f = seed.fields()
    (grid_h,), (grid_w,) = struct.unpack_from("<H", data, f["grid_height"][0]), struct.unpack_from("<H", data, f["grid_width"][0])
    cells = grid_h * grid_w
    raw = rng.choice((_varint(0), _varint(cells), _varint(cells + 1), _varint(max(cells - 1, 0)),
                      _varint(rng.randrange(cells + 1)), b"\xff\xff\xff\xff\x0f", b"\x80\x00", b"\x80\x80\x80\x80\x80"))
    return data[:start] + raw + data[start + size :]


def block_mask(rng: random.Random, seed: Seed, seeds: Sequence[Seed], max_side: int) -> bytes:
    """A part-way stage's block mask garbled: bits flipped (the count left, refused; or made to
    agree, so the payload is decoded over other cells), the unused high bits of its last byte set,
    every block or none selected, a byte removed or added; on a part-way file in priority order, a
    mask that agrees with its count put in (flag bit 3 set)."""
    from vqz.bitstream.container import mask_blocks, mask_cell_count, mask_size

    data = seed.data
    f = seed.fields()
    (grid_h,), (grid_w,) = struct.unpack_from("<H", data, f["grid_height"][0]), struct.unpack_from("<H", data, f["grid_width"][0])
    blocks, size = mask_blocks(grid_h, grid_w), mask_size(grid_h, grid_w)
    if seed.coded_cells is None:
        return coded_cells(rng, seed, seeds, max_side)
    count_at, count_size = seed.coded_cells
    if seed.mask is None:  # a random mask with its count: the stage's cells are now others
        bits = rng.getrandbits(blocks)
        mask = bits.to_bytes(size, "little")
        body = _varint(mask_cell_count(mask, grid_h, grid_w)) + mask
        return _set(data[:count_at] + body + data[count_at + count_size :], 5, "<B", data[5] | 0x08)
    start, length = seed.mask
    bits = int.from_bytes(data[start : start + length], "little")
    choice = rng.randrange(5)
    if choice == 0:  # bits flipped, the count as it was: refused (mask and count disagree) or an equal count
        for _ in range(rng.choice((1, 2, 3))):
            bits ^= 1 << rng.randrange(blocks)
        return data[:start] + bits.to_bytes(length, "little") + data[start + length :]
    if choice == 1:  # bits flipped and the count made to agree: the payload is decoded over other cells
        for _ in range(rng.choice((1, 2, 3))):
            bits ^= 1 << rng.randrange(blocks)
        mask = bits.to_bytes(length, "little")
        body = _varint(mask_cell_count(mask, grid_h, grid_w)) + mask
        return data[:count_at] + body + data[start + length :]
    if choice == 2 and blocks % 8:  # bits past the last block
        return data[:start] + (bits | 1 << (length * 8 - 1)).to_bytes(length, "little") + data[start + length :]
    if choice == 3:  # every block or none, the count made to agree
        mask = ((1 << blocks) - 1 if rng.random() < 0.5 else 0).to_bytes(length, "little")
        body = _varint(mask_cell_count(mask, grid_h, grid_w)) + mask
        return data[:count_at] + body + data[start + length :]
    if rng.random() < 0.5:  # a byte removed
        return data[: start + length - 1] + data[start + length :]
    return data[: start + length] + bytes([rng.randrange(256)]) + data[start + length :]  # a byte added


MUTATORS: dict[str, Mutator] = {
    "bit_flips": bit_flips,
    "truncation": truncation,
    "extension": extension,
    "byte_run": byte_run,
    "insert_or_delete": insert_or_delete,
    "field_extreme": field_extreme,
    "varint_extreme": varint_extreme,
    "consistent_size": consistent_size,
    "transposed": transposed,
    "stages": stages,
    "payload_words": payload_words,
    "model_identity": model_identity,
    "metadata_chunks": metadata_chunks,
    "coded_cells": coded_cells,
    "block_mask": block_mask,
}


# ---------------------------------------------------------------------------- running
def outcome(exc: VqzError | None) -> str:
    """A short name for what a decode did: ``decoded``, ``model``, or the FormatError's kind."""
    if exc is None:
        return "decoded"
    if isinstance(exc, ModelError):
        return "model"
    if isinstance(exc, ImageError):
        return "image"
    text = str(exc).lower()
    for key, words in (("crc", ("crc",)), ("magic", ("magic",)), ("version", ("version",)),
                       ("truncated", ("truncated",)), ("trailing", ("trailing",)),
                       ("payload", ("payload", "ans", "left over")), ("grid/stages", ("grid", "stages")),
                       ("varint", ("varint",))):
        if any(word in text for word in words):
            return f"format:{key}"
    return "format:field"


def run_case(data: bytes) -> str:
    """Both decode entry points on ``data``; the outcome of ``decode_array``.

    Raises whatever non-``VqzError`` escapes (that is a bug), and ``AssertionError`` when
    ``read_info`` and ``decode_array`` disagree about whether the container is valid.
    """
    import vqz

    try:
        vqz.read_info(data)
        container_ok = True
    except VqzError:
        container_ok = False
    try:
        pixels = vqz.decode_array(data)
    except VqzError as exc:
        if isinstance(exc, FormatError) and container_ok and outcome(exc).split(":")[1] in ("crc", "magic", "version"):
            raise AssertionError(f"read_info accepted a file that decode_array calls {exc}") from None
        return outcome(exc)
    if not container_ok:
        raise AssertionError("decode_array decoded a file that read_info refused")
    _write_outputs(data, pixels)
    info = vqz.read_info(data)
    if pixels.shape != (info.height, info.width, 3) or pixels.dtype != np.uint8:
        raise AssertionError(f"decoded {pixels.shape} {pixels.dtype} for a {info.width}x{info.height} file")
    return "decoded"


def _write_outputs(data: bytes, pixels: np.ndarray) -> None:
    """The decoded pixels written with the file's metadata (whatever it holds) as a TIFF, the
    output whose writer parses the EXIF, and as a PNG; both must succeed (with warnings)."""
    import warnings

    from vqz.codec.image import encode_image_bytes
    from vqz.codec.metadata import read_metadata

    metadata = read_metadata(data)
    if not metadata:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ("TIFF", "PNG"):
            encode_image_bytes(pixels, name, metadata)


@dataclass(frozen=True)
class Crash:
    mutator: str
    crc_fixed: bool
    case: int
    data: bytes
    error: str


@dataclass
class FuzzReport:
    counts: Counter = field(default_factory=Counter)  # (mutator, crc_fixed, outcome) -> cases
    crashes: list[Crash] = field(default_factory=list)
    slowest: tuple[float, str] = (0.0, "")
    seconds: float = 0.0

    @property
    def cases(self) -> int:
        return sum(self.counts.values())

    def by_outcome(self, crc_fixed: bool | None = None) -> Counter:
        out: Counter = Counter()
        for (_, fixed, result), n in self.counts.items():
            if crc_fixed is None or fixed == crc_fixed:
                out[result] += n
        return out

    def summary(self) -> str:
        lines = [f"{self.cases} cases in {self.seconds:.1f} s; slowest case {self.slowest[0] * 1000:.0f} ms "
                 f"({self.slowest[1]}); crashes: {len(self.crashes)}"]
        for fixed in (False, True):
            counts = self.by_outcome(fixed)
            lines.append(f"  {'CRC recomputed' if fixed else 'as mutated':>15} ({sum(counts.values())} cases): "
                         + ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])))
        per: dict[str, Counter] = {}
        for (name, _, result), n in self.counts.items():
            per.setdefault(name, Counter())[result] += n
        for name in MUTATORS:
            if name in per:
                lines.append(f"  {name:>16}: " + ", ".join(f"{k} {v}" for k, v in sorted(per[name].items(), key=lambda kv: -kv[1])))
        for crash in self.crashes[:10]:
            lines.append(f"  CRASH {crash.mutator} crc_fixed={crash.crc_fixed} case {crash.case}: {crash.error}\n"
                         f"    data={crash.data.hex()}")
        return "\n".join(lines)


def fuzz(seeds: Sequence[Seed], cases: int, *, seed: int = 0, crc_fixed: float = 0.3, max_side: int = 256,
         mutators: Sequence[str] | None = None) -> FuzzReport:
    """Run ``cases`` seeded mutations of ``seeds``; ``crc_fixed`` is the share of cases
    whose CRC is recomputed after mutating. Consistent-size mutations stay within
    ``max_side`` pixels a side (bounds the time a case can take)."""
    rng = random.Random(seed)
    names = list(mutators or MUTATORS)
    report = FuzzReport()
    started = time.perf_counter()
    for case in range(cases):
        name = names[case % len(names)]
        fixed = rng.random() < crc_fixed
        base = rng.choice(seeds)
        data = MUTATORS[name](rng, base, seeds, max_side)
        if fixed:
            data = fix_crc(data)
        t0 = time.perf_counter()
        try:
            result = run_case(data)
        except Exception as exc:  # the bug we are looking for: keep going, report them all
            result = f"CRASH:{type(exc).__name__}"
            report.crashes.append(Crash(name, fixed, case, data, "".join(traceback.format_exception_only(exc)).strip()))
        elapsed = time.perf_counter() - t0
        if elapsed > report.slowest[0]:
            report.slowest = (elapsed, f"{name}, case {case}")
        report.counts[(name, fixed, result)] += 1
    report.seconds = time.perf_counter() - started
    return report


def _limit_memory(gib: float) -> None:
    """Cap this process's address space so an over-allocation is a MemoryError, not an OOM kill."""
    limit = int(gib * (1 << 30))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    torch.set_num_threads(1)  # tiny images: one thread is fastest, and far faster on a busy machine
    parser = argparse.ArgumentParser(prog="python -m vqz.benchmarks.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100_000, help="number of mutated files (default 100000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (a run is reproducible)")
    parser.add_argument("--crc-fixed", type=float, default=0.3, help="share of cases whose CRC is recomputed")
    parser.add_argument("--max-side", type=int, default=1024, help="largest side of consistent-size mutations")
    parser.add_argument("--images", type=int, default=3, help="seed images (Kodak crops or synthetic)")
    parser.add_argument("--memory-gib", type=float, default=8.0,
                        help="address-space cap, so an over-allocation shows as a crash (0: none)")
    parser.add_argument("--mutators", default=",".join(MUTATORS), help="comma-separated subset of: " + ",".join(MUTATORS))
    args = parser.parse_args(argv)
    names = [n for n in args.mutators.split(",") if n]
    unknown = set(names) - set(MUTATORS)
    if unknown:
        parser.error(f"unknown mutators: {', '.join(sorted(unknown))}")
    seeds = seed_files(args.images)
    if args.memory_gib > 0:
        _limit_memory(args.memory_gib)
    print(f"{len(seeds)} seed files ({'Kodak crops' if KODAK.is_dir() else 'synthetic images'}), "
          f"{len(names)} mutators, seed {args.seed}", file=sys.stderr)
    report = fuzz(seeds, args.cases, seed=args.seed, crc_fixed=args.crc_fixed, max_side=args.max_side, mutators=names)
    print(report.summary())
    return 1 if report.crashes else 0


if __name__ == "__main__":
    sys.exit(main())
