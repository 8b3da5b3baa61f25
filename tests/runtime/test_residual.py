"""The pixel residual layer (codec/residual.py) and the quality levels that use it (codec/levels.py)."""

from __future__ import annotations

import hashlib
import math
import struct

import numpy as np
import pytest
from PIL import Image

import vqz
from vqz.bitstream import FORMAT_VERSION, RESIDUAL_VERSION, Header, pack, unpack_file
from vqz.codec import residual as R
from vqz.codec.levels import PURE_LEVELS, RESIDUAL_LADDER, level_plan, level_plans
from vqz.codec.pipeline import decode_bytes, encode_array, quality_range, render
from vqz.codec.rate_control import psnr
from vqz.errors import FormatError

from conftest import photo_crop
from make_golden import RESIDUAL_QUALITY, residual_paths

GOLDEN_RESIDUAL, GOLDEN_RESIDUAL_PNG = residual_paths("vqz-rvq16b-f8")


def _photo(height: int = 96, width: int = 128) -> np.ndarray:
    return photo_crop(height, width)


def test_the_probability_tables_are_frozen():
    # They are part of the format: a change here makes every version-3 file undecodable.
    digest = hashlib.sha256()
    for index in range(1, R.NUM_SCALES + 1):
        digest.update(R._frequencies(index).astype("<i8").tobytes())
    assert digest.hexdigest()[:16] == "94515b03f4258c59"
    assert all(int(f) >= 1 for i in range(1, R.NUM_SCALES + 1) for f in R._frequencies(i))


@pytest.mark.parametrize("step", [8.0, 21.5, 128.0])
def test_the_decoder_rebuilds_the_encoders_coefficients_and_image(step):
    rng = np.random.default_rng(int(step))
    gh, gw, top, left = 5, 7, 3, 2  # a 35 x 53 image in a 40 x 56 frame
    rgb = rng.integers(0, 256, (35, 53, 3)).astype(np.uint8)
    base = np.clip(rgb.astype(int) + rng.normal(0, 20, rgb.shape), 0, 255).astype(np.uint8)
    activity = rng.integers(0, 1000, (gh, gw))
    params = R.ResidualParams(step)
    levels = R.quantize_residual(rgb, base, top, left, (gh, gw), params, 0.33)
    assert [k.shape for k in levels] == [(gh, gw, 64)] * 3 and all(k.dtype == np.int16 for k in levels)
    payload = R.encode_levels(levels, params, activity)
    decoded_params, decoded = R.decode_levels(payload, (gh, gw), activity)
    assert all(np.array_equal(a, b) for a, b in zip(levels, decoded))
    assert (decoded_params.step, decoded_params.edges) == (params.step, R.activity_edges(activity))
    image = R.decode_residual(payload, base, top, left, (gh, gw), activity)
    assert image.dtype == np.uint8 and image.shape == rgb.shape
    if step < 100:  # noise of sigma 20 survives these steps (at 128 nearly every coefficient rounds to 0)
        error = np.mean((image.astype(float) - rgb) ** 2)
        assert error < 0.5 * np.mean((base.astype(float) - rgb) ** 2)
    # strips: an image taller than one strip decodes the same as strip by strip would
    assert np.array_equal(R.render_residual(base, decoded, decoded_params, top, left), image)


def test_strips_do_not_change_the_result(monkeypatch):
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (70, 20, 3)).astype(np.uint8)
    base = np.clip(rgb.astype(int) + rng.normal(0, 30, rgb.shape), 0, 255).astype(np.uint8)
    params = R.ResidualParams(12.0)
    whole = R.quantize_residual(rgb, base, 1, 2, (9, 3), params)
    image = R.render_residual(base, whole, params, 1, 2)
    monkeypatch.setattr(R, "STRIP_BLOCKS", 2)
    assert all(np.array_equal(a, b) for a, b in zip(whole, R.quantize_residual(rgb, base, 1, 2, (9, 3), params)))
    assert np.array_equal(R.render_residual(base, whole, params, 1, 2), image)
    in_place = base.copy()  # the encoder renders into its own base image
    assert R.render_residual(in_place, whole, params, 1, 2, out=in_place) is in_place
    assert np.array_equal(in_place, image)


def test_the_largest_residual_fits_the_alphabet_at_the_smallest_step():
    for flip in (False, True):
        rgb = np.full((16, 24, 3), 255, dtype=np.uint8)
        rgb[::2, ::2] = 0  # and the largest alternation
        base = 255 - rgb if flip else np.zeros_like(rgb)
        params = R.ResidualParams(R.MIN_STEP)
        levels = R.quantize_residual(rgb, base, 0, 0, (2, 3), params, 0.5)
        assert max(int(np.abs(k).max()) for k in levels) <= R.MAX_LEVEL
        payload = R.encode_levels(levels, params, None)
        image = R.decode_residual(payload, base, 0, 0, (2, 3), None)
        assert np.abs(image.astype(int) - rgb).max() < 3 * R.MIN_STEP


def test_parameters_are_checked():
    with pytest.raises(ValueError):
        R.ResidualParams(R.MIN_STEP - 1)
    with pytest.raises(ValueError):
        R.ResidualParams(16.0, chroma=0.5)
    with pytest.raises(ValueError):
        R.ResidualParams(16.0, edges=(5, 3, 9))
    params = R.ResidualParams(21.3, 1.25, 0.0, (1, 20, 300))
    again, end = R.ResidualParams.unpack(params.pack())
    assert (again.step, again.chroma, again.offset, again.edges) == (params.step, 1.25, 0.0, (1, 20, 300))
    assert end == len(params.pack())


@pytest.mark.parametrize("payload", [b"", b"\x00\x01", struct.pack("<HBB", 10, 16, 0) + b"\x00\x00\x00",
                                     struct.pack("<HBB", 256, 16, 0) + b"\x00\x00\x00" + b"\x01\x02"])
def test_a_broken_layer_is_a_format_error(payload):
    with pytest.raises(FormatError):
        R.decode_levels(payload, (2, 2), None)


def test_garbage_coder_words_never_crash():
    rng = np.random.default_rng(0)
    head = R.ResidualParams(16.0).pack()
    base = np.zeros((24, 32, 3), dtype=np.uint8)
    for _ in range(20):
        words = rng.integers(0, 2**32, rng.integers(0, 12), dtype=np.uint64).astype("<u4").tobytes()
        try:
            out = R.decode_residual(head + words, base, 0, 0, (3, 4), None)
        except FormatError:
            continue
        assert out.shape == (24, 32, 3) and out.dtype == np.uint8


def test_levels_are_stages_then_stages_plus_a_finer_and_finer_residual(model):
    plans = level_plans(model)
    assert len(plans) == len(quality_range(model)) == PURE_LEVELS + len(RESIDUAL_LADDER)
    assert [p.stages for p in plans[:PURE_LEVELS]] == list(range(1, PURE_LEVELS + 1))
    assert all(p.residual_step is None for p in plans[:PURE_LEVELS])
    steps = [p.residual_step for p in plans[PURE_LEVELS:]]
    assert steps == sorted(steps, reverse=True) and min(steps) >= R.MIN_STEP
    assert all(p.stages == PURE_LEVELS for p in plans[PURE_LEVELS:])


def test_a_residual_level_beats_its_stages_and_decodes_progressively(model):
    rgb = _photo()
    quality = PURE_LEVELS + 6
    data, _ = encode_array(model, rgb, quality)
    parsed = unpack_file(data)
    assert data[4] in (RESIDUAL_VERSION, FORMAT_VERSION) and parsed.residual is not None  # 4: it asks for the post-filter
    assert len(parsed.payloads) == level_plan(model, quality).stages
    base = render(model, _indices(model, data), *rgb.shape[:2])
    decoded = decode_bytes(model, data)
    assert psnr(rgb, decoded) > psnr(rgb, base) + 1.0
    # fewer stages than the file has: the residual layer (made for all of them) does not apply
    assert np.array_equal(decode_bytes(model, data, stages=2), render(model, _indices(model, data)[:2], *rgb.shape[:2]))
    # the whole file, asked for all its stages or more: with the layer
    assert np.array_equal(decode_bytes(model, data, stages=99), decoded)
    # a stage-only file stays format version 2, or 4 where it asks for the post-filter
    stage_only = encode_array(model, rgb, PURE_LEVELS)[0]
    assert stage_only[4] == (2 if unpack_file(stage_only).header.postfilter is None else FORMAT_VERSION)


def _indices(model, data: bytes) -> np.ndarray:
    from vqz.codec.pipeline import decode_indices

    parsed = unpack_file(data)
    return decode_indices(model, parsed.header, parsed.payloads)


def test_levels_grow_in_size_and_quality_on_a_photo(model):
    rgb = _photo()
    sizes, scores = [], []
    for quality in quality_range(model):
        data, _ = encode_array(model, rgb, quality)
        sizes.append(len(data))
        scores.append(psnr(rgb, decode_bytes(model, data)))
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert scores == sorted(scores)
    assert scores[-1] > scores[PURE_LEVELS - 1] + 6.0


def test_the_container_carries_a_residual_with_alpha_and_metadata():
    header = Header("m", b"\x01" * 8, 10, 10, 5, 2, 2)
    data = pack(header, [b"abcd"], b"alpha", residual=b"resid", exif=b"II*\x00rest")
    parsed = unpack_file(data)
    assert (parsed.residual, parsed.alpha, parsed.payloads, parsed.exif) == (b"resid", b"alpha", [b"abcd"], b"II*\x00rest")
    assert data[4] == 3 and parsed.header.version == 3
    assert unpack_file(pack(header, [b"abcd"])).residual is None
    with pytest.raises(FormatError, match="at least one stage"):
        pack(header, [], residual=b"x")


def test_a_version_2_file_cannot_carry_a_residual_layer():
    data = bytearray(pack(Header("m", b"\x01" * 8, 10, 10, 5, 2, 2), [b"abcd"], residual=b"resid"))
    data[4] = 2
    import zlib

    data[-4:] = struct.pack("<I", zlib.crc32(bytes(data[:-4])))
    with pytest.raises(FormatError, match="needs format version 3"):
        unpack_file(bytes(data))


def test_a_file_with_a_residual_layer_reports_it():
    info = vqz.read_info(GOLDEN_RESIDUAL.read_bytes())
    assert info.format_version == 3 and info.residual_bytes > 0 and info.residual_step == RESIDUAL_LADDER[RESIDUAL_QUALITY - PURE_LEVELS - 1][1]
    assert info.header_bytes + sum(info.payload_bytes) + info.residual_bytes == info.total_bytes


def test_the_golden_residual_file_keeps_decoding():
    # Written once (tests/make_golden.py); a file of the first format version 3 encoder; the pixels may differ by float rounding on other CPUs.
    decoded = vqz.decode_array(GOLDEN_RESIDUAL.read_bytes())
    expected = np.asarray(Image.open(GOLDEN_RESIDUAL_PNG))
    assert decoded.shape == expected.shape
    assert np.abs(decoded.astype(int) - expected.astype(int)).max() <= 2
    assert math.isfinite(float(decoded.mean()))


def test_the_encoder_fingerprint_follows_the_ladder(monkeypatch):
    from vqz.codec import levels

    before = levels.encoder_settings_id()
    monkeypatch.setattr(levels, "RESIDUAL_TILT", levels.RESIDUAL_TILT + 1)
    assert levels.encoder_settings_id() != before and len(before) == 12


def test_the_levels_table_separates_the_residual_layer(tmp_path):
    from vqz.benchmarks.levels import measure, to_markdown

    Image.fromarray(_photo(48, 64)).save(tmp_path / "a.png")
    rows = measure(tmp_path, levels=[2, PURE_LEVELS + 3])
    stage_only, residual = rows
    assert stage_only["residual_step"] is None and stage_only["residual_bpp"] == 0 and stage_only["stages"] == 2
    assert residual["residual_step"] == RESIDUAL_LADDER[2][1] and residual["residual_bpp"] > 0
    assert 40 <= residual["header_bytes"] <= 80  # the header alone, not the layer
    assert f"{PURE_LEVELS} + {RESIDUAL_LADDER[2][1]:g}" in to_markdown(rows)
