"""The decoder on mutated real files: it raises VqzError and nothing else, quickly, with
bounded memory; every single-bit error is caught. The harness is vqz.benchmarks.fuzz
(its long mode: ``python -m vqz.benchmarks.fuzz --cases 100000``)."""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
import tracemalloc

import pytest

import vqz
from vqz.benchmarks import fuzz
from vqz.bitstream.container import READABLE_VERSIONS
from vqz.errors import FormatError, VqzError

RANDOM_CASES = 6_000  # as mutated: most stop at the CRC, cheaply
CRC_FIXED_CASES = 6_000  # CRC recomputed: they reach the field checks, the model lookup and the entropy decoder




@pytest.fixture(scope="module")
def seeds(model) -> list[fuzz.Seed]:
    return fuzz.seed_files(2, (1, 3, 8), model=model)


def _refused(data: bytes) -> list[VqzError]:
    """The errors of both decode entry points (each must raise)."""
    errors = []
    for entry in (vqz.read_info, vqz.decode_array):
        with pytest.raises(VqzError) as caught:
            entry(data)
        errors.append(caught.value)
    return errors


def test_random_mutations_raise_only_vqz_errors(seeds):
    report = fuzz.fuzz(seeds, RANDOM_CASES, seed=1, crc_fixed=0.0)
    assert not report.crashes, report.summary()
    assert report.cases == RANDOM_CASES
    assert report.by_outcome()["format:crc"] > RANDOM_CASES // 2  # the CRC stops most of them


@pytest.mark.slow  # decodes about a hundred mutated files (several seconds)
def test_mutations_with_a_recomputed_crc_reach_the_decoder_and_raise_only_vqz_errors(seeds):
    report = fuzz.fuzz(seeds, CRC_FIXED_CASES, seed=2, crc_fixed=1.0)
    assert not report.crashes, report.summary()
    outcomes = report.by_outcome()
    assert outcomes["format:crc"] == 0
    for reached in ("format:field", "format:truncated", "format:trailing", "format:payload", "model", "decoded"):
        assert outcomes[reached] > 0, (reached, report.summary())
    assert report.slowest[0] < 5.0, report.summary()


def test_every_truncation_of_a_real_file_is_refused(seeds):
    for seed in seeds[:3]:
        for length in range(len(seed.data)):
            _refused(seed.data[:length])


def test_every_single_bit_flip_in_a_real_file_is_detected(seeds):
    for seed in (seeds[0], seeds[-1]):
        for bit in range(len(seed.data) * 8):
            corrupt = bytearray(seed.data)
            corrupt[bit // 8] ^= 1 << (bit % 8)
            for error in _refused(bytes(corrupt)):
                assert isinstance(error, FormatError)
                # the reader checks magic and version before the CRC (docs/FORMAT.md)
                readable = bit < 32 or bit >= 40 or corrupt[4] in READABLE_VERSIONS  # 2 -> 3 is a version too
                expected = "magic" if bit < 32 else "version" if not readable else "CRC-32 mismatch"
                assert expected in str(error), (bit, str(error))


@pytest.mark.parametrize("name", ["version", "flags", "id_len", "width", "height", "quality", "count",
                                  "grid_height", "grid_width"])
def test_header_fields_at_extremes_are_refused_or_harmless(seeds, name):
    """0, 1, max, sign bit, -1 as unsigned (CRC recomputed): decoding refuses every one
    (quality alone is informational). read_info, which needs no model, accepts an
    in-range size or grid: only the decoder knows the model's downsampling."""
    seed = seeds[1]
    offset, fmt = seed.fields()[name]
    (original,) = struct.unpack_from(fmt, seed.data, offset)
    for value in fuzz._EXTREMES[fmt]:
        if value == original:
            continue
        data = fuzz.fix_crc(fuzz._set(seed.data, offset, fmt, value))
        if name == "quality" and value > 0:
            assert vqz.read_info(data).quality == value
            assert vqz.decode_array(data).shape == vqz.decode_array(seed.data).shape
            continue
        with pytest.raises(FormatError):
            vqz.decode_array(data)
        try:
            info = vqz.read_info(data)
        except FormatError:
            continue
        assert name in ("width", "height", "grid_height", "grid_width") and getattr(info, name) == value


@pytest.mark.parametrize("varint", fuzz._BAD_VARINTS)
def test_maxed_or_malformed_payload_lengths_are_refused_before_allocating(seeds, varint):
    seed = seeds[2]
    for start, size in seed.varints:
        data = fuzz.fix_crc(seed.data[:start] + varint + seed.data[start + size :])
        tracemalloc.start()
        try:
            errors = _refused(data)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert all(isinstance(e, FormatError) for e in errors)
        assert peak < 16 << 20


def test_a_large_declared_grid_decodes_with_bounded_memory(model):
    """A 4-byte stage-0 payload for a 512x512 grid: the decoder used to build a (65536, 512)
    float64 probability table per pass (268 MB, 34 GB for the largest grid a header may
    declare); it now works in chunks of DECODE_CHUNK symbols."""
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match="left over|does not decode"):
            model.entropy.decode_plane(struct.pack("<I", 0x12345), 0, 512, 512)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"peak {peak >> 20} MiB"


@pytest.mark.slow
def test_the_largest_declared_image_is_refused_without_a_memory_error(tmp_path):
    """A 60-byte file (valid CRC, installed model) declaring 524280x4096 pixels (grid
    512x65535, under every container cap), decoded under an 8 GiB address-space cap:
    a FormatError, not a MemoryError. Takes about a minute (33.5M symbols are decoded
    before the leftover check can fail)."""
    script = textwrap.dedent("""
        import resource, struct, numpy as np, vqz
        from vqz.bitstream import Header, pack, unpack
        weights = vqz.load_model()
        header, _ = unpack(vqz.encode(np.zeros((8, 8, 3), np.uint8), quality=1, model=weights))
        data = pack(Header(header.model_id, header.model_hash, 524280, 4096, 1, 512, 65535), [struct.pack("<I", 0x12345)])
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, resource.getrlimit(resource.RLIMIT_AS)[1]))
        try:
            vqz.decode_array(data)
        except vqz.FormatError as exc:
            print("FormatError", exc)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and result.stdout.startswith("FormatError"), result.stderr[-2000:]
