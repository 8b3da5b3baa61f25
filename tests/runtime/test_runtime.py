"""The coding runtime (numpy, constriction, ONNX Runtime) against the PyTorch training world.

* the runtime imports neither torch nor compressai;
* its pieces equal their PyTorch / CompressAI counterparts (padding, quantizer, rounding);
* its transforms are the exported graphs of the very weights file (bound by its SHA-256);
* the export traces any architecture the configuration builds;
* training-world commands say in one line that their extra is missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from vqz.training.model import torch_model
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import vqz
from vqz.cli.app import app
from vqz.codec.padding import compute_padding, pad_rgb, to_input
from vqz.codec.tiling import to_uint8
from vqz.codec.vq import dequantize, quantize
from vqz.errors import ModelError

from conftest import DATA, KODAK, smooth_image

ROOT = Path(__file__).resolve().parents[2]


def _run_python(code: str) -> dict:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_decoding_and_encoding_import_neither_torch_nor_compressai():
    golden = DATA / "golden-vqz-rvq8-f8-q3.vqz"
    loaded = _run_python(f"""
import json, sys, vqz
vqz.decode({str(golden)!r})
vqz.encode({str(DATA / "golden.png")!r}, quality=2)
print(json.dumps(sorted(m for m in ("torch", "compressai", "torchvision") if m in sys.modules)))
""")
    assert loaded == []


def test_reading_a_header_loads_no_model_and_no_onnxruntime():
    golden = DATA / "golden-vqz-rvq8-f8-q3.vqz"
    loaded = _run_python(f"""
import json, sys
from vqz.cli.app import app
from typer.testing import CliRunner
assert CliRunner().invoke(app, ["info", {str(golden)!r}]).exit_code == 0
print(json.dumps(sorted(m for m in ("torch", "onnxruntime", "vqz.codec.weights") if m in sys.modules)))
""")
    assert loaded == []


@pytest.mark.parametrize("div", [1, 2, 8, 16, 64])
def test_padding_is_compressais(div):
    from vqz.training.compressai_layers import compute_padding as compressai_padding

    for height, width in [(1, 1), (7, 9), (8, 8), (17, 33), (512, 768), (1001, 3)]:
        assert compute_padding(height, width, min_div=div) == compressai_padding(height, width, min_div=div)


def test_padded_input_is_torchs_replicate_padding():
    rgb = smooth_image(21, 30, seed=3)
    pad, _ = compute_padding(21, 30, min_div=8)
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float().div_(255.0)
    expected = torch.nn.functional.pad(x, pad, mode="replicate").numpy()
    assert np.array_equal(to_input(pad_rgb(rgb, 8)), expected)


def test_numpy_quantizer_matches_the_pytorch_quantizer(model):
    rng = np.random.default_rng(0)
    latent = (rng.standard_normal((12, 20, model.config.latent_dim)) * 0.5).astype(np.float32)
    quantizer = torch_model(model).quantizer
    expected = quantizer.encode(torch.from_numpy(latent.transpose(2, 0, 1)[None].copy()), 8)[:, 0].numpy()
    indices = quantize(latent, model.codebooks, 8)
    assert (indices != expected).mean() < 1e-3
    rebuilt = quantizer.dequantize(torch.from_numpy(indices)[:, None])[0].permute(1, 2, 0).numpy()
    assert np.array_equal(dequantize(indices, model.codebooks), rebuilt)


def test_rounding_to_uint8_is_torchs():
    x = np.linspace(-0.1, 1.1, 3 * 8 * 501, dtype=np.float32).reshape(1, 3, 8, 501)
    x[0, 0, 0, :4] = [0.5 / 255, 1.5 / 255, 2.5 / 255, 254.5 / 255]
    expected = torch.from_numpy(x).clamp(0, 1).mul(255.0).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
    assert np.array_equal(to_uint8(x), expected)


def _crops() -> dict[str, np.ndarray]:
    if not KODAK.is_dir():
        return {"smooth": smooth_image(96, 136, seed=4)}
    with Image.open(KODAK / "kodim07.png") as image:
        return {"kodim07": np.asarray(image.convert("RGB"))[64:256, 64:320].copy()}


@pytest.mark.parametrize("quality", [3, 8])
def test_runtime_and_pytorch_paths_agree_on_a_crop(model, quality):
    """Same indices (or a near-tie flip at most one in a thousand), pixels within one level,
    and each path's file decodes with the other."""
    for name, rgb in _crops().items():
        runtime = vqz.encode(rgb, quality=quality, model=model)
        x = torch.from_numpy(to_input(pad_rgb(rgb, model.config.downsampling)))
        from vqz.codec.levels import level_plan

        torch_indices = torch_model(model).encode_indices(x, level_plan(model, quality).stages)[:, 0].numpy()
        from vqz.bitstream import unpack
        from vqz.codec.pipeline import decode_indices, synthesize

        header, payloads = unpack(runtime)
        runtime_indices = decode_indices(model, header, payloads)
        assert (runtime_indices != torch_indices).mean() <= 1e-3, name
        with torch.no_grad():
            torch_pixels = torch_model(model).decode_indices_uint8(torch.from_numpy(runtime_indices)[:, None]).numpy()
        diff = np.abs(synthesize(model, runtime_indices).astype(int) - torch_pixels.astype(int)).max()
        assert diff <= 1, name


def _copy_model(tmp_path: Path, model) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    for path in model.path.parent.glob(f"{model.path.stem}.*"):
        shutil.copy(path, folder / path.name)
    return folder / model.path.name


def test_a_graph_runs_only_with_the_weights_it_was_exported_from(tmp_path, model):
    from vqz.codec.weights import load_weights

    weights = _copy_model(tmp_path, model)
    graph = weights.with_name(f"{weights.stem}.synthesis.onnx")
    data = graph.read_bytes()
    sha = model.analysis.sha256.encode()
    assert data.count(sha) == 1
    graph.write_bytes(data.replace(sha, b"0" * len(sha)))
    with pytest.raises(ModelError, match="not exported from these weights"):
        load_weights(weights).synthesis(np.zeros((1, model.config.latent_dim, 2, 2), np.float32))
    graph.unlink()
    with pytest.raises(ModelError, match="missing"):
        load_weights(weights).synthesis(np.zeros((1, model.config.latent_dim, 2, 2), np.float32))
    # the other graph is untouched: encoding's analysis still runs
    assert load_weights(weights).analysis(np.zeros((1, 3, 16, 16), np.float32)).shape == (1, model.config.latent_dim, 2, 2)


def test_export_traces_any_architecture(tmp_path):
    """A model of another shape (fewer channels, 4x downsampling, 3 stages), random weights:
    the exported graphs on ONNX Runtime compute what the PyTorch network computes."""
    from vqz.codec.config import ModelConfig
    from vqz.training.export import export_graphs
    from vqz.training.model import VQCodecModel
    from vqz.codec.weights import load_weights
    from vqz.training.model import save_weights

    torch.manual_seed(0)
    config = ModelConfig(channels=16, latent_dim=6, downsampling_log2=2, num_stages=3, codebook_size=8)
    network = VQCodecModel(config).eval()
    path = tmp_path / "tiny.safetensors"
    save_weights(path, network, "tiny")
    before = path.read_bytes()
    assert len(export_graphs(path)) == 6  # the whole transforms, and their heads and tails for large images
    assert path.read_bytes() == before  # the identity is untouched
    loaded = load_weights(path)
    x = torch.rand(1, 3, 24, 36)
    with torch.no_grad():
        latent = network.g_a(x)
        image = network.g_s(latent)
    assert np.allclose(loaded.analysis(x.numpy()), latent.numpy(), atol=1e-4)
    assert np.allclose(loaded.synthesis(latent.contiguous().numpy()), image.numpy(), atol=1e-4)


def test_export_model_cli_writes_graphs_for_a_weights_file(tmp_path, model):
    weights = _copy_model(tmp_path, model)
    for graph in weights.parent.glob("*.onnx"):
        graph.unlink()
    result = CliRunner().invoke(app, ["export-model", str(weights)])
    assert result.exit_code == 0, result.output
    roles = ["analysis", "analysis-head", "analysis-tail", "synthesis", "synthesis-head", "synthesis-tail"]
    assert sorted(p.name for p in weights.parent.glob("*.onnx")) == sorted(f"{weights.stem}.{r}.onnx" for r in roles)
    from vqz.codec.weights import load_weights

    data = vqz.encode(smooth_image(32, 40, seed=1), quality=3, model=load_weights(weights))
    assert data == vqz.encode(smooth_image(32, 40, seed=1), quality=3, model=model)


@pytest.mark.parametrize("argv, line", [
    (["train", "configs/default.toml"], "vqz train: needs the training extra: pip install 'vqz[train]'"),
    (["export-model", "codec/weights/vqz-rvq8-f8.safetensors"],
     "vqz export-model: needs the training extra: pip install 'vqz[train]'"),
])
def test_training_commands_say_in_one_line_that_the_extra_is_missing(monkeypatch, argv, line):
    import vqz.cli.extras as extras

    monkeypatch.setattr(extras.importlib.util, "find_spec", lambda name: None)
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 1
    assert result.output.strip() == line
