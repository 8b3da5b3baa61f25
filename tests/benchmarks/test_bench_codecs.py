"""Claims about the codec adapters and their registry, and the independent agreement check."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from vqz.benchmarks.adapter import Codec, setting_key
from vqz.benchmarks.codecs_learned import HyperpriorUntrainedCodec
from vqz.benchmarks.errors import BenchmarkError, CodecUnavailable
from vqz.benchmarks.registry import CODECS, codec_names, get_codec, parse_codec_list
from vqz.benchmarks.runner import measure

from vqz.errors import VqzError

KODAK = Path(__file__).resolve().parents[3] / "shared" / "data" / "kodak"
PILLOW_CODECS = ["jpeg", "webp", "avif", "jpeg2000", "jpegxl"]


def _image(height: int = 72, width: int = 96, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    chans = [128 + 80 * np.sin(x / (5 + c)) * np.cos(y / (9 + c)) + rng.normal(0, 5, (height, width)) for c in range(3)]
    return np.clip(np.stack(chans, axis=2), 0, 255).astype(np.uint8)


def _codec_or_skip(name: str) -> Codec:
    try:
        return get_codec(name)
    except CodecUnavailable as exc:
        pytest.skip(str(exc))


def test_unknown_codec_names_raise_one_line_listing_the_valid_ones() -> None:
    with pytest.raises(VqzError) as info:
        parse_codec_list("jpeg,h266")
    message = str(info.value)
    assert "'h266'" in message and "\n" not in message
    for name in codec_names():
        assert name in message


def test_codec_lists_are_normalised_deduplicated_and_accept_aliases() -> None:
    assert parse_codec_list(" JPEG, webp,jpg ,jxl,j2k") == ["jpeg", "webp", "jpegxl", "jpeg2000"]
    assert parse_codec_list("all") == codec_names()
    with pytest.raises(BenchmarkError, match="no codec"):
        parse_codec_list(" , ")


def test_registry_names_match_adapter_names() -> None:
    assert all(cls.name == name for name, cls in CODECS.items())
    assert {"vqz", "jpeg", "webp", "avif", "jpeg2000", "jpegxl", "hyperprior-untrained"} <= set(CODECS)


@pytest.mark.parametrize("name", PILLOW_CODECS)
def test_pillow_codecs_round_trip_to_the_same_shape_and_grow_with_quality(name: str) -> None:
    codec = _codec_or_skip(name)
    img = _image()
    settings = codec.settings()
    sizes = []
    for setting in (settings[0], settings[-1]):
        data = codec.encode(img, setting)
        decoded = codec.decode(data)
        assert decoded.shape == img.shape and decoded.dtype == np.uint8
        sizes.append(len(data))
    assert sizes[0] < sizes[1]
    assert codec.description and codec.rd


def test_jpeg_uses_4_2_0_chroma_subsampling() -> None:
    import io

    from PIL import JpegImagePlugin

    codec = _codec_or_skip("jpeg")
    with Image.open(io.BytesIO(codec.encode(_image(), 50))) as im:
        assert JpegImagePlugin.get_sampling(im) == 2  # 2 = 4:2:0
    assert "4:2:0" in codec.description


def test_jpeg2000_settings_are_target_bpp_and_are_met() -> None:
    codec = _codec_or_skip("jpeg2000")
    img = _image(128, 128)
    for target in (0.25, 1.0):
        bpp = len(codec.encode(img, target)) * 8 / img[..., 0].size
        assert bpp == pytest.approx(target, rel=0.15)


def test_a_setting_outside_the_sweep_is_refused() -> None:
    codec = _codec_or_skip("jpeg")
    with pytest.raises(BenchmarkError, match="not in"):
        codec.encode(_image(), 33)


def test_untrained_hyperprior_is_marked_speed_only_and_round_trips_odd_sizes() -> None:
    codec = HyperpriorUntrainedCodec()
    assert codec.rd is False
    assert "untrained" in codec.label and "speed only" in codec.label
    img = _image(40, 70)
    data = codec.encode(img, 1)
    decoded = codec.decode(data)
    assert decoded.shape == img.shape and decoded.dtype == np.uint8
    with pytest.raises(BenchmarkError, match="truncated|trailing"):
        codec.decode(data[:-1])
    with pytest.raises(BenchmarkError, match="trailing"):
        codec.decode(data + b"\0")


def test_vqz_adapter_follows_the_api_contract() -> None:
    codec = _codec_or_skip("vqz")
    levels = codec.settings()
    assert levels and all(isinstance(q, int) for q in levels)
    img = _image(64, 64)
    data = codec.encode(img, levels[0])
    assert isinstance(data, bytes)
    decoded = codec.decode(data)
    assert decoded.shape == img.shape and decoded.dtype == np.uint8


def _numpy_psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


@pytest.mark.parametrize("name, pil_format, options", [
    ("jpeg", "JPEG", lambda q: {"quality": q}),  # Pillow's defaults: 4:2:0, no optimize
    ("webp", "WEBP", lambda q: {"quality": q, "method": 6}),
])
def test_jpeg_and_webp_rows_agree_with_an_independent_numpy_computation(
        tmp_path: Path, name: str, pil_format: str, options) -> None:
    """The agreement check: PSNR from plain numpy on the decoded 8-bit file, bpp from the file size."""
    path = KODAK / "kodim23.png"
    if not path.exists():
        pytest.skip(f"{path} is not available")
    img = np.array(Image.open(path).convert("RGB"))
    codec = get_codec(name)
    for quality in (codec.settings()[1], 50, 90):
        row = measure(codec, img, quality, path.name)
        out = tmp_path / f"{name}-{quality}.img"
        Image.fromarray(img).save(out, format=pil_format, **options(quality))
        decoded = np.array(Image.open(out).convert("RGB"))
        expected_bpp = out.stat().st_size * 8 / (img.shape[0] * img.shape[1])
        assert row.bpp == pytest.approx(expected_bpp, rel=1e-12)
        assert abs(row.psnr_rgb - _numpy_psnr(img, decoded)) < 0.05
        assert row.setting == setting_key(quality) and math.isfinite(row.ms_ssim_db)
