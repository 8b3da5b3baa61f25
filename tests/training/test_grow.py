"""Claims about growing a trained model (training/grow.py) and the training options that go with it."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from vqz.codec.config import ModelConfig
from vqz.training.grow import grow_model, init_new_stages
from vqz.training.model import VQCodecModel
from vqz.training.train import TrainConfig, sample_stages, train, validation_levels
from vqz.errors import VqzError

SMALL = ModelConfig(channels=16, latent_dim=4, downsampling_log2=2, num_stages=2, codebook_size=8)
GROWN = ModelConfig(channels=16, latent_dim=6, downsampling_log2=2, num_stages=4, codebook_size=8, latent_blocks=1)


def _images(seed: int, count: int = 2, size: int = 32) -> torch.Tensor:
    """Smooth random images (B, 3, size, size) in [0, 1]."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((count, 3, 4, 4)).astype(np.float32))
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


@pytest.fixture(scope="module")
def small_model() -> VQCodecModel:
    """A small model with real (k-means) codebooks and randomly initialised transforms."""
    torch.manual_seed(0)
    model = VQCodecModel(SMALL)
    with torch.no_grad():
        latent = model.g_a(_images(0, count=4))
    model.quantizer._kmeans_init(latent.permute(0, 2, 3, 1).reshape(-1, SMALL.latent_dim))
    return model.eval()


def test_grown_model_computes_the_old_function_at_every_old_level(small_model: VQCodecModel) -> None:
    grown = grow_model(small_model.state_dict(), SMALL, GROWN).eval()
    x = _images(1)
    for level in range(1, SMALL.num_stages + 1):
        old_indices = small_model.encode_indices(x, level)
        new_indices = grown.encode_indices(x, level)
        assert torch.equal(old_indices, new_indices)
        torch.testing.assert_close(grown.decode_indices(new_indices), small_model.decode_indices(old_indices), rtol=0, atol=1e-6)


def test_new_stages_initialised_on_residuals_reduce_the_latent_error(small_model: VQCodecModel) -> None:
    grown = grow_model(small_model.state_dict(), SMALL, GROWN).eval()
    x = _images(2, count=4)
    with torch.no_grad():
        latent = grown.g_a(x)
    init_new_stages(grown, latent, SMALL.num_stages)
    errors = []
    for level in (SMALL.num_stages, GROWN.num_stages):
        rebuilt = grown.quantizer.dequantize(grown.quantizer.encode(latent, level))
        errors.append(float((rebuilt - latent).pow(2).mean()))
    assert errors[1] < 0.5 * errors[0]


def test_new_blocks_and_channels_receive_gradients(small_model: VQCodecModel) -> None:
    grown = grow_model(small_model.state_dict(), SMALL, GROWN)
    with torch.no_grad():
        init_new_stages(grown, grown.g_a(_images(2, count=4)), SMALL.num_stages)
    grown.train()
    result = grown(_images(3), torch.tensor([4, 4]))
    torch.nn.functional.mse_loss(result["x_hat"], _images(3)).backward()
    new_block = grown.g_s[2]  # g_s = [conv, ResidualBlock, new ResidualBlock, ...]
    assert new_block.conv2.weight.grad is not None and new_block.conv2.weight.grad.abs().sum() > 0
    assert grown.g_s[0].weight.grad[:, SMALL.latent_dim :].abs().sum() > 0


@pytest.mark.parametrize("change", [{"channels": 32}, {"codebook_size": 16}, {"downsampling_log2": 3}, {"num_stages": 1}])
def test_growth_refuses_what_it_cannot_preserve(small_model: VQCodecModel, change: dict) -> None:
    target = ModelConfig(**{**GROWN.__dict__, **change})
    with pytest.raises(VqzError):
        grow_model(small_model.state_dict(), SMALL, target)


def test_old_configuration_json_is_unchanged_by_the_new_field() -> None:
    assert "latent_blocks" not in SMALL.to_json()
    assert ModelConfig.from_json(SMALL.to_json()) == SMALL
    assert ModelConfig.from_json(GROWN.to_json()).latent_blocks == 1


def test_stage_sampling_keeps_every_stage_for_the_chosen_share() -> None:
    config = TrainConfig(batch=16, full_stage_fraction=0.25, model=ModelConfig(num_stages=16))
    stages = sample_stages(config, torch.Generator().manual_seed(0))
    assert stages.shape == (16,) and int((stages == 16).sum()) >= 4
    assert int(stages.min()) >= 1 and int(stages.max()) <= 16
    plain = sample_stages(TrainConfig(batch=4096, model=ModelConfig(num_stages=16)), torch.Generator().manual_seed(0))
    assert abs(float((plain == 16).float().mean()) - 1 / 16) < 0.02


def test_stage_sampling_stops_at_the_trained_stages() -> None:
    config = TrainConfig(batch=4096, full_stage_fraction=0.4, train_stages=4, model=ModelConfig(num_stages=16))
    stages = sample_stages(config, torch.Generator().manual_seed(0))
    assert int(stages.min()) == 1 and int(stages.max()) == 4
    # 40% keep all four, the rest draw 1..4 uniformly: 0.4 + 0.6 / 4 keep four
    assert abs(float((stages == 4).float().mean()) - 0.55) < 0.02
    assert abs(float((stages == 1).float().mean()) - 0.15) < 0.02
    assert validation_levels(config) == [1, 2, 3, 4]
    assert validation_levels(TrainConfig(model=ModelConfig(num_stages=16))) == [1, 8, 16]


def test_untrained_stages_keep_their_codebooks() -> None:
    from vqz.training.quantizer import ResidualVectorQuantizer

    torch.manual_seed(0)
    quantizer = ResidualVectorQuantizer(4, 8, 3).train()
    quantizer(torch.randn(2, 3, 4, 4), torch.tensor([4, 4]))  # k-means initialises every stage
    before = [c.clone() for c in quantizer.codebooks]
    quantizer(torch.randn(2, 3, 4, 4), torch.tensor([1, 2]))
    assert not torch.equal(quantizer.codebooks[0], before[0]) and not torch.equal(quantizer.codebooks[1], before[1])
    assert torch.equal(quantizer.codebooks[2], before[2]) and torch.equal(quantizer.codebooks[3], before[3])


def test_more_trained_stages_than_the_model_has_are_refused() -> None:
    with pytest.raises(VqzError, match="train_stages"):
        TrainConfig(train_stages=9, model=ModelConfig(num_stages=8))


def test_training_grows_from_a_checkpoint_in_bf16(small_model: VQCodecModel, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(4)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)).resize((48, 40), Image.BILINEAR).save(folder / f"p{i}.png")
    start = tmp_path / "small.safetensors"
    tensors = {f"model.{k}": v.contiguous() for k, v in small_model.state_dict().items()}
    save_file(tensors, str(start), metadata={"step": "10", "config": SMALL.to_json(), "model_id": "small"})
    config = TrainConfig(data=str(folder), out=str(tmp_path / "run"), model_id="grown", crop=16, batch=2, steps=3,
                         warmup_steps=0, validate_every=3, validation_fraction=0.0, precision="bf16",
                         full_stage_fraction=0.5, lr_ramp_steps=2, init_from=str(start), model=GROWN)
    checkpoint = train(config, progress=False)
    rows = list(csv.DictReader((tmp_path / "run" / "log.csv").open()))
    assert [r["step"] for r in rows] == ["3"] and rows[0]["phase"] == "vq"
    assert np.isfinite(float(rows[0]["loss"])) and checkpoint.exists()


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(VqzError, match="precision"):
        TrainConfig(precision="fp8")
