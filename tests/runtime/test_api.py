"""The public Python API under ``vqz``: inputs it takes, what it returns, the errors it raises."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import vqz
from vqz.errors import FormatError, ImageError, ModelError, VqzError

from conftest import smooth_image


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return smooth_image(20, 30, seed=9)


@pytest.fixture(scope="module")
def data(image) -> bytes:
    return vqz.encode(image, quality=2)


def test_encode_accepts_an_array_a_pil_image_a_path_and_file_bytes(tmp_path, image, data):
    path = tmp_path / "in.png"
    Image.fromarray(image).save(path)
    assert vqz.encode(Image.fromarray(image), quality=2) == data
    assert vqz.encode(path, quality=2) == data
    assert vqz.encode(str(path), quality=2) == data
    assert vqz.encode(path.read_bytes(), quality=2) == data


def test_encode_defaults_to_the_default_quality(image):
    assert vqz.read_info(vqz.encode(image)).quality == vqz.DEFAULT_QUALITY


def test_decode_accepts_bytes_buffers_and_paths(tmp_path, data):
    path = tmp_path / "a.vqz"
    path.write_bytes(data)
    expected = vqz.decode_array(data)
    assert expected.shape == (20, 30, 3) and expected.dtype == np.uint8
    for source in (bytearray(data), memoryview(data), path, str(path)):
        assert np.array_equal(vqz.decode_array(source), expected)
    picture = vqz.decode(path)
    assert isinstance(picture, Image.Image) and picture.mode == "RGB" and picture.size == (30, 20)
    assert np.array_equal(np.asarray(picture), expected)


def test_decode_with_fewer_stages_is_the_lower_quality_image(image):
    from conftest import without_postfilter

    full = vqz.encode(image, quality=3)
    unfiltered = without_postfilter(vqz.encode(image, quality=1))  # its stage, without the filter its file may ask for
    assert np.array_equal(vqz.decode_array(full, stages=1), vqz.decode_array(unfiltered))
    with pytest.raises(ValueError, match="stages"):
        vqz.decode_array(full, stages=0)


def test_read_info_reports_the_header_without_a_model(data):
    info = vqz.read_info(data)
    assert (info.width, info.height, info.quality, info.stages) == (30, 20, 2, 2)
    assert info.total_bytes == len(data) == info.header_bytes + sum(info.payload_bytes)
    assert info.bpp == pytest.approx(8 * len(data) / (30 * 20))
    assert info.to_dict()["model_id"] == info.model_id == vqz.load_model().model_id


def test_load_model_returns_the_cached_default(model):
    assert vqz.load_model() is model and vqz.load_model(model.model_id) is model
    assert list(vqz.quality_levels()) == list(range(1, len(vqz.quality_levels()) + 1))
    with pytest.raises(ModelError, match="not installed"):
        vqz.load_model("no-such-model")


def test_encode_takes_an_already_loaded_model(model, image, data):
    assert vqz.encode(image, quality=2, model=model) == data


@pytest.mark.parametrize("source", [b"", b"junk", b"\x89VQZ\x01\x00"])
def test_bad_data_raises_format_errors(source):
    with pytest.raises(FormatError):
        vqz.decode(source)
    with pytest.raises(FormatError):
        vqz.read_info(source)


def test_a_missing_file_raises_a_vqz_error(tmp_path):
    with pytest.raises(VqzError, match="cannot read"):
        vqz.read_info(tmp_path / "missing.vqz")
    with pytest.raises(ImageError):
        vqz.encode(tmp_path / "missing.png")


def test_bad_images_and_arguments_are_refused(image):
    with pytest.raises(ImageError, match="uint8"):
        vqz.encode(image.astype(np.float32))
    with pytest.raises(ImageError, match="shape"):
        vqz.encode(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ImageError, match="quality"):
        vqz.encode(image, quality=0)
    with pytest.raises(TypeError):
        vqz.encode(image, quality=2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        vqz.decode(12)  # type: ignore[arg-type]


def test_the_api_is_listed_on_the_package():
    for name in ("encode", "decode", "decode_array", "read_info", "load_model", "quality_levels", "VqzInfo"):
        assert name in vqz.__all__ and name in dir(vqz) and callable(getattr(vqz, name))
    with pytest.raises(AttributeError):
        vqz.no_such_function  # noqa: B018


def test_the_api_round_trips_through_a_png_buffer(data):
    buffer = io.BytesIO()
    vqz.decode(data).save(buffer, format="PNG")
    assert vqz.encode(buffer.getvalue(), quality=2) == vqz.encode(vqz.decode_array(data), quality=2)


def test_rgba_images_and_arrays_keep_their_alpha_exactly(image):
    alpha = (np.arange(image.shape[0] * image.shape[1]).reshape(image.shape[:2]) % 251).astype(np.uint8)
    rgba = np.concatenate([image, alpha[:, :, None]], axis=2)
    for source in (rgba, Image.fromarray(rgba, "RGBA")):
        data = vqz.encode(source, quality=2)
        assert vqz.read_info(data).alpha_bytes > 0
        decoded = vqz.decode(data)
        assert decoded.mode == "RGBA"
        assert np.array_equal(np.asarray(decoded)[:, :, 3], alpha)
    assert vqz.read_info(vqz.encode(image, quality=2)).alpha_bytes == 0
