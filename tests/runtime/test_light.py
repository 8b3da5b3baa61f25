"""The light transforms: ``--fast`` decodes stage-only files with the light synthesis (the same values tiled or
whole, as the torch network), residual levels and models without one exactly as before; effort 0 encodes with
the light analysis head (normal files, tiled = whole), every other effort byte for byte as before."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import photo_crop, smooth_image

import vqz
from vqz.api import decode_file
from vqz.codec import light as light_module
from vqz.codec.light import LightConfig
from vqz.errors import ModelError

CONFIG = LightConfig(latent_dim=64, channels=128, head_blocks=1, tail_channels=(24, 16))


@pytest.fixture(scope="module")
def light_files(tmp_path_factory, model):
    """A light synthesis (random tail, the model's first layers) and a light analysis head (the model's own
    first layers, so effort 0 reproduces effort 1's latent), exported to a folder for VQZ_MODEL_PATH."""
    from vqz.training.export import export_light
    from vqz.training.light import light_analysis_head, light_synthesis
    from vqz.training.loop import save_checkpoint
    from vqz.training.model import torch_model

    folder = tmp_path_factory.mktemp("light")
    torch.manual_seed(0)
    network = light_synthesis(CONFIG)
    network[0].load_state_dict(torch_model(model).g_s[0].state_dict())
    synthesis_ckpt = folder / "light-s.ckpt"
    save_checkpoint(synthesis_ckpt, {"g_s": network}, {}, 1,
                    {"config": "{}", "light_config": CONFIG.to_json(), "base_model_id": model.model_id})
    head = light_analysis_head((128, 128, 128))
    head.load_state_dict(torch_model(model).g_a[:6].state_dict())
    analysis_ckpt = folder / "light-a.ckpt"
    save_checkpoint(analysis_ckpt, {"g_a": head}, {}, 1,
                    {"config": "{}", "light_role": "analysis", "light_widths": "[128, 128, 128]",
                     "base_model_id": model.model_id})
    installed = folder / "installed"
    installed.mkdir()
    synthesis = export_light(synthesis_ckpt, installed / "test-light.safetensors", "test-light")
    analysis = export_light(analysis_ckpt, installed / "test-lighta.safetensors", "test-lighta")
    return installed, network.eval(), synthesis, analysis


@pytest.fixture
def with_light(light_files, monkeypatch):
    monkeypatch.setenv("VQZ_MODEL_PATH", str(light_files[0]))
    light_module._installed.cache_clear()
    yield light_files
    light_module._installed.cache_clear()


@pytest.fixture
def without_light(monkeypatch, tmp_path, model):
    """No light transform for the default model (only those of VQZ_MODEL_PATH and the bundled ones count)."""
    monkeypatch.setattr(light_module, "_installed", lambda: ())
    yield


def test_export_writes_the_weights_and_graphs(light_files):
    _, _, synthesis, analysis = light_files
    assert [p.name for p in synthesis] == ["test-light.safetensors", "test-light.synthesis.onnx",
                                           "test-light.synthesis-head.onnx", "test-light.synthesis-tail.onnx"]
    assert [p.name for p in analysis] == ["test-lighta.safetensors", "test-lighta.analysis-head.onnx"]


def test_the_runtime_light_synthesis_is_the_torch_network(with_light, model):
    from vqz.codec.vq import dequantize

    _, network, _, _ = with_light
    indices = np.random.default_rng(0).integers(0, 512, size=(3, 12, 10))
    latent = np.ascontiguousarray(dequantize(indices, model.codebooks).transpose(2, 0, 1)[None])
    runtime = light_module.light_for(model).synthesis(model)(latent)
    with torch.no_grad():
        reference = network(torch.from_numpy(latent)).numpy()
    assert np.abs(runtime - reference).max() < 1e-4


def test_a_large_image_tiles_to_the_same_pixels(with_light, model):
    from vqz.codec import pipeline
    from vqz.codec.tiling import to_uint8
    from vqz.codec.vq import dequantize

    transform = light_module.light_for(model).synthesis(model)
    assert transform.margins == (4, 2) and transform.split is not None
    indices = np.random.default_rng(1).integers(0, 512, size=(2, 140, 130))  # 1.16 MP: tiled in two passes
    latent = np.ascontiguousarray(dequantize(indices, model.codebooks).transpose(2, 0, 1)[None])
    assert np.array_equal(pipeline.synthesize(model, indices, transform), to_uint8(transform(latent)))


def test_fast_decodes_a_stage_only_file_with_the_light_synthesis_and_no_filter(with_light, model):
    from vqz.bitstream import unpack_file
    from vqz.codec.pipeline import decode_indices, render

    data = vqz.encode(photo_crop(), quality=3)
    parsed = unpack_file(data)
    indices = decode_indices(model, parsed.header, parsed.payloads)
    expected = render(model, indices, parsed.header.height, parsed.header.width,
                      light_module.light_for(model).synthesis(model))
    decoded = decode_file(data, fast=True)
    assert decoded.fast and np.array_equal(decoded.pixels, expected)
    assert not np.array_equal(decoded.pixels, vqz.decode_array(data))
    assert not decode_file(data).fast


def test_a_residual_level_decodes_as_before_when_fast(with_light):
    data = vqz.encode(photo_crop(), quality=8)
    decoded = decode_file(data, fast=True)
    assert not decoded.fast and np.array_equal(decoded.pixels, vqz.decode_array(data))
    assert decode_file(data, stages=2, fast=True).fast  # its --stages preview has no residual layer


def test_a_model_without_a_light_synthesis_decodes_as_before(without_light):
    data = vqz.encode(photo_crop(), quality=2)
    decoded = decode_file(data, fast=True)
    assert not decoded.fast and np.array_equal(decoded.pixels, vqz.decode_array(data))


def test_fast_must_be_a_bool():
    with pytest.raises(TypeError):
        vqz.decode_array(vqz.encode(photo_crop(), quality=1), fast="yes")


def test_the_cli_decodes_fast_and_notes_where_it_does_not_apply(with_light, tmp_path):
    from vqz.cli.app import app

    low, high = tmp_path / "low.vqz", tmp_path / "high.vqz"
    low.write_bytes(vqz.encode(photo_crop(), quality=1))
    high.write_bytes(vqz.encode(photo_crop(), quality=8))
    result = CliRunner().invoke(app, ["decode", str(low), str(high), "-o", str(tmp_path), "--fast"])
    assert result.exit_code == 0, result.output
    assert "full synthesis" in result.output and "high.vqz" in result.output and "low.vqz" not in result.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "low.png")), vqz.decode_array(low.read_bytes(), fast=True))


def test_the_cli_refuses_fast_with_realism_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "vqz", "decode", str(tmp_path / "x.vqz"), "--fast", "--realism", "1"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "--fast" in result.stderr


def test_the_pillow_plugin_takes_fast(with_light):
    data = vqz.encode(photo_crop(), quality=2)
    with Image.open(io.BytesIO(data)) as image:
        image.fast = True
        image.load()
        assert np.array_equal(np.asarray(image), vqz.decode_array(data, fast=True))


def test_effort_zero_runs_the_light_analysis_head(with_light, model, monkeypatch):
    """The test head is the model's own first layers, so its latent is the model's: same file bytes (small and
    tiled); the light path really ran (the installed head's graph is what effort 0 used)."""
    from vqz.codec import pipeline, tiling

    image = smooth_image(48, 72, seed=2)
    assert vqz.encode(image, quality=4, effort=0) == vqz.encode(image, quality=4, effort=1)
    monkeypatch.setattr(tiling, "MAX_UNTILED_PIXELS", 128 * 128)
    large = smooth_image(400, 328, seed=3)  # split tiles
    light = pipeline.encode_latent(model, large, light=True)
    assert np.abs(light - pipeline.encode_latent(model, large)).max() < 1e-3
    assert light_module.light_analysis_for(model).analysis(model).head._session is not None


def test_effort_zero_without_a_light_analysis_is_effort_one(without_light):
    image = smooth_image(40, 56, seed=5)
    assert vqz.encode(image, quality=3, effort=0) == vqz.encode(image, quality=3, effort=1)


def test_a_bad_light_configuration_is_a_model_error():
    assert LightConfig.from_json(CONFIG.to_json()) == CONFIG
    for text in ("{}", '{"latent_dim": 64, "channels": 128, "head_blocks": 1, "tail_channels": [3]}', "nope"):
        with pytest.raises(ModelError):
            LightConfig.from_json(text)


def test_models_lists_the_light_transforms(with_light):
    from vqz.cli.app import app

    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0
    assert "light synthesis test-light" in result.output and "light analysis test-lighta" in result.output


def test_a_training_checkpoint_naming_the_model_does_not_shadow_it(tmp_path, monkeypatch, model):
    """A safetensors file with a ``model_id`` but not the weights format (a run's checkpoint in a folder on
    VQZ_MODEL_PATH) is not taken for the model."""
    from safetensors.numpy import save_file

    from vqz.codec import registry

    save_file({"x": np.zeros(1, np.float32)}, str(tmp_path / "light.safetensors"),
              metadata={"model_id": model.model_id, "config": '{"data": "photos"}'})
    monkeypatch.setenv("VQZ_MODEL_PATH", str(tmp_path))
    assert [e.path for e in registry.available_models() if e.model_id == model.model_id] == [model.path]
    assert vqz.decode_array(vqz.encode(photo_crop(), quality=1)).shape == photo_crop().shape
