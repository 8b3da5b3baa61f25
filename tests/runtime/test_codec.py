"""The codec end to end with the bundled model: any size, every quality, exact model sharing."""

from __future__ import annotations

import copy

import numpy as np

from vqz.training.model import torch_model
import pytest
import torch

import vqz
from vqz.bitstream import unpack_file
from vqz.codec.pipeline import decode_bytes, decode_indices, encode_array, quality_range
from vqz.codec.tiling import to_uint8
from vqz.errors import FormatError, ImageError

from conftest import smooth_image, without_postfilter


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


@pytest.mark.parametrize("shape", [(1, 1), (17, 33), (64, 48), (1, 40), (40, 1), (9, 200)])
def test_round_trip_keeps_the_size(model, shape):
    image = smooth_image(*shape, seed=sum(shape))
    data, _ = encode_array(model, image, 2)
    decoded = decode_bytes(model, data)
    assert decoded.shape == image.shape and decoded.dtype == np.uint8


def test_quality_levels_are_at_least_four(model):
    assert len(quality_range(model)) >= 4


def test_higher_quality_costs_more_bits_and_gains_quality(model):
    image = smooth_image(96, 128, seed=5)
    sizes, scores = [], []
    for quality in quality_range(model):
        data, _ = encode_array(model, image, quality)
        sizes.append(len(data))
        scores.append(psnr(image, decode_bytes(model, data)))
    assert sizes == sorted(sizes)
    assert scores[-1] > scores[0] + 1.0


def test_decoding_a_prefix_of_stages_matches_encoding_at_that_quality(model):
    image = smooth_image(48, 64, seed=6)
    full, _ = encode_array(model, image, max(quality_range(model)))
    short, _ = encode_array(model, image, 2)
    assert np.array_equal(decode_bytes(model, full, stages=2), decode_bytes(model, without_postfilter(short)))



def test_encoding_is_deterministic(model):
    image = smooth_image(40, 56, seed=7)
    assert encode_array(model, image, 3)[0] == encode_array(model, image, 3)[0]


def test_coded_bits_match_the_model_estimate(model):
    image = smooth_image(128, 128, seed=8)
    _, stats = encode_array(model, image, max(quality_range(model)))
    written, estimate = sum(stats.payload_bits), sum(stats.estimated_bits)
    assert estimate <= written <= 1.01 * estimate + 64 * len(stats.payload_bits)


def test_invalid_quality_is_refused(model):
    with pytest.raises(ImageError, match="quality"):
        encode_array(model, smooth_image(8, 8), 0)


def test_public_api_accepts_arrays_pil_images_and_paths(tmp_path):
    from PIL import Image

    image = smooth_image(20, 30, seed=9)
    path = tmp_path / "in.png"
    Image.fromarray(image).save(path)
    from_array = vqz.encode(image, quality=2)
    assert vqz.encode(Image.fromarray(image), quality=2) == from_array
    assert vqz.encode(path, quality=2) == from_array
    decoded = vqz.decode(from_array)
    assert decoded.size == (30, 20) and decoded.mode == "RGB"
    info = vqz.read_info(from_array)
    assert (info.width, info.height, info.quality, info.total_bytes) == (30, 20, 2, len(from_array))


def test_grayscale_and_palette_images_are_converted():
    from PIL import Image

    gray = Image.fromarray(smooth_image(16, 16)[:, :, 0], "L")
    assert vqz.decode(vqz.encode(gray, quality=1)).mode == "RGB"
    assert vqz.decode(vqz.encode(gray.convert("P"), quality=1)).size == (16, 16)


def test_file_from_another_model_names_the_needed_model(model):
    from vqz.bitstream import pack, unpack

    header, payloads = unpack(encode_array(model, smooth_image(8, 8), 1)[0])
    from dataclasses import replace

    foreign = pack(replace(header, model_id="vqz-other-model"), payloads)
    with pytest.raises(vqz.ModelError, match="vqz-other-model"):
        vqz.decode(foreign)


def test_corrupt_payload_is_refused(model):
    data = bytearray(encode_array(model, smooth_image(16, 16), 2)[0])
    data[-10] ^= 0x20
    with pytest.raises(FormatError):
        decode_bytes(model, bytes(data))


def test_alpha_plane_is_restored_exactly(model):
    from vqz.codec.pipeline import decode_image

    image = smooth_image(21, 34, seed=13)
    alpha = (np.arange(21 * 34).reshape(21, 34) % 256).astype(np.uint8)
    data, _ = encode_array(model, image, 2, alpha=alpha)
    rgb, decoded_alpha = decode_image(model, data)
    assert rgb.shape == image.shape
    assert np.array_equal(decoded_alpha, alpha)
    assert decode_image(model, encode_array(model, image, 2)[0])[1] is None



def test_runtime_decode_matches_the_pytorch_network_in_the_default_layout(model):
    """The runtime's synthesis graph (ONNX Runtime) and the PyTorch network, in its default
    (not channels_last) layout, give the same image within one level."""
    image = smooth_image(64, 96, seed=11)
    data, _ = encode_array(model, image, 4)
    assert torch_model(model).g_s[0].weight.is_contiguous(memory_format=torch.channels_last)
    plain_g_s = copy.deepcopy(torch_model(model).g_s).to(memory_format=torch.contiguous_format)
    parsed = unpack_file(data)
    indices = torch.from_numpy(decode_indices(model, parsed.header, parsed.payloads))[:, None]
    with torch.no_grad():
        latent = torch_model(model).quantizer.dequantize(indices).contiguous()
        plain = to_uint8(plain_g_s(latent).numpy())
    fast = decode_bytes(model, without_postfilter(data))  # the synthesis alone
    assert not latent.is_contiguous(memory_format=torch.channels_last)
    assert fast.shape == plain.shape == image.shape
    assert np.abs(fast.astype(int) - plain.astype(int)).max() <= 1
