"""The Pillow plugin, driven only through Pillow's own API (open, load, save, registries)."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

import vqz
from vqz.bitstream import pack, unpack
from vqz.pillow_plugin import VqzImageFile

from conftest import smooth_image


@pytest.fixture(scope="module")
def picture() -> Image.Image:
    return Image.fromarray(smooth_image(24, 40, seed=3))


@pytest.fixture
def vqz_file(tmp_path, picture) -> Path:
    path = tmp_path / "picture.vqz"
    picture.save(path, quality=3)
    return path


def test_import_vqz_registers_the_plugin_without_importing_torch():
    code = (
        "import sys, vqz\n"
        "from PIL import Image\n"
        "assert Image.registered_extensions()['.vqz'] == 'VQZ'\n"
        "assert 'torch' not in sys.modules, 'import vqz must stay cheap'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_format_is_registered_for_open_save_extension_and_mime():
    assert "VQZ" in Image.OPEN and "VQZ" in Image.SAVE
    assert Image.registered_extensions()[".vqz"] == "VQZ"
    assert Image.MIME["VQZ"] == "image/x-vqz"


def test_save_writes_the_same_bytes_as_the_api(vqz_file, picture):
    assert vqz_file.read_bytes() == vqz.encode(picture, quality=3)


def test_open_reads_the_header_and_load_decodes(vqz_file):
    with Image.open(vqz_file) as image:
        assert image.format == "VQZ" and image.get_format_mimetype() == "image/x-vqz"
        assert image.size == (40, 24) and image.mode == "RGB"
        assert image.info["quality"] == 3 and image.info["stages"] == 3
        image.load()
        pixels = np.asarray(image)
    assert np.array_equal(pixels, vqz.decode_array(vqz_file.read_bytes()))


def test_open_and_save_work_on_file_objects(picture):
    buffer = io.BytesIO()
    picture.save(buffer, format="VQZ", quality=2)
    buffer.seek(0)
    with Image.open(buffer) as image:
        assert image.format == "VQZ" and image.info["quality"] == 2
        assert image.convert("L").size == (40, 24)


def test_save_takes_a_rate_control_target(tmp_path, picture):
    path = tmp_path / "target.vqz"
    picture.save(path, target_bpp=1e9)
    assert vqz.read_info(path).quality == max(vqz.quality_levels())


def test_save_takes_a_target_size(tmp_path, picture):
    sizes = [len(vqz.encode(picture, quality=q)) for q in (2, 3)]
    path = tmp_path / "sized.vqz"
    picture.save(path, target_size=sum(sizes) // 2)
    assert sizes[0] < path.stat().st_size <= sum(sizes) // 2
    with Image.open(path) as image:
        assert image.info["quality"] == 3 and image.info["coded_cells"] > 0
        assert image.info["partway"] == vqz.read_info(path).partway in ("order", "mask")
        assert image.info.get("mask_blocks") == vqz.read_info(path).mask_blocks
        image.load()
    with pytest.raises(ValueError, match="at most one"):
        picture.save(tmp_path / "x.vqz", target_size=1000, quality=2)


def test_save_converts_grayscale_to_rgb(tmp_path, picture):
    path = tmp_path / "gray.vqz"
    picture.convert("L").save(path, quality=2)
    with Image.open(path) as image:
        assert image.mode == "RGB" and image.size == picture.size


def test_the_class_refuses_a_file_without_the_magic(tmp_path):
    # Pillow's own plugin tests: constructing the image class on another format is a SyntaxError.
    other = tmp_path / "other.png"
    Image.new("RGB", (4, 4)).save(other)
    with pytest.raises(SyntaxError):
        VqzImageFile(str(other))


@pytest.mark.parametrize("content", [b"", b"\x89VQ", b"hello world, not an image"])
def test_an_invalid_file_is_not_identified(tmp_path, content):
    path = tmp_path / "invalid.vqz"
    path.write_bytes(content)
    with pytest.raises(UnidentifiedImageError):
        Image.open(path)


@pytest.mark.parametrize("keep", [4, 5, 8, 30, 45, -1])
def test_a_truncated_file_raises_oserror_on_open(vqz_file, keep):
    data = vqz_file.read_bytes()
    truncated = vqz_file.with_name("truncated.vqz")
    truncated.write_bytes(data[:keep])
    with pytest.raises(OSError, match="vqz"):
        Image.open(truncated)


def test_a_corrupt_file_names_the_crc(vqz_file):
    data = bytearray(vqz_file.read_bytes())
    data[len(data) // 2] ^= 0x10
    with pytest.raises(OSError, match="CRC"):
        Image.open(io.BytesIO(bytes(data)))


def test_a_file_from_an_unknown_model_opens_but_does_not_load(vqz_file):
    header, payloads = unpack(vqz_file.read_bytes())
    alien = pack(dataclasses.replace(header, model_hash=bytes(8)), payloads)
    with Image.open(io.BytesIO(alien)) as image:
        assert image.size == (40, 24)
        with pytest.raises(OSError, match="model"):
            image.load()


def test_rgba_round_trips_through_pillow_with_its_alpha(tmp_path):
    path = tmp_path / "alpha.vqz"
    rgba = Image.new("RGBA", (8, 6), (10, 200, 30, 77))
    rgba.save(path, quality=2)
    with Image.open(path) as image:
        assert image.mode == "RGBA"
        assert np.array_equal(np.asarray(image)[:, :, 3], np.full((6, 8), 77, np.uint8))


@pytest.mark.parametrize("quality", [0, 99, 2.5, "high"])
def test_saving_with_a_bad_quality_raises_valueerror(tmp_path, picture, quality):
    path = tmp_path / "bad.vqz"
    with pytest.raises(ValueError, match="quality"):
        picture.save(path, quality=quality)
    assert not path.exists()
