"""The ``.vqz`` container: a small fixed-layout header, entropy-coded payloads, a CRC-32.

Layout (all integers little-endian; see docs/FORMAT.md for the full specification)::

    magic          4  b"\\x89VQZ"
    version        u8 2; 3 when flags bit 4 is set; 4 (FORMAT_VERSION) when flags bit 5 is set: a writer uses
                      the lowest version that can hold the file, so older readers keep reading what they can
    flags          u8 bit 0: an alpha plane follows the stage payloads;
                      bit 1: metadata chunks follow (EXIF, XMP, ICC profile);
                      bit 2: the last stage is part-way (a coded-cell count follows);
                      bit 3: the part-way stage codes the cells of a block mask (only with bit 2);
                      bit 4: a pixel residual layer follows the stage payloads (version >= 3);
                      bit 5: the decoder post-filters the image (version 4); other bits 0
    model_id_len   u8 1..MAX_MODEL_ID
    model_id       model_id_len bytes of printable ASCII
    model_hash     8  first 8 bytes of SHA-256 of the weights file
    width          u32 1..MAX_SIDE
    height         u32 1..MAX_SIDE
    quality        u8 1..255
    num_payloads   u8 0..MAX_PAYLOADS (one per residual-VQ stage)
    grid_height    u16
    grid_width     u16
    payload_len    ULEB128 varint, num_payloads times
    residual_len   ULEB128 varint, only when flags bit 4 is set (codec/residual.py lays the layer out)
    alpha_len      ULEB128 varint, only when flags bit 0 is set
    coded_cells    ULEB128 varint, only when flags bit 2 is set: the last payload codes only this many
                   cells of its stage, 0..grid_height * grid_width (needs num_payloads >= 2)
    block_mask     only when flags bit 3 is set: ceil(blocks / 8) bytes, one bit per MASK_BLOCK x MASK_BLOCK
                   block of the latent grid in raster order of blocks (bit j = byte j // 8, bit j % 8),
                   unused high bits of the last byte 0; coded_cells = the cells of the selected blocks
    filter_hash    8, only when flags bit 5 is set: first 8 bytes of SHA-256 of the post-filter's weights file
    filter_strength u8 1..255, only when flags bit 5 is set: the strength the filter runs at, in half luma steps
    chunk_count    u8 1..3, only when flags bit 1 is set, then per chunk:
      chunk_tag    4 bytes: b"EXIF", b"ICCP" or b"XMP ", strictly ascending (each at most once)
      chunk_len    ULEB128 varint, 1..the tag's cap
    payloads       concatenated, then the residual layer if any, then the alpha payload if any, then the chunks' data
    crc32          u32 over every byte before it

The reader checks the CRC first (so any corruption is reported as such), then every
field, caps every size before using it, and rejects trailing bytes.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from vqz.errors import FormatError

MAGIC = b"\x89VQZ"
FORMAT_VERSION = 4
#: Versions this reader accepts: 2 (no residual layer), 3 (may carry one, flags bit 4), 4 (may ask
#: for a post-filter, flags bit 5).
READABLE_VERSIONS = (2, 3, 4)
#: The version of files with a residual layer and no post-filter.
RESIDUAL_VERSION = 3
#: The version of files without a residual layer (the same layout as version 2).
BASE_VERSION = 2
MAX_MODEL_ID = 64
MAX_SIDE = 1 << 20
MAX_PIXELS = 1 << 31
MAX_PAYLOADS = 64
MAX_PAYLOAD_BYTES = 1 << 30
MAX_GRID_SIDE = 0xFFFF
FLAG_ALPHA = 0x01
FLAG_METADATA = 0x02
FLAG_PARTIAL = 0x04
FLAG_MASK = 0x08
FLAG_RESIDUAL = 0x10
FLAG_POSTFILTER = 0x20
_KNOWN_FLAGS = FLAG_ALPHA | FLAG_METADATA | FLAG_PARTIAL | FLAG_MASK | FLAG_RESIDUAL | FLAG_POSTFILTER
#: A stored post-filter strength is ``round(strength * STRENGTH_UNITS)`` in one byte.
STRENGTH_UNITS = 2
#: Side of a block of the part-way block mask, in latent cells (edge blocks are smaller).
MASK_BLOCK = 4
#: Metadata chunk tag -> (name of the VqzFile field, largest size in bytes), in the order they are stored.
#: EXIF: what fits one JPEG APP1 segment after its 6-byte "Exif\0\0" prefix (65533 - 6);
#: ICC: what fits 255 JPEG APP2 segments (255 * 65519 bytes, rounded down to 16 MB); XMP: 4 MiB.
CHUNKS = {b"EXIF": ("exif", 65527), b"ICCP": ("icc", 16_000_000), b"XMP ": ("xmp", 4 << 20)}
MAX_EXIF_BYTES = CHUNKS[b"EXIF"][1]
MAX_ICC_BYTES = CHUNKS[b"ICCP"][1]
MAX_XMP_BYTES = CHUNKS[b"XMP "][1]
_HASH_BYTES = 8
_CRC_BYTES = 4


@dataclass(frozen=True)
class PostFilterRef:
    """What a file asks of the decoder after it has rebuilt the image: run the post-filter whose weights
    file's SHA-256 starts with ``filter_hash`` (8 bytes) at ``strength`` (luma-step units, a multiple of
    1/2 in 0.5..127.5; :mod:`vqz.codec.postfilter`)."""

    filter_hash: bytes
    strength: float

    def __post_init__(self) -> None:
        if len(self.filter_hash) != _HASH_BYTES:
            raise FormatError(f"a post-filter reference needs a {_HASH_BYTES}-byte filter hash")
        units = self.strength * STRENGTH_UNITS
        if not 1 <= units <= 255 or units != int(units):
            raise FormatError(f"post-filter strength {self.strength} is not a multiple of 1/{STRENGTH_UNITS} "
                              f"in {1 / STRENGTH_UNITS}..{255 / STRENGTH_UNITS}")

    @classmethod
    def quantized(cls, filter_hash: bytes, strength: float) -> PostFilterRef:
        """The reference with ``strength`` rounded to the stored precision and clamped to its range."""
        return cls(filter_hash, min(255, max(1, round(strength * STRENGTH_UNITS))) / STRENGTH_UNITS)


@dataclass(frozen=True)
class Header:
    """Everything a decoder must know before it touches the payloads.

    ``grid_height``/``grid_width`` are the latent grid (padded image / downsampling);
    each payload codes ``grid_height * grid_width`` indices of one quantizer stage, except
    that with ``coded_cells`` set the last payload codes only that many cells of its stage
    (a part-way stage); ``None``: every stage whole. Which cells: with ``mask`` ``None``, the
    first ``coded_cells`` in the order of :func:`vqz.codec.stage_context.priority_order`; else
    the cells of the blocks ``mask`` selects (flag bit 3): its packed bits, one per
    ``MASK_BLOCK`` x ``MASK_BLOCK`` block (:func:`mask_size`, :func:`mask_cell_count`), which only a
    part-way stage can have and whose cells ``coded_cells`` must count.
    """

    model_id: str
    model_hash: bytes
    width: int
    height: int
    quality: int
    grid_height: int
    grid_width: int
    version: int = field(default=BASE_VERSION, compare=False)  # of the file it was read from; pack() chooses
    coded_cells: int | None = None
    mask: bytes | None = None
    postfilter: PostFilterRef | None = None

    @property
    def cells(self) -> int:
        """Latent cells per stage: ``grid_height * grid_width``."""
        return self.grid_height * self.grid_width

    def validate(self) -> None:
        if not 1 <= len(self.model_id) <= MAX_MODEL_ID or not self.model_id.isascii() or not self.model_id.isprintable():
            raise FormatError(f"model id must be 1..{MAX_MODEL_ID} printable ASCII characters")
        if len(self.model_hash) != _HASH_BYTES:
            raise FormatError(f"model hash must be {_HASH_BYTES} bytes")
        if not (1 <= self.width <= MAX_SIDE and 1 <= self.height <= MAX_SIDE):
            raise FormatError(f"image size {self.width}x{self.height} is outside 1..{MAX_SIDE}")
        if self.width * self.height > MAX_PIXELS:
            raise FormatError(f"image of {self.width * self.height} pixels exceeds the cap of {MAX_PIXELS}")
        if not 1 <= self.quality <= 255:
            raise FormatError(f"quality {self.quality} is outside 1..255")
        if not (1 <= self.grid_height <= MAX_GRID_SIDE and 1 <= self.grid_width <= MAX_GRID_SIDE):
            raise FormatError(f"latent grid {self.grid_height}x{self.grid_width} is outside 1..{MAX_GRID_SIDE}")
        if self.coded_cells is not None and not 0 <= self.coded_cells <= self.cells:
            raise FormatError(f"{self.coded_cells} coded cells in the last stage exceed its grid of {self.cells}")
        if self.mask is not None:
            if self.coded_cells is None:
                raise FormatError("a block mask needs a part-way last stage")
            expected = mask_size(self.grid_height, self.grid_width)
            if not isinstance(self.mask, bytes) or len(self.mask) != expected:
                raise FormatError(f"block mask of the {self.grid_height}x{self.grid_width} grid must be {expected} bytes")
            used = mask_blocks(self.grid_height, self.grid_width) % 8
            if used and self.mask[-1] >> used:
                raise FormatError("block mask has bits set past its last block")
            selected = mask_cell_count(self.mask, self.grid_height, self.grid_width)
            if selected != self.coded_cells:
                raise FormatError(f"block mask selects {selected} cells, the coded cell count is {self.coded_cells}")


def mask_shape(grid_height: int, grid_width: int) -> tuple[int, int]:
    """Blocks of the part-way block mask: (rows, columns) of ``MASK_BLOCK`` x ``MASK_BLOCK`` blocks."""
    return -(-grid_height // MASK_BLOCK), -(-grid_width // MASK_BLOCK)


def mask_blocks(grid_height: int, grid_width: int) -> int:
    """Number of blocks (bits) of the block mask of a grid."""
    rows, columns = mask_shape(grid_height, grid_width)
    return rows * columns


def mask_size(grid_height: int, grid_width: int) -> int:
    """Bytes of the block mask of a grid: ``ceil(blocks / 8)``."""
    return -(-mask_blocks(grid_height, grid_width) // 8)


def mask_cell_count(mask: bytes, grid_height: int, grid_width: int) -> int:
    """Cells of the blocks a packed block mask selects (pure Python: ``vqz info`` needs no numpy).

    Interior blocks hold ``MASK_BLOCK ** 2`` cells; those of the last block row and column are
    cut by the grid's edge. ``mask`` must be :func:`mask_size` bytes.
    """
    rows, columns = mask_shape(grid_height, grid_width)
    last_h = grid_height - (rows - 1) * MASK_BLOCK  # cells per block of the last block row, down
    last_w = grid_width - (columns - 1) * MASK_BLOCK  # ... of the last block column, across

    def bit(j: int) -> int:
        return (mask[j >> 3] >> (j & 7)) & 1

    total = int.from_bytes(mask, "little").bit_count()
    corner = bit(rows * columns - 1)
    last_column = sum(bit(r * columns + columns - 1) for r in range(rows)) - corner
    first = (rows - 1) * columns  # the last block row: bits first .. first + columns - 1
    row_bits = int.from_bytes(mask[first >> 3 : ((first + columns - 1) >> 3) + 1], "little") >> (first & 7)
    last_row = (row_bits & ((1 << columns) - 1)).bit_count() - corner
    interior = total - last_column - last_row - corner
    return (interior * MASK_BLOCK * MASK_BLOCK + last_column * MASK_BLOCK * last_w + last_row * last_h * MASK_BLOCK
            + corner * last_h * last_w)


def write_varint(value: int) -> bytes:
    """``value`` (>= 0) as an unsigned LEB128 varint (canonical: no trailing zero groups)."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


class ByteReader:
    """Bounds-checked cursor over bytes (the header; the residual layer's fields, codec/residual.py)."""

    def __init__(self, data: bytes, end: int) -> None:
        self.data, self.pos, self.end = data, 0, end

    def take(self, count: int, what: str) -> bytes:
        if self.pos + count > self.end:
            raise FormatError(f"file is truncated (in {what})")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))

    def varint(self, what: str, max_bytes: int = 5) -> int:
        """A canonical ULEB128 varint of at most ``max_bytes`` bytes (5 * 7 bits cover MAX_PAYLOAD_BYTES)."""
        value, shift = 0, 0
        for _ in range(max_bytes):
            (byte,) = self.take(1, what)
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if byte == 0 and shift:
                    raise FormatError(f"non-canonical varint in {what}")
                return value
            shift += 7
        raise FormatError(f"varint too long in {what}")


@dataclass(frozen=True)
class VqzFile:
    """A parsed file: header, one payload per stage, the optional residual layer (:mod:`vqz.codec.residual`),
    the optional alpha payload and metadata.

    ``exif`` is the raw TIFF-structured EXIF block (it starts with ``II*\\0`` or ``MM\\0*``,
    without JPEG's ``Exif\\0\\0`` prefix), ``xmp`` the XMP packet (UTF-8), ``icc`` the ICC
    profile the pixels are in.
    """

    header: Header
    payloads: list[bytes]
    alpha: bytes | None = None
    residual: bytes | None = None
    exif: bytes | None = None
    xmp: bytes | None = None
    icc: bytes | None = None

    @property
    def metadata_bytes(self) -> dict[str, int]:
        """Size of each metadata chunk the file carries: ``{"exif": n, ...}``."""
        return {name: len(getattr(self, name)) for name, _ in CHUNKS.values() if getattr(self, name) is not None}


def pack(header: Header, payloads: list[bytes], alpha: bytes | None = None, *, residual: bytes | None = None,
         exif: bytes | None = None, xmp: bytes | None = None, icc: bytes | None = None) -> bytes:
    """Serialize a header, its stage payloads, an optional residual layer, an optional alpha payload
    and optional metadata chunks into ``.vqz`` bytes (version 3 with a residual layer, else 2;
    ``header.version`` is not consulted)."""
    header.validate()
    if len(payloads) > MAX_PAYLOADS:
        raise FormatError(f"at most {MAX_PAYLOADS} payloads, got {len(payloads)}")
    values = {"exif": exif, "xmp": xmp, "icc": icc}
    chunks = [(tag, bytes(values[name])) for tag, (name, _) in CHUNKS.items() if values[name] is not None]
    for tag, chunk in chunks:
        if not 1 <= len(chunk) <= CHUNKS[tag][1]:
            raise FormatError(f"{CHUNKS[tag][0]} chunk of {len(chunk)} bytes is outside 1..{CHUNKS[tag][1]}")
    if header.coded_cells is not None and len(payloads) < 2:
        raise FormatError("a part-way last stage needs at least 2 payloads (stage 0 is always whole)")
    if residual is not None and not payloads:
        raise FormatError("a residual layer needs at least one stage payload")
    flags = ((FLAG_ALPHA if alpha is not None else 0) | (FLAG_METADATA if chunks else 0)
             | (FLAG_PARTIAL if header.coded_cells is not None else 0)
             | (FLAG_MASK if header.mask is not None else 0) | (FLAG_RESIDUAL if residual is not None else 0))
    flags |= FLAG_POSTFILTER if header.postfilter is not None else 0
    version = (FORMAT_VERSION if header.postfilter is not None else RESIDUAL_VERSION if residual is not None
               else BASE_VERSION)
    model_id = header.model_id.encode("ascii")
    parts = [
        MAGIC,
        struct.pack("<BBB", version, flags, len(model_id)),
        model_id,
        header.model_hash,
        struct.pack("<IIBBHH", header.width, header.height, header.quality, len(payloads), header.grid_height, header.grid_width),
    ]
    extra = ([] if residual is None else [residual]) + ([] if alpha is None else [alpha])
    for payload in payloads + extra:
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise FormatError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
        parts.append(write_varint(len(payload)))
    if header.coded_cells is not None:
        parts.append(write_varint(header.coded_cells))
    if header.mask is not None:
        parts.append(header.mask)
    if header.postfilter is not None:
        parts += [header.postfilter.filter_hash, struct.pack("<B", round(header.postfilter.strength * STRENGTH_UNITS))]
    if chunks:
        parts.append(struct.pack("<B", len(chunks)))
        parts += [tag + write_varint(len(chunk)) for tag, chunk in chunks]
    body = b"".join(parts) + b"".join(payloads + extra) + b"".join(chunk for _, chunk in chunks)
    return body + struct.pack("<I", zlib.crc32(body))


def header_size(data: bytes) -> int:
    """Bytes of a valid file that are not payload (header fields and CRC)."""
    parsed = unpack_file(data)
    return (len(data) - sum(len(p) for p in parsed.payloads) - len(parsed.alpha or b"") - len(parsed.residual or b"")
            - sum(parsed.metadata_bytes.values()))


def unpack(data: bytes) -> tuple[Header, list[bytes]]:
    """The header and stage payloads of a verified ``.vqz`` byte string (see :func:`unpack_file`)."""
    parsed = unpack_file(data)
    return parsed.header, parsed.payloads


def unpack_file(data: bytes) -> VqzFile:
    """Parse and verify a ``.vqz`` byte string; raises FormatError on any problem.

    Checks, in order: minimum length and magic (is it a .vqz at all?), version (refuse
    newer formats by name), CRC-32 over everything (corruption), then every field, and
    that the payload lengths account for every byte (no trailing data).
    """
    data = bytes(data)
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise FormatError("not a .vqz file (bad magic bytes)")
    if len(data) < len(MAGIC) + 1:
        raise FormatError("file is truncated (no format version)")
    version = data[len(MAGIC)]
    if version not in READABLE_VERSIONS:
        raise FormatError(f"unsupported .vqz format version {version} (this vqz reads versions "
                          f"{', '.join(map(str, READABLE_VERSIONS))})")
    if len(data) < len(MAGIC) + 3 + _CRC_BYTES:
        raise FormatError("file is truncated")
    end = len(data) - _CRC_BYTES
    (stored_crc,) = struct.unpack("<I", data[end:])
    if zlib.crc32(data[:end]) != stored_crc:
        raise FormatError("file is corrupt or truncated (CRC-32 mismatch)")

    reader = ByteReader(data, end)
    reader.take(len(MAGIC) + 1, "magic")
    flags, id_len = reader.unpack("<BB", "flags")
    if flags & ~_KNOWN_FLAGS:
        raise FormatError(f"unknown flags 0x{flags:02x}")
    if flags & FLAG_RESIDUAL and version < RESIDUAL_VERSION:
        raise FormatError(f"flags 0x{flags:02x}: bit 4 (residual layer) needs format version {RESIDUAL_VERSION}")
    if flags & FLAG_POSTFILTER and version < FORMAT_VERSION:
        raise FormatError(f"flags 0x{flags:02x}: bit 5 (post-filter) needs format version {FORMAT_VERSION}")
    if flags & FLAG_MASK and not flags & FLAG_PARTIAL:
        raise FormatError(f"flags 0x{flags:02x}: bit 3 (block mask) needs bit 2 (part-way last stage)")
    if not 1 <= id_len <= MAX_MODEL_ID:
        raise FormatError(f"model id length {id_len} is outside 1..{MAX_MODEL_ID}")
    raw_id = reader.take(id_len, "model id")
    try:
        model_id = raw_id.decode("ascii")
    except UnicodeDecodeError:
        raise FormatError("model id is not ASCII") from None
    model_hash = reader.take(_HASH_BYTES, "model hash")
    width, height, quality, count, grid_h, grid_w = reader.unpack("<IIBBHH", "image fields")
    Header(model_id, model_hash, width, height, quality, grid_h, grid_w, version).validate()
    if count > MAX_PAYLOADS:
        raise FormatError(f"{count} payloads exceed the cap of {MAX_PAYLOADS}")
    has_alpha = bool(flags & FLAG_ALPHA)
    has_residual = bool(flags & FLAG_RESIDUAL)
    if has_residual and count < 1:
        raise FormatError("a residual layer needs at least one stage payload")
    lengths = [reader.varint("payload lengths") for _ in range(count + has_residual + has_alpha)]
    if any(length > MAX_PAYLOAD_BYTES for length in lengths):
        raise FormatError(f"a payload length exceeds {MAX_PAYLOAD_BYTES} bytes")
    coded_cells = None
    if flags & FLAG_PARTIAL:
        if count < 2:
            raise FormatError(f"a part-way last stage needs at least 2 payloads, the file has {count}")
        coded_cells = reader.varint("coded cell count")
    mask = None
    if flags & FLAG_MASK:  # its size follows from the grid; take() checks it lies within the file
        mask = reader.take(mask_size(grid_h, grid_w), "block mask")
    postfilter = None
    if flags & FLAG_POSTFILTER:
        filter_hash = reader.take(_HASH_BYTES, "post-filter hash")
        (units,) = reader.unpack("<B", "post-filter strength")
        if units == 0:
            raise FormatError("post-filter strength 0 is outside 1..255")
        postfilter = PostFilterRef(filter_hash, units / STRENGTH_UNITS)
    header = Header(model_id, model_hash, width, height, quality, grid_h, grid_w, version, coded_cells, mask, postfilter)
    header.validate()  # the coded cell count against the grid, and against the block mask
    tags: list[bytes] = []
    if flags & FLAG_METADATA:
        (chunk_count,) = reader.unpack("<B", "metadata chunk count")
        if not 1 <= chunk_count <= len(CHUNKS):
            raise FormatError(f"metadata chunk count {chunk_count} is outside 1..{len(CHUNKS)}")
        for _ in range(chunk_count):
            tag = reader.take(4, "metadata chunk tag")
            if tag not in CHUNKS:
                raise FormatError(f"unknown metadata chunk {tag!r}")
            if tags and list(CHUNKS).index(tag) <= list(CHUNKS).index(tags[-1]):
                raise FormatError("metadata chunks are repeated or out of order")
            name, cap = CHUNKS[tag]
            length = reader.varint(f"{name} chunk length")
            if not 1 <= length <= cap:  # checked before anything is allocated
                raise FormatError(f"{name} chunk of {length} bytes is outside 1..{cap}")
            tags.append(tag)
            lengths.append(length)
    remaining = end - reader.pos
    if sum(lengths) > remaining:
        raise FormatError("file is truncated (payloads shorter than declared)")
    if sum(lengths) < remaining:
        raise FormatError(f"{remaining - sum(lengths)} unexpected trailing bytes")
    payloads = [reader.take(length, "payload") for length in lengths]
    extra = count + has_residual + has_alpha
    metadata = {CHUNKS[tag][0]: payloads[extra + i] for i, tag in enumerate(tags)}
    residual = payloads[count] if has_residual else None
    alpha = payloads[count + has_residual] if has_alpha else None
    return VqzFile(header, payloads[:count], alpha, residual, **metadata)
