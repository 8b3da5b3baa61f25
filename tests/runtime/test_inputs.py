"""Real images people have, and bad inputs, through the Python API and the CLI.

Every image is made here with Pillow (or by hand, byte by byte, for the PNGs Pillow will
not write), so nothing is downloaded and tests/data stays empty. Security claims at the
end: weights load only from safetensors; outputs never escape ``-o DIR``.
"""

from __future__ import annotations

import io
import pickle
import resource
import struct
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import vqz
from vqz.bitstream import FORMAT_VERSION, unpack
from vqz.cli.app import app
from vqz.codec.image import ANIMATED_WARNING, DEFAULT_MAX_PIXELS, SIXTEEN_BIT_WARNING, to_rgb_array
from vqz.errors import FormatError, ImageError, ModelError

from conftest import smooth_image

QUALITY = 2




# ---------------------------------------------------------------------------- file builders
def _save(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_by_hand(width: int, height: int, bit_depth: int, color_type: int, rows: bytes = b"\0") -> bytes:
    """A PNG from its chunks (valid CRCs): IHDR as given, one IDAT of ``rows``, IEND."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(rows))
            + _chunk(b"IEND", b""))


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A 60-byte PNG whose header declares ``width`` x ``height`` RGB pixels (no pixel data)."""
    return png_by_hand(width, height, 8, 2)


# An RGB ICC profile that is not sRGB, built offline: LittleCMS (ImageCms.createProfile) only
# makes sRGB, LAB and XYZ, and no profile files ship with this system, so this writes an
# ICC v2 matrix/TRC display profile byte by byte with the Adobe RGB (1998) primaries and
# gamma 563/256, colorants Bradford-adapted to D50 as in Adobe's own profile.
BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])
D50 = np.array([0.9642, 1.0, 0.8249])
D65 = np.array([0.95047, 1.0, 1.08883])
ADOBE_PRIMARIES = [(0.64, 0.33), (0.21, 0.71), (0.15, 0.06)]
SRGB_PRIMARIES = [(0.64, 0.33), (0.30, 0.60), (0.15, 0.06)]
ADOBE_GAMMA = 563 / 256


def _rgb_to_xyz(primaries) -> np.ndarray:
    """Linear RGB -> XYZ (D65) matrix of a set of xy primaries."""
    p = np.array([[x / y, 1.0, (1 - x - y) / y] for x, y in primaries]).T
    return p * np.linalg.solve(p, D65)[None, :]


def _s15f16(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def _xyz_tag(xyz) -> bytes:
    return b"XYZ \0\0\0\0" + b"".join(_s15f16(v) for v in xyz)


def matrix_icc(text: bytes, primaries, curve: bytes) -> bytes:
    """A minimal ICC v2 RGB matrix/TRC display profile: description ``text`` (NUL-terminated),
    the D65 ``primaries`` (xy) adapted to D50 (Bradford) and one tone ``curve`` tag for R, G, B."""
    colorants = np.linalg.inv(BRADFORD) @ np.diag((BRADFORD @ D50) / (BRADFORD @ D65)) @ BRADFORD @ _rgb_to_xyz(primaries)
    tags = [(b"desc", b"desc\0\0\0\0" + struct.pack(">I", len(text)) + text + b"\0" * 79),
            (b"cprt", b"text\0\0\0\0public domain\0"), (b"wtpt", _xyz_tag(D50)),
            (b"rXYZ", _xyz_tag(colorants[:, 0])), (b"gXYZ", _xyz_tag(colorants[:, 1])),
            (b"bXYZ", _xyz_tag(colorants[:, 2])), (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    offset = 128 + 4 + 12 * len(tags)
    table = body = b""
    for signature, data in tags:
        data += b"\0" * (-len(data) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    header = (struct.pack(">I", offset + len(body)) + b"\0" * 4 + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ "
              + b"\0" * 12 + b"acsp" + b"\0" * 28 + b"".join(_s15f16(v) for v in D50))
    return header.ljust(128, b"\0") + struct.pack(">I", len(tags)) + table + body


def adobe_rgb_like_icc() -> bytes:
    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(ADOBE_GAMMA * 256)) + b"\0\0"
    return matrix_icc(b"Adobe-RGB-like test profile\0", ADOBE_PRIMARIES, curve)


def adobe_to_srgb(rgb: np.ndarray) -> np.ndarray:
    """The same conversion done independently: decode gamma, D65 matrices, sRGB curve."""
    linear = (rgb.astype(np.float64) / 255) ** ADOBE_GAMMA
    srgb = np.clip(linear @ (np.linalg.inv(_rgb_to_xyz(SRGB_PRIMARIES)) @ _rgb_to_xyz(ADOBE_PRIMARIES)).T, 0, 1)
    encoded = np.where(srgb <= 0.0031308, 12.92 * srgb, 1.055 * srgb ** (1 / 2.4) - 0.055)
    return np.round(encoded * 255)


def _srgb_icc() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _two_halves(height: int, width: int, left, right) -> np.ndarray:
    out = np.empty((height, width, 3), np.uint8)
    out[:, : width // 2] = left
    out[:, width // 2 :] = right
    return out


SIXTEEN = np.array([[0, 128, 129, 257, 32767, 32768, 65535, 40000]], np.uint16)
SIXTEEN_AS_8 = np.array([[0, 0, 1, 1, 127, 128, 255, 156]], np.uint8)  # round(v * 255 / 65535)
ICC_COLOURS = np.array([[[128, 128, 128], [120, 160, 90], [200, 100, 50], [60, 60, 200], [0, 255, 0]]], np.uint8)


@dataclass(frozen=True)
class Case:
    """A real-world image file: its bytes, its name, the RGB it must read as (or a check)."""

    name: str
    suffix: str
    make: Callable[[], bytes]
    expected: Callable[[], np.ndarray]  # exact 8-bit RGB after reading
    tolerance: int = 0  # for lossy formats
    warning: str | None = None


def _exif_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    return _save(Image.fromarray(_two_halves(24, 40, (230, 20, 20), (20, 20, 230))), "JPEG", quality=95,
                 subsampling=0, exif=exif.tobytes())


def _animated(fmt: str, **params) -> bytes:
    frames = [Image.new("RGB", (12, 10), colour) for colour in ((200, 30, 30), (30, 200, 30), (30, 30, 200))]
    return _save(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **params)


def _palette() -> Image.Image:
    return Image.fromarray(smooth_image(20, 30, seed=3)).convert("P", palette=Image.Palette.ADAPTIVE, colors=32)


def _sixteen_bit_rgb_png() -> bytes:
    """16 x 8 pixels, 16 bits per sample: left half (65535, 32896, 0), right half (257, 40000, 65535)."""
    pixels = np.empty((8, 16, 3), ">u2")
    pixels[:, :8], pixels[:, 8:] = (65535, 32896, 0), (257, 40000, 65535)
    return png_by_hand(16, 8, 16, 2, b"".join(b"\0" + row.tobytes() for row in pixels))


REAL = [
    Case("1x1", ".png", lambda: _save(Image.new("RGB", (1, 1), (10, 200, 30)), "PNG"),
         lambda: np.array([[[10, 200, 30]]], np.uint8)),
    Case("1xN", ".png", lambda: _save(Image.fromarray(smooth_image(1, 9, seed=1)), "PNG"), lambda: smooth_image(1, 9, seed=1)),
    Case("Nx1", ".png", lambda: _save(Image.fromarray(smooth_image(9, 1, seed=1)), "PNG"), lambda: smooth_image(9, 1, seed=1)),
    Case("wide-4000x16", ".png", lambda: _save(Image.fromarray(smooth_image(16, 4000, seed=2)), "PNG"),
         lambda: smooth_image(16, 4000, seed=2)),
    Case("tall-16x4000", ".png", lambda: _save(Image.fromarray(smooth_image(4000, 16, seed=2)), "PNG"),
         lambda: smooth_image(4000, 16, seed=2)),
    Case("grayscale-L", ".png", lambda: _save(Image.fromarray(smooth_image(20, 30)[:, :, 1], "L"), "PNG"),
         lambda: np.repeat(smooth_image(20, 30)[:, :, 1:2], 3, axis=2)),
    Case("palette-opaque", ".png", lambda: _save(_palette(), "PNG"), lambda: np.asarray(_palette().convert("RGB"))),
    Case("palette-opaque-gif", ".gif", lambda: _save(_palette(), "GIF"), lambda: np.asarray(_palette().convert("RGB"))),
    Case("16-bit-gray-png", ".png", lambda: _save(Image.fromarray(SIXTEEN), "PNG"),
         lambda: np.repeat(SIXTEEN_AS_8[:, :, None], 3, axis=2), warning=SIXTEEN_BIT_WARNING),
    Case("32-bit-I-tiff", ".tif", lambda: _save(Image.fromarray(SIXTEEN).convert("I"), "TIFF"),
         lambda: np.repeat(SIXTEEN_AS_8[:, :, None], 3, axis=2), warning=SIXTEEN_BIT_WARNING),
    # Pillow itself reduces 16-bit colour to 8 bits (keeping the high byte): at most 1 level off rounding
    Case("16-bit-rgb-png", ".png", _sixteen_bit_rgb_png,
         lambda: _two_halves(8, 16, (255, 128, 0), (1, 156, 255)), tolerance=1, warning=SIXTEEN_BIT_WARNING),
    Case("cmyk-jpeg", ".jpg", lambda: _save(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95),
         lambda: np.full((16, 16, 3), (255, 0, 0), np.uint8), tolerance=8),
    Case("exif-orientation-6", ".jpg", _exif_jpeg,
         lambda: np.rot90(_two_halves(24, 40, (230, 20, 20), (20, 20, 230)), k=-1), tolerance=40),
    Case("icc-srgb", ".png", lambda: _save(Image.fromarray(ICC_COLOURS), "PNG", icc_profile=_srgb_icc()),
         lambda: ICC_COLOURS),
    Case("icc-adobe-rgb-like", ".png", lambda: _save(Image.fromarray(ICC_COLOURS), "PNG", icc_profile=adobe_rgb_like_icc()),
         lambda: adobe_to_srgb(ICC_COLOURS).astype(np.uint8), tolerance=2),
    Case("animated-gif", ".gif", lambda: _animated("GIF"), lambda: np.full((10, 12, 3), (200, 30, 30), np.uint8),
         tolerance=2, warning=ANIMATED_WARNING),
    Case("animated-webp", ".webp", lambda: _animated("WEBP", lossless=True),
         lambda: np.full((10, 12, 3), (200, 30, 30), np.uint8), warning=ANIMATED_WARNING),
]

ALPHA = [
    ("rgba", ".png", lambda: _save(Image.new("RGBA", (8, 8), (1, 2, 3, 128)), "PNG")),
    ("gray-alpha-LA", ".png", lambda: _save(Image.new("LA", (8, 8), (100, 50)), "PNG")),
    ("palette-transparency-png", ".png", lambda: _save(_palette(), "PNG", transparency=0)),
    ("palette-transparency-gif", ".gif", lambda: _save(_palette(), "GIF", transparency=0)),
    ("rgba-webp", ".webp", lambda: _save(Image.new("RGBA", (8, 8), (1, 2, 3, 128)), "WEBP", lossless=True)),
    ("rgb-colour-key", ".png", lambda: _save(Image.new("RGB", (8, 8)), "PNG", transparency=(0, 0, 0))),
]


def _write(tmp_path: Path, name: str, suffix: str, data: bytes) -> Path:
    path = tmp_path / f"{name}{suffix}"
    path.write_bytes(data)
    return path


def _run(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def _within(actual: np.ndarray, expected: np.ndarray, tolerance: int) -> bool:
    return actual.shape == expected.shape and int(np.abs(actual.astype(int) - expected.astype(int)).max()) <= tolerance


# ---------------------------------------------------------------------------- real images
@pytest.mark.parametrize("case", REAL, ids=lambda c: c.name)
def test_real_image_reads_as_the_right_rgb(case, recwarn):
    rgb = to_rgb_array(case.make())
    expected = case.expected()
    assert rgb.dtype == np.uint8 and rgb.shape == expected.shape
    assert _within(rgb, expected, case.tolerance), np.abs(rgb.astype(int) - expected).max()
    messages = [str(w.message) for w in recwarn.list if issubclass(w.category, UserWarning)]
    assert messages == ([case.warning] if case.warning else []), messages


@pytest.mark.parametrize("case", REAL, ids=lambda c: c.name)
def test_real_image_round_trips_through_the_api(case, tmp_path, model):
    path = _write(tmp_path, case.name, case.suffix, case.make())
    expected = case.expected()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = vqz.encode(path, quality=QUALITY, model=model)
        assert data == vqz.encode(case.make(), quality=QUALITY, model=model)  # a path or its bytes: same file
    assert [str(w.message) for w in caught if w.category is UserWarning] == ([case.warning] * 2 if case.warning else [])
    info = vqz.read_info(data)
    assert (info.width, info.height) == (expected.shape[1], expected.shape[0])
    decoded = vqz.decode(data)
    assert decoded.mode == "RGB" and decoded.size == (expected.shape[1], expected.shape[0])
    pixels = np.asarray(decoded).astype(int)
    # a sanity bound, not a quality claim: nearer the right colours than their negative
    assert np.abs(pixels - expected).mean() < np.abs(pixels - (255 - expected.astype(int))).mean()


@pytest.mark.parametrize("case", REAL, ids=lambda c: c.name)
def test_real_image_round_trips_through_the_cli(case, tmp_path):
    path = _write(tmp_path, case.name, case.suffix, case.make())
    encoded, decoded = tmp_path / "out.vqz", tmp_path / "out.png"
    result = _run("encode", path, "-q", QUALITY, "-o", encoded)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    result = _run("decode", encoded, "-o", decoded)
    assert result.exit_code == 0, result.output
    expected = case.expected()
    with Image.open(decoded) as image:
        assert image.mode == "RGB" and image.size == (expected.shape[1], expected.shape[0])


def test_exif_orientation_6_turns_the_image_clockwise():
    rgb = to_rgb_array(_exif_jpeg())
    assert rgb.shape == (40, 24, 3)  # was 40 wide, 24 high
    assert rgb[2, 12, 0] > 200 and rgb[2, 12, 2] < 60  # the red left half is now on top
    assert rgb[-3, 12, 2] > 200 and rgb[-3, 12, 0] < 60  # the blue right half at the bottom


def test_cmyk_jpeg_is_read_through_the_adobe_inverted_path():
    data = _save(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95)
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == "CMYK" and "adobe" in image.info  # Adobe APP14: inverted CMYK on disk
    cyan = to_rgb_array(_save(Image.new("CMYK", (16, 16), (255, 0, 0, 0)), "JPEG", quality=95))
    assert _within(cyan, np.full((16, 16, 3), (0, 255, 255), np.uint8), 8)


def test_a_non_srgb_icc_profile_is_converted_and_an_srgb_one_left_alone():
    """The Adobe-RGB-like profile (built above) through LittleCMS matches the conversion
    computed independently with D65 matrices, to 2 levels; an sRGB profile changes nothing."""
    converted = to_rgb_array(_save(Image.fromarray(ICC_COLOURS), "PNG", icc_profile=adobe_rgb_like_icc()))
    assert not np.array_equal(converted, ICC_COLOURS)
    assert _within(converted, adobe_to_srgb(ICC_COLOURS), 2)
    assert converted[0, 1, 0] < ICC_COLOURS[0, 1, 0]  # a wide-gamut green gets more saturated in sRGB numbers
    assert np.array_equal(to_rgb_array(_save(Image.fromarray(ICC_COLOURS), "PNG", icc_profile=_srgb_icc())), ICC_COLOURS)


def test_an_icc_profile_on_a_jpeg_is_applied_too():
    flat = np.full((16, 16, 3), (120, 160, 90), np.uint8)
    rgb = to_rgb_array(_save(Image.fromarray(flat), "JPEG", quality=100, subsampling=0, icc_profile=adobe_rgb_like_icc()))
    assert _within(rgb, np.broadcast_to(adobe_to_srgb(flat[:1, :1]), flat.shape), 3)


def test_an_unreadable_icc_profile_is_ignored_with_a_warning():
    with pytest.warns(UserWarning, match="ICC"):
        rgb = to_rgb_array(_save(Image.fromarray(ICC_COLOURS), "PNG", icc_profile=b"not a profile" * 10))
    assert np.array_equal(rgb, ICC_COLOURS)


def test_sixteen_bit_scaling_rounds_instead_of_clipping():
    with pytest.warns(UserWarning, match="converted 16-bit image to 8 bits"):
        rgb = to_rgb_array(_save(Image.fromarray(SIXTEEN), "PNG"))
    assert rgb[0, :, 0].tolist() == SIXTEEN_AS_8[0].tolist()
    exact = np.round(SIXTEEN.astype(np.float64) * 255 / 65535)
    assert np.array_equal(rgb[..., 0], exact)


def test_a_pil_image_and_an_array_are_accepted_as_they_are():
    image = Image.fromarray(smooth_image(10, 12), "RGB")
    assert np.array_equal(to_rgb_array(image), smooth_image(10, 12))
    assert np.array_equal(to_rgb_array(smooth_image(10, 12)[:, :, 0]), np.repeat(smooth_image(10, 12)[:, :, :1], 3, 2))


# ---------------------------------------------------------------------------- alpha: kept losslessly
def _expected_rgba(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGBA"))


@pytest.mark.parametrize("name, suffix, make", ALPHA, ids=[a[0] for a in ALPHA])
def test_alpha_is_kept_exactly_through_the_api_and_the_cli(tmp_path, name, suffix, make):
    data = make()
    path = _write(tmp_path, name, suffix, data)
    expected_alpha = _expected_rgba(data)[:, :, 3]
    decoded = vqz.decode_array(vqz.encode(path, quality=QUALITY))
    assert decoded.shape == (*expected_alpha.shape, 4)
    assert np.array_equal(decoded[:, :, 3], expected_alpha)
    result = _run("encode", path, "-q", QUALITY)
    assert result.exit_code == 0, result.output
    out = tmp_path / f"{name}-decoded.png"
    assert _run("decode", path.with_suffix(".vqz"), "-o", out).exit_code == 0
    with Image.open(out) as image:
        assert image.mode == "RGBA"
        assert np.array_equal(np.asarray(image)[:, :, 3], expected_alpha)


def test_alpha_cannot_be_written_to_ppm_and_leaves_no_file(tmp_path):
    path = _write(tmp_path, "rgba", ".png", ALPHA[0][2]())
    assert _run("encode", path, "-q", QUALITY).exit_code == 0
    result = _run("decode", path.with_suffix(".vqz"), "-o", tmp_path / "out.ppm")
    assert result.exit_code == 1 and "alpha" in result.stderr
    assert not (tmp_path / "out.ppm").exists()


def test_rgb_only_reader_refuses_alpha_clearly():
    with pytest.raises(ImageError, match="alpha channel is not supported here"):
        to_rgb_array(Image.new("RGBA", (4, 4)))


def test_unsupported_pixel_formats_are_clear_errors():
    with pytest.raises(ImageError, match="floating-point"):
        to_rgb_array(_save(Image.new("F", (4, 4), 0.5), "TIFF"))


# ---------------------------------------------------------------------------- decompression bombs
def test_a_png_declaring_100000x100000_is_refused_by_size_without_allocating():
    data = bomb_png()
    assert len(data) < 100
    pillow_limit = Image.MAX_IMAGE_PIXELS
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ImageError) as caught:
        to_rgb_array(data)
    message = str(caught.value)
    assert "100000x100000" in message and str(DEFAULT_MAX_PIXELS) in message and "--max-pixels" in message
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024  # KiB: no 30 GB buffer
    assert Image.MAX_IMAGE_PIXELS == pillow_limit  # Pillow's global is left as it was


def test_pillow_guard_never_fires_before_our_cap(monkeypatch):
    """Pillow warns above MAX_IMAGE_PIXELS and raises above twice that. With a (small,
    for the test) Pillow limit below our cap, the image is read: no error, no warning,
    and Pillow's limit is unchanged afterwards."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    warn_size = _save(Image.fromarray(smooth_image(40, 40)), "PNG")  # 1600 pixels: Pillow would warn
    error_size = _save(Image.fromarray(smooth_image(64, 64)), "PNG")  # 4096 pixels: Pillow would raise
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(error_size))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert to_rgb_array(warn_size).shape == (40, 40, 3)
        assert to_rgb_array(error_size, max_pixels=5000).shape == (64, 64, 3)
        with pytest.raises(ImageError, match="64x64 image .* exceeds the cap of 4000"):
            to_rgb_array(error_size, max_pixels=4000)
    assert Image.MAX_IMAGE_PIXELS == 1000


def test_the_cap_applies_to_pil_images_and_through_the_cli(tmp_path):
    with pytest.raises(ImageError, match="exceeds the cap of 100"):
        to_rgb_array(Image.new("RGB", (16, 16)), max_pixels=100)
    path = _write(tmp_path, "small", ".png", _save(Image.fromarray(smooth_image(16, 16)), "PNG"))
    result = _run("encode", path, "--max-pixels", 100)
    assert result.exit_code == 1 and "16x16" in result.stderr and "100" in result.stderr
    assert not path.with_suffix(".vqz").exists()
    assert _run("encode", path, "--max-pixels", 256, "-q", 1).exit_code == 0


# ---------------------------------------------------------------------------- bad inputs
def _truncated(fmt: str) -> bytes:
    rng = np.random.default_rng(0)
    data = _save(Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)), fmt)
    return data[: len(data) // 2]


def _real_vqz() -> bytes:
    return vqz.encode(smooth_image(16, 24, seed=4), quality=2)


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def unknown_model_vqz() -> bytes:
    """A real file whose model id says vqz-rvq8-f9 (same length), CRC fixed up so it parses."""
    data = _real_vqz()
    header, _ = unpack(data)
    new_id = header.model_id[:-1] + ("9" if header.model_id[-1] != "9" else "7")
    body = data[:-4].replace(header.model_id.encode(), new_id.encode(), 1)
    return _with_crc(body)


def newer_version_vqz() -> bytes:
    body = bytearray(_real_vqz()[:-4])
    body[4] = FORMAT_VERSION + 1
    return _with_crc(bytes(body))


# (name, command, file name, content: bytes maker, "dir", or None for a missing file, words the line must hold)
BAD = [
    ("missing", "encode", "missing.png", None, ["No such file"]),
    ("empty-directory", "encode", "photos", "dir", ["holds no image files"]),
    ("empty-file", "encode", "empty.png", lambda: b"", ["empty file"]),
    ("text-file", "encode", "notes.png", lambda: b"this is not an image\n" * 10, ["not an image"]),
    ("truncated-png", "encode", "cut.png", lambda: _truncated("PNG"), ["truncated"]),
    ("truncated-jpeg", "encode", "cutj.jpg", lambda: _truncated("JPEG"), ["truncated"]),
    ("bomb-png", "encode", "bomb.png", bomb_png, ["100000x100000", "exceeds the cap"]),
    ("unknown-model", "decode", "other.vqz", unknown_model_vqz, ["needs model", "not installed"]),
    ("newer-version", "decode", "new.vqz", newer_version_vqz, [f"version {FORMAT_VERSION + 1}"]),
    ("truncated-vqz", "decode", "cut.vqz", lambda: _real_vqz()[:-7], ["corrupt or truncated"]),
]


def _make_bad(tmp_path: Path, filename: str, content) -> Path:
    path = tmp_path / "in" / filename
    path.parent.mkdir(exist_ok=True)
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content())
    return path


@pytest.mark.parametrize("name, command, filename, content, words", BAD, ids=[b[0] for b in BAD])
def test_a_bad_input_gives_one_clear_line_and_no_output(tmp_path, name, command, filename, content, words):
    path = _make_bad(tmp_path, filename, content)
    out = tmp_path / "out"
    out.mkdir()
    result = _run(command, path, "-o", out)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("vqz: error: ") and str(path) in lines[0], lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert list(out.iterdir()) == []  # no output, no temporary file left behind


@pytest.mark.parametrize("name, command, filename, content, words", BAD, ids=[b[0] for b in BAD])
def test_a_bad_input_is_a_vqz_error_in_the_api(tmp_path, name, command, filename, content, words):
    path = _make_bad(tmp_path, filename, content)
    error = ImageError if command == "encode" else (FormatError, ModelError)
    with pytest.raises(error):
        vqz.encode(path) if command == "encode" else vqz.decode_array(path)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP", "TIFF", "BMP"])
def test_a_damaged_image_file_reads_or_is_an_image_error_never_anything_else(fmt):
    """Seeded truncations, byte changes and 0 / max words over a real file of each format."""
    import random

    rng = random.Random(fmt)
    data = _save(Image.fromarray(smooth_image(24, 32, seed=7)), fmt)
    outcomes = {"read": 0, "ImageError": 0}
    for _ in range(150):
        damaged = bytearray(data)
        kind = rng.randrange(3)
        if kind == 0:
            damaged = damaged[: rng.randrange(len(damaged))]
        elif kind == 1:
            for _ in range(rng.randint(1, 4)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        else:
            at = rng.randrange(len(damaged))
            damaged[at : at + 4] = rng.choice([b"\xff\xff\xff\xff", b"\0\0\0\0", b"\x7f\xff\xff\xff"])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rgb = to_rgb_array(bytes(damaged), max_pixels=1 << 22)
            assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
            outcomes["read"] += 1
        except ImageError:
            outcomes["ImageError"] += 1
    assert outcomes["ImageError"] > 0


def test_a_directory_is_an_image_error_in_the_api(tmp_path):
    with pytest.raises(ImageError, match="is a directory"):
        vqz.encode(tmp_path)


def test_a_batch_goes_on_past_bad_files_and_exits_1(tmp_path):
    good = []
    for i in range(2):
        good.append(tmp_path / "in" / f"good{i}.png")
        good[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(smooth_image(16, 24, seed=30 + i)).save(good[-1])
    bad = [_make_bad(tmp_path, filename, content) for _, command, filename, content, _ in BAD
           if command == "encode" and content != "dir"]
    out = tmp_path / "out"
    out.mkdir()
    result = _run("encode", good[0], *bad, good[1], "-o", out, "-q", 1)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == len(bad)
    for path, line in zip(bad, lines):  # in input order, each naming its file
        assert str(path) in line
    assert sorted(p.name for p in out.iterdir()) == ["good0.vqz", "good1.vqz"]

    decoded = tmp_path / "decoded"
    decoded.mkdir()
    bad_vqz = [_make_bad(tmp_path, filename, content) for _, command, filename, content, _ in BAD if command == "decode"]
    result = _run("decode", *bad_vqz, out / "good0.vqz", out / "good1.vqz", "-o", decoded)
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == len(bad_vqz)
    assert sorted(p.name for p in decoded.iterdir()) == ["good0.png", "good1.png"]


# ---------------------------------------------------------------------------- security
class _Trap:
    """Unpickling this creates a marker file: proof that a loader ran pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".pth", ".ckpt"])
def test_weights_load_only_from_safetensors_never_pickle(tmp_path, suffix):
    from vqz.codec.registry import load_model
    from vqz.codec.weights import load_weights

    marker = tmp_path / "pwned"
    evil = tmp_path / f"model{suffix}"
    evil.write_bytes(pickle.dumps({"state_dict": _Trap(marker)}))
    with pytest.raises(ModelError):
        load_weights(evil)
    with pytest.raises(ModelError):
        load_model(evil)
    result = _run("encode", _write(tmp_path, "img", ".png", _save(Image.new("RGB", (8, 8)), "PNG")), "--model", evil)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert not marker.exists()


def test_a_torch_zip_checkpoint_is_refused_too(tmp_path):
    import torch

    from vqz.codec.weights import load_weights

    path = tmp_path / "checkpoint.safetensors"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(ModelError):
        load_weights(path)


def test_batch_outputs_stay_inside_the_output_directory(tmp_path, monkeypatch):
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "out").mkdir()
    Image.fromarray(smooth_image(8, 8, seed=1)).save(tmp_path / "x.png")
    Image.fromarray(smooth_image(8, 8, seed=2)).save(work / "sub" / "y.png")
    monkeypatch.chdir(work)
    result = _run("encode", "../x.png", "sub/../../x.png", "sub/y.png", "-o", "out", "-q", 1)
    # ../x.png and sub/../../x.png are the same name: the second is skipped, not written elsewhere
    assert sorted(p.name for p in (work / "out").iterdir()) == ["x.vqz", "y.vqz"]
    assert not (tmp_path / "x.vqz").exists() and not (work / "x.vqz").exists()
    assert not (work / "sub" / "y.vqz").exists()
    assert result.exit_code == 1 and "would also be written" in result.stderr
    (work / "decoded").mkdir()
    result = _run("decode", "out/../out/x.vqz", "out/y.vqz", "-o", "decoded")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (work / "decoded").iterdir()) == ["x.png", "y.png"]
    assert not (work / "out" / "x.png").exists()


def test_an_output_symlink_is_replaced_not_followed(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "img.vqz").symlink_to(outside)
    source = _write(tmp_path, "img", ".png", _save(Image.fromarray(smooth_image(8, 8)), "PNG"))
    result = _run("encode", source, "-o", out)
    assert result.exit_code == 1 and "--force" in result.stderr  # it exists: refused without --force
    result = _run("encode", source, "-o", out, "--force", "-q", 1)
    assert result.exit_code == 0, result.output
    assert outside.read_bytes() == b"precious"
    assert not (out / "img.vqz").is_symlink() and (out / "img.vqz").read_bytes()[:4] == b"\x89VQZ"
