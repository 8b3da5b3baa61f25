"""The .vqz container: round trips, and every malformed input is refused with FormatError."""

from __future__ import annotations

import struct
import zlib

import pytest

from vqz.bitstream import BASE_VERSION, FORMAT_VERSION, MAGIC, Header, header_size, pack, unpack
from vqz.errors import FormatError

HEADER = Header("vqz-test-model", bytes(range(8)), width=77, height=33, quality=3, grid_height=5, grid_width=10)
PAYLOADS = [b"\x01\x02\x03\x04" * 7, b"", b"\xff" * 300]


def test_round_trip_preserves_every_field():
    header, payloads = unpack(pack(HEADER, PAYLOADS))
    assert header == HEADER
    assert payloads == PAYLOADS


def test_header_is_tens_of_bytes():
    data = pack(HEADER, PAYLOADS)
    assert header_size(data) == len(data) - sum(map(len, PAYLOADS))
    assert header_size(data) < 64


@pytest.mark.parametrize("length", range(0, 60))
def test_every_truncation_is_refused(length):
    data = pack(HEADER, PAYLOADS)
    with pytest.raises(FormatError):
        unpack(data[:length])


def test_trailing_bytes_are_refused():
    with pytest.raises(FormatError, match="trailing|CRC"):
        unpack(pack(HEADER, PAYLOADS) + b"\x00")


def _with_valid_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def test_trailing_bytes_with_valid_crc_are_refused():
    data = pack(HEADER, PAYLOADS)[:-4]
    with pytest.raises(FormatError, match="trailing"):
        unpack(_with_valid_crc(data + b"junk"))


def test_newer_version_is_refused_by_name():
    data = bytearray(pack(HEADER, PAYLOADS)[:-4])
    data[len(MAGIC)] = FORMAT_VERSION + 1
    with pytest.raises(FormatError, match=f"version {FORMAT_VERSION + 1}"):
        unpack(_with_valid_crc(bytes(data)))


def test_bad_magic_is_refused():
    with pytest.raises(FormatError, match="magic"):
        unpack(b"PNG\x00" + pack(HEADER, PAYLOADS)[4:])


@pytest.mark.parametrize(
    "field, value",
    [("width", 0), ("height", 0), ("width", 2**32 - 1), ("quality", 0), ("grid_height", 0), ("grid_width", 0)],
)
def test_extreme_header_fields_are_refused(field, value):
    # rebuild the body by hand so the writer's own validation cannot stop us
    header = HEADER
    model_id = header.model_id.encode()
    fields = dict(width=header.width, height=header.height, quality=header.quality, grid_height=header.grid_height,
                  grid_width=header.grid_width)
    fields[field] = value
    body = (MAGIC + struct.pack("<BBB", BASE_VERSION, 0, len(model_id)) + model_id + header.model_hash
            + struct.pack("<IIBBHH", fields["width"], fields["height"], fields["quality"], 0, fields["grid_height"], fields["grid_width"]))
    with pytest.raises(FormatError):
        unpack(_with_valid_crc(body))


def test_oversized_payload_length_is_refused_before_allocating():
    model_id = HEADER.model_id.encode()
    body = (MAGIC + struct.pack("<BBB", BASE_VERSION, 0, len(model_id)) + model_id + HEADER.model_hash
            + struct.pack("<IIBBHH", 10, 10, 1, 1, 2, 2) + b"\xff\xff\xff\xff\x0f")
    with pytest.raises(FormatError):
        unpack(_with_valid_crc(body))


def test_writer_refuses_invalid_headers():
    with pytest.raises(FormatError):
        pack(Header("", bytes(8), 1, 1, 1, 1, 1), [])
    with pytest.raises(FormatError):
        pack(Header("m", bytes(8), 0, 1, 1, 1, 1), [])


def test_alpha_payload_round_trips_and_is_counted_as_payload():
    from vqz.bitstream import unpack_file

    data = pack(HEADER, PAYLOADS, alpha=b"alpha-bytes")
    parsed = unpack_file(data)
    assert parsed.header == HEADER and parsed.payloads == PAYLOADS and parsed.alpha == b"alpha-bytes"
    assert header_size(data) == len(data) - sum(map(len, PAYLOADS)) - len(b"alpha-bytes")
    assert unpack_file(pack(HEADER, PAYLOADS)).alpha is None


def test_alpha_plane_codec_is_lossless_and_bounded():
    import numpy as np

    from vqz.bitstream import decode_alpha, encode_alpha

    rng = np.random.default_rng(0)
    alpha = np.clip(np.cumsum(rng.integers(-3, 4, (37, 53)), axis=1) + 128, 0, 255).astype(np.uint8)
    assert np.array_equal(decode_alpha(encode_alpha(alpha), 37, 53), alpha)
    with pytest.raises(FormatError):
        decode_alpha(encode_alpha(alpha), 37, 52)
    with pytest.raises(FormatError):
        decode_alpha(b"not zlib", 2, 2)
    bomb = __import__("zlib").compress(bytes(10_000_000))
    with pytest.raises(FormatError):
        decode_alpha(bomb, 10, 10)


def test_unknown_flags_are_refused():
    data = bytearray(pack(HEADER, PAYLOADS)[:-4])
    data[5] = 0x80
    with pytest.raises(FormatError, match="flags"):
        unpack(_with_valid_crc(bytes(data)))


# ------------------------------------------------------------------ part-way last stage (flag bit 2)
PARTIAL = Header("vqz-test-model", bytes(range(8)), width=77, height=33, quality=3, grid_height=5, grid_width=10,
                 coded_cells=17)


def test_a_part_way_last_stage_round_trips_with_its_coded_cell_count():
    from vqz.bitstream import unpack_file

    data = pack(PARTIAL, PAYLOADS, alpha=b"alpha", exif=b"II*\x00exif")
    parsed = unpack_file(data)
    assert parsed.header == PARTIAL and parsed.header.coded_cells == 17
    assert parsed.payloads == PAYLOADS and parsed.alpha == b"alpha" and parsed.exif == b"II*\x00exif"
    assert data[5] == 0x01 | 0x02 | 0x04
    # The count is one varint after the length varints (and the alpha length), before the chunk table:
    # without it (and the flag bit) the file is the whole-stage file.
    whole = pack(HEADER, PAYLOADS, alpha=b"alpha", exif=b"II*\x00exif")
    at = 29 + len(HEADER.model_id) + 1 + 1 + 2 + 1  # the varints of 28, 0, 300 and 5 bytes
    assert data[at] == 17
    assert bytes([*data[:5], 0x03]) + data[6:at] + data[at + 1 : -4] == whole[:-4]


def test_files_without_a_part_way_stage_are_unchanged():
    data = pack(HEADER, PAYLOADS)
    assert data[5] == 0 and unpack(data)[0].coded_cells is None
    assert pack(HEADER, PAYLOADS) == pack(Header(**{**HEADER.__dict__, "coded_cells": None}), PAYLOADS)


@pytest.mark.parametrize("count", [0, 1, 49, 50])
def test_every_count_up_to_the_grid_is_accepted(count):
    header = Header(**{**PARTIAL.__dict__, "coded_cells": count})
    assert unpack(pack(header, PAYLOADS))[0].coded_cells == count


def _partial_body(count_bytes: bytes, payload_count: int = 3) -> bytes:
    model_id = PARTIAL.model_id.encode()
    payloads = PAYLOADS[:payload_count]
    return (MAGIC + struct.pack("<BBB", BASE_VERSION, 0x04, len(model_id)) + model_id + PARTIAL.model_hash
            + struct.pack("<IIBBHH", 77, 33, 3, len(payloads), 5, 10)
            + b"".join(bytes([len(p)]) if len(p) < 128 else b"\xac\x02" for p in payloads)
            + count_bytes + b"".join(payloads))


def test_a_count_larger_than_the_grid_is_refused():
    assert unpack(_with_valid_crc(_partial_body(b"\x32")))[0].coded_cells == 50  # the hand-built body is right
    for raw in (b"\x33", b"\xff\xff\xff\xff\x0f"):
        with pytest.raises(FormatError, match="coded cells"):
            unpack(_with_valid_crc(_partial_body(raw)))
    with pytest.raises(FormatError, match="non-canonical|varint"):
        unpack(_with_valid_crc(_partial_body(b"\x80\x00")))
    with pytest.raises(FormatError, match="too long"):
        unpack(_with_valid_crc(_partial_body(b"\x80\x80\x80\x80\x80")))


def test_a_part_way_stage_0_is_refused_by_reader_and_writer():
    with pytest.raises(FormatError, match="at least 2 payloads"):
        unpack(_with_valid_crc(_partial_body(b"\x05", payload_count=1)))
    with pytest.raises(FormatError, match="at least 2 payloads"):
        pack(PARTIAL, PAYLOADS[:1])
    with pytest.raises(FormatError, match="coded cells"):
        pack(Header(**{**PARTIAL.__dict__, "coded_cells": 51}), PAYLOADS)


# ------------------------------------------------------------------ the block mask (flag bit 3, with bit 2)
# The 5x10 grid in blocks of 4x4 cells: 2 rows x 3 columns of blocks, of 16, 16, 8 / 4, 4, 2 cells.
# Blocks 0, 2 and 5 (bits 0b100101): 16 + 8 + 2 = 26 cells.
MASKED = Header(**{**PARTIAL.__dict__, "coded_cells": 26, "mask": bytes([0b100101])})


def test_the_block_mask_is_flag_bit_3_and_one_bit_per_block_after_the_count():
    from vqz.bitstream import unpack_file

    data = pack(MASKED, PAYLOADS, alpha=b"alpha", exif=b"II*\x00exif")
    parsed = unpack_file(data)
    assert parsed.header == MASKED and parsed.header.mask == bytes([0b100101]) and parsed.header.coded_cells == 26
    assert parsed.payloads == PAYLOADS and parsed.alpha == b"alpha" and parsed.exif == b"II*\x00exif"
    assert data[5] == 0x01 | 0x02 | 0x04 | 0x08
    # The mask's byte follows the coded-cell count; without both (and the flags) the file is the whole-stage file.
    at = 29 + len(HEADER.model_id) + 1 + 1 + 2 + 1
    assert data[at] == 26 and data[at + 1] == 0b100101
    whole = pack(HEADER, PAYLOADS, alpha=b"alpha", exif=b"II*\x00exif")
    assert bytes([*data[:5], 0x03]) + data[6:at] + data[at + 2 : -4] == whole[:-4]


def test_a_part_way_file_without_a_mask_is_unchanged():
    # What the descending order wrote before block masks existed, byte for byte (flags 0x04, the count).
    data = pack(PARTIAL, PAYLOADS)
    assert data[5] == 0x04 and unpack(data)[0].mask is None
    assert data == _with_valid_crc(_partial_body(b"\x11"))


@pytest.mark.parametrize("height, width", [(1, 1), (5, 10), (4, 4), (8, 9), (13, 3), (1, 37), (96, 64), (33, 65)])
def test_the_mask_cell_count_is_the_cells_of_its_blocks(height, width):
    import numpy as np

    from vqz.bitstream.container import mask_blocks, mask_cell_count, mask_size
    from vqz.codec.stage_context import mask_cells, pack_mask

    rng = np.random.default_rng(height * 100 + width)
    blocks = mask_blocks(height, width)
    for selected in (np.zeros(blocks, bool), np.ones(blocks, bool), rng.random(blocks) < 0.5):
        mask = pack_mask(selected)
        assert len(mask) == mask_size(height, width) == -(-blocks // 8)
        cells = mask_cells(mask, height, width)
        assert mask_cell_count(mask, height, width) == cells.size
        grid = np.zeros((height, width), bool)
        grid.ravel()[cells] = True
        for j in range(blocks):  # block j covers rows 4*(j // columns) .., columns 4*(j % columns) ..
            columns = -(-width // 4)
            r, c = divmod(j, columns)
            assert (grid[4 * r : 4 * r + 4, 4 * c : 4 * c + 4] == selected[j]).all()
        header = Header(**{**PARTIAL.__dict__, "grid_height": height, "grid_width": width,
                           "coded_cells": int(cells.size), "mask": mask})
        assert unpack(pack(header, PAYLOADS))[0] == header


def test_a_mask_that_disagrees_with_the_count_or_the_grid_is_refused():
    model_id = PARTIAL.model_id.encode()

    def body(count: bytes, mask: bytes) -> bytes:
        return (MAGIC + struct.pack("<BBB", BASE_VERSION, 0x0C, len(model_id)) + model_id + PARTIAL.model_hash
                + struct.pack("<IIBBHH", 77, 33, 3, 3, 5, 10)
                + b"".join(bytes([len(p)]) if len(p) < 128 else b"\xac\x02" for p in PAYLOADS)
                + count + mask + b"".join(PAYLOADS))

    assert unpack(_with_valid_crc(body(b"\x1a", b"\x25")))[0] == MASKED  # the hand-built body is right
    for count in (b"\x19", b"\x1b", b"\x00", b"\x32"):  # 25, 27, 0, 50 cells
        with pytest.raises(FormatError, match="block mask selects 26 cells"):
            unpack(_with_valid_crc(body(count, b"\x25")))
    with pytest.raises(FormatError, match="past its last block"):  # 6 blocks: bits 6 and 7 must be 0
        unpack(_with_valid_crc(body(b"\x1a", b"\x65")))
    for mask in (b"", b"\x25\x00"):  # a byte too few or too many: the bytes after it are misplaced
        with pytest.raises(FormatError):
            unpack(_with_valid_crc(body(b"\x1a", mask)))
    with pytest.raises(FormatError, match="block mask selects"):
        pack(Header(**{**MASKED.__dict__, "coded_cells": 25}), PAYLOADS)
    with pytest.raises(FormatError, match="must be 1 bytes"):
        pack(Header(**{**MASKED.__dict__, "mask": b"\x25\x00"}), PAYLOADS)
    with pytest.raises(FormatError, match="needs a part-way"):
        pack(Header(**{**HEADER.__dict__, "mask": b"\x25"}), PAYLOADS)


def test_a_huge_grid_with_a_short_file_is_refused_before_reading_the_mask():
    # 65535 x 65535 cells: 268 M blocks, a 33.5 MB mask; the file ends first, nothing is allocated.
    model_id = PARTIAL.model_id.encode()
    data = (MAGIC + struct.pack("<BBB", BASE_VERSION, 0x0C, len(model_id)) + model_id + PARTIAL.model_hash
            + struct.pack("<IIBBHH", 1 << 20, 1 << 11, 3, 2, 0xFFFF, 0xFFFF) + b"\x00\x00" + b"\x00" + b"\x00" * 64)
    with pytest.raises(FormatError, match="truncated \\(in block mask\\)"):
        unpack(_with_valid_crc(data))


def test_bit_3_without_bit_2_is_refused():
    for flags in (0x08, 0x09, 0x0A, 0x0B):
        data = bytearray(pack(HEADER, PAYLOADS, alpha=b"a" if flags & 1 else None,
                              exif=b"II*\x00exif" if flags & 2 else None)[:-4])
        data[5] = flags
        with pytest.raises(FormatError, match="bit 3"):
            unpack(_with_valid_crc(bytes(data)))


def test_a_reader_that_knows_only_bits_0_to_2_refuses_the_mask(monkeypatch):
    # What an earlier version-2 reader does with the new flag: refuse it, never decode the wrong cells.
    from vqz.bitstream import container

    data = pack(MASKED, PAYLOADS)
    monkeypatch.setattr(container, "_KNOWN_FLAGS", 0x07)
    with pytest.raises(FormatError, match="unknown flags 0x0c"):
        unpack(data)
    assert unpack(pack(PARTIAL, PAYLOADS))[0].coded_cells == 17  # its own part-way files still read


@pytest.mark.parametrize("header", ["whole", "part-way", "masked"])
def test_every_single_bit_flip_and_every_truncation_is_detected(header):
    data = pack({"whole": HEADER, "part-way": PARTIAL, "masked": MASKED}[header], PAYLOADS)
    for bit in range(len(data) * 8):
        corrupt = bytearray(data)
        corrupt[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(FormatError):
            unpack(bytes(corrupt))
    for length in range(len(data)):
        with pytest.raises(FormatError):
            unpack(data[:length])
