"""The fast PNG writer (the default ``vqz decode`` PNG output): any reader gets the exact pixels and the
metadata Pillow's own writer would have stored."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms

from vqz.codec.image import FAST_PNG_LEVEL, encode_image_bytes
from vqz.codec.metadata import Metadata
from vqz.codec.png_writer import IDAT_BYTES, png_bytes


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    out, i = [], 8
    while i < len(data):
        n = int.from_bytes(data[i : i + 4], "big")
        kind, body, crc = data[i + 4 : i + 8], data[i + 8 : i + 8 + n], data[i + 8 + n : i + 12 + n]
        assert int.from_bytes(crc, "big") == zlib.crc32(kind + body), kind
        out.append((kind, body))
        i += 12 + n
    return out


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 7, 3), (9, 1, 4), (37, 53, 3), (64, 33, 4)])
def test_pixels_exact(shape):
    array = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    with Image.open(io.BytesIO(png_bytes(array))) as image:
        assert image.mode == ("RGBA" if shape[2] == 4 else "RGB")
        assert np.array_equal(np.asarray(image), array)


def test_chunk_layout_and_large_image_split():
    rng = np.random.default_rng(1)
    array = rng.integers(0, 256, (700, 700, 3), dtype=np.uint8)  # incompressible: more than one IDAT chunk
    data = png_bytes(array)
    kinds = [k for k, _ in _chunks(data)]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND"
    assert kinds.count(b"IDAT") == -(-sum(len(b) for k, b in _chunks(data) if k == b"IDAT") // IDAT_BYTES) >= 2
    with Image.open(io.BytesIO(data)) as image:
        assert np.array_equal(np.asarray(image), array)


def test_metadata_as_pillow_writes_it():
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif_image = Image.new("RGB", (1, 1))
    exif = exif_image.getexif()
    exif[0x010F] = "vqz camera"
    exif_block = exif.tobytes()[6:] if exif.tobytes().startswith(b"Exif\0\0") else exif.tobytes()
    xmp = '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/>é</x:xmpmeta>'.encode()
    array = np.random.default_rng(2).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    ours = encode_image_bytes(array, "PNG", Metadata(exif_block, xmp, icc), png_level=FAST_PNG_LEVEL)
    pillows = encode_image_bytes(array, "PNG", Metadata(exif_block, xmp, icc), png_level=6)
    with Image.open(io.BytesIO(ours)) as a, Image.open(io.BytesIO(pillows)) as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))
        assert a.info["icc_profile"] == b.info["icc_profile"] == icc
        assert a.info["xmp"] == b.info["xmp"]
        assert a.getexif()[0x010F] == b.getexif()[0x010F] == "vqz camera"


def test_refuses_other_arrays():
    for bad in (np.zeros((4, 4), np.uint8), np.zeros((4, 4, 2), np.uint8), np.zeros((4, 4, 3), np.uint16),
                np.zeros((0, 4, 3), np.uint8)):
        with pytest.raises(ValueError):
            png_bytes(bad)


def test_default_level_is_the_fast_writer_and_smaller_levels_differ():
    array = np.random.default_rng(3).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    assert encode_image_bytes(array) == png_bytes(array)
    assert encode_image_bytes(array, png_level=9) != png_bytes(array)
