"""Claims about the vqz model's own training path: train, resume, no-validation edge, export with tables."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from vqz.cli.app import app
from vqz.codec.config import ModelConfig
from vqz.training.model import VQCodecModel
from vqz.codec.pipeline import decode_bytes, encode_array
from vqz.training.train import TrainConfig, validate
from vqz.codec.weights import load_weights
from vqz.errors import VqzError

from conftest import write_training_images

FRACTION = 0.3
runner = CliRunner()
TINY_MODEL = {"channels": 16, "latent_dim": 4, "downsampling_log2": 2, "num_stages": 3, "codebook_size": 8}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Smooth random photos-like images: three for training, one held out."""
    folder = tmp_path_factory.mktemp("train-images")
    return write_training_images(folder, FRACTION)


def _config_file(tmp_path: Path, data: Path, steps: int) -> Path:
    model = "\n".join(f"{k} = {v}" for k, v in TINY_MODEL.items())
    text = (f'data = "{data}"\nout = "{tmp_path / "run"}"\nmodel_id = "tiny"\ncrop = 32\nbatch = 2\n'
            f"steps = {steps}\nwarmup_steps = 2\nvalidate_every = 2\nvalidation_fraction = {FRACTION}\n"
            f"checkpoint_minutes = 100.0\n\n[model]\n{model}\n")
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    return path


def test_train_resume_and_export_give_a_model_that_codes_images(data_dir: Path, tmp_path: Path) -> None:
    config = _config_file(tmp_path, data_dir, steps=4)
    assert runner.invoke(app, ["train", str(config), "--quiet"]).exit_code == 0
    run = tmp_path / "run"
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == [2, 4] and rows[-1]["phase"] == "vq"
    # resume continues from step 4 (the log grows, the old rows stay)
    assert runner.invoke(app, ["train", str(config), "--quiet", "--resume", "--steps", "6"]).exit_code == 0
    assert [int(r["step"]) for r in csv.DictReader((run / "log.csv").open())] == [2, 4, 6]
    weights_path = tmp_path / "tiny.safetensors"
    result = runner.invoke(app, ["export-model", str(run), "-o", str(weights_path)])
    assert result.exit_code == 0, result.output
    weights = load_weights(weights_path)
    assert weights.entropy is not None and weights.entropy.stages is not None
    assert json.loads(weights.metadata["training"])["checkpoint_step"] == 6
    rgb = np.asarray(Image.open(next(data_dir.iterdir())).convert("RGB"))
    for quality in (1, 3):
        data, stats = encode_array(weights, rgb, quality)
        assert decode_bytes(weights, data).shape == rgb.shape
        assert len(stats.payload_bits) == quality
    assert weights.model_id == "tiny"
    # a retrained model ships under a new id; a malformed id is one usage error
    renamed = tmp_path / "tiny-r2.safetensors"
    result = runner.invoke(app, ["export-model", str(run), "-o", str(renamed), "--model-id", "tiny-r2"])
    assert result.exit_code == 0, result.output
    assert load_weights(renamed).model_id == "tiny-r2"
    bad = runner.invoke(app, ["export-model", str(run), "-o", str(tmp_path / "x.safetensors"), "--model-id", "a b/c"])
    assert bad.exit_code == 2 and "model id" in bad.output and not (tmp_path / "x.safetensors").exists()
    # the id of an installed model is refused: the files it wrote need its weights
    taken = runner.invoke(app, ["export-model", str(run), "-o", str(tmp_path / "y.safetensors"), "--model-id", "vqz-rvq8-f8"])
    assert taken.exit_code == 2 and "already installed" in taken.output and not (tmp_path / "y.safetensors").exists()


def test_a_folder_of_too_small_images_is_a_one_line_error(tmp_path: Path) -> None:
    folder = tmp_path / "small"
    folder.mkdir()
    Image.new("RGB", (16, 16)).save(folder / "a.png")
    result = runner.invoke(app, ["train", str(_config_file(tmp_path, folder, steps=2)), "--quiet"])
    assert result.exit_code == 1
    assert "no training image is at least 32x32" in result.output


def test_validation_without_held_out_images_reports_nothing() -> None:
    model = VQCodecModel(ModelConfig(**TINY_MODEL))
    assert validate(model, [np.zeros((2, 2, 3), np.uint8)], torch.device("cpu"), [1]) == {}
    assert model.training


def test_unknown_training_options_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('stepz = 3\n')
    with pytest.raises(VqzError, match="stepz"):
        TrainConfig.from_toml(path)


def test_bf16_falls_back_to_fp32_on_a_cpu_without_native_bf16(monkeypatch, capsys) -> None:
    from vqz.training import train as train_module

    cpu = torch.device("cpu")
    assert not train_module.autocast_enabled("fp32", cpu)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert not train_module.autocast_enabled("bf16", cpu)
    assert "training in fp32" in capsys.readouterr().err
    assert not train_module.autocast_enabled("bf16", cpu, announce=False)  # torchrun ranks other than 0
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert train_module.autocast_enabled("bf16", cpu)
    assert capsys.readouterr().err == ""
