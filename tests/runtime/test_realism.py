"""The realism knob: R = 0 is the faithful decoder byte for byte, R > 0 the realistic synthesis of
the same files (network interpolation), a residual level and a model without one decode at R = 0."""

from __future__ import annotations

import copy
import dataclasses
import io

import numpy as np

from vqz.training.model import torch_model
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import DATA, photo_crop

import vqz
from vqz.codec import realism as realism_module
from vqz.codec.realism import blend_postfilter, check_realism


@pytest.fixture(scope="module")
def realistic(tmp_path_factory, model):
    """A realistic synthesis of the default model (its g_s perturbed), exported to a folder on VQZ_MODEL_PATH."""
    from vqz.training.export import export_realism
    from vqz.training.loop import save_checkpoint

    folder = tmp_path_factory.mktemp("realistic")
    perturbed = copy.deepcopy(torch_model(model).g_s)
    with torch.no_grad():
        torch.manual_seed(0)
        for p in perturbed.parameters():
            p.add_(0.02 * p.std() * torch.randn_like(p))
    checkpoint = folder / "realism.safetensors"
    save_checkpoint(checkpoint, {"g_s": perturbed}, {}, 1, {"config": "{}"})
    paths = export_realism(checkpoint, folder / "test-real.safetensors", "test-real")
    checkpoint.unlink()
    return paths[0]


@pytest.fixture
def with_realistic(realistic, monkeypatch):
    monkeypatch.setenv("VQZ_MODEL_PATH", str(realistic.parent))
    realism_module._installed.cache_clear()
    yield realistic
    realism_module._installed.cache_clear()


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), float("inf")])
def test_a_realism_outside_zero_to_one_is_refused(value):
    with pytest.raises(ValueError):
        check_realism(value)


@pytest.mark.parametrize("value", ["1", None, True])
def test_a_realism_that_is_not_a_number_is_refused(value):
    with pytest.raises(TypeError):
        check_realism(value)


def test_realism_is_rounded_to_its_step():
    assert check_realism(0.12345) == 0.123 and check_realism(1) == 1.0 and check_realism(0) == 0.0


def test_zero_is_the_faithful_decoder_byte_for_byte(with_realistic):
    for name in ("golden-postfilter-stages-vqz-pf4-vqz-rvq16b-f8-q3", "golden-postfilter-vqz-pf4-vqz-rvq16b-f8-q8"):
        data = (DATA / f"{name}.vqz").read_bytes()
        expected = np.asarray(Image.open(DATA / f"{name}-decoded.png").convert("RGB"))
        assert np.array_equal(vqz.decode_array(data, realism=0.0), expected)


def test_realism_changes_a_stage_only_file_and_mixes_between(with_realistic):
    data = vqz.encode(photo_crop(), quality=2)
    r0, half, r1 = (vqz.decode_array(data, realism=r).astype(int) for r in (0.0, 0.5, 1.0))
    assert vqz.realism_applies(data)
    assert not np.array_equal(r0, r1) and not np.array_equal(half, r1) and not np.array_equal(half, r0)
    # halfway weights give an image between the two ends (network interpolation is close to linear here)
    assert np.abs(half - (r0 + r1) / 2).mean() < np.abs(r1 - r0).mean() / 2


def test_full_realism_runs_the_realistic_weights_without_the_filter(with_realistic, model):
    from vqz.bitstream import unpack_file
    from vqz.codec.pipeline import decode_indices, render

    data = vqz.encode(photo_crop(), quality=3)
    parsed = unpack_file(data)
    real = realism_module.realistic_for(model)
    indices = decode_indices(model, parsed.header, parsed.payloads)
    expected = render(model, indices, parsed.header.height, parsed.header.width, real.synthesis(model, 1.0))
    assert np.array_equal(vqz.decode_array(data, realism=1.0), expected)


def test_a_residual_level_decodes_faithfully_at_any_realism(with_realistic):
    data = vqz.encode(photo_crop(), quality=8)
    assert not vqz.realism_applies(data)
    assert np.array_equal(vqz.decode_array(data, realism=1.0), vqz.decode_array(data))
    # its --stages preview has no residual layer: realism applies there
    assert vqz.realism_applies(data, stages=2)
    assert not np.array_equal(vqz.decode_array(data, stages=2, realism=1.0), vqz.decode_array(data, stages=2))


def test_a_model_without_a_realistic_synthesis_decodes_faithfully(monkeypatch, tmp_path):
    monkeypatch.setenv("VQZ_MODEL_PATH", str(tmp_path))
    realism_module._installed.cache_clear()
    try:
        data = vqz.encode(photo_crop(), quality=2, model="vqz-rvq16-f8")
        assert not vqz.realism_applies(data)
        assert np.array_equal(vqz.decode_array(data, realism=1.0), vqz.decode_array(data))
    finally:
        realism_module._installed.cache_clear()


def test_the_post_filter_blends_at_one_minus_realism():
    a = np.zeros((2, 2, 3), np.uint8)
    b = np.full((2, 2, 3), 100, np.uint8)
    assert np.array_equal(blend_postfilter(a, b, 0.0), b) and np.array_equal(blend_postfilter(a, b, 1.0), a)
    assert np.all(blend_postfilter(a, b, 0.25) == 75)


def test_the_cli_decodes_at_a_realism_and_notes_where_it_does_not_apply(with_realistic, tmp_path):
    from vqz.cli.app import app

    low, high = tmp_path / "low.vqz", tmp_path / "high.vqz"
    low.write_bytes(vqz.encode(photo_crop(), quality=1))
    high.write_bytes(vqz.encode(photo_crop(), quality=8))
    runner = CliRunner()
    result = runner.invoke(app, ["decode", str(low), str(high), "-o", str(tmp_path), "--realism", "1"])
    assert result.exit_code == 0, result.output
    assert "realism 0" in result.output and "high.vqz" in result.output and "low.vqz" not in result.output
    decoded = np.asarray(Image.open(tmp_path / "low.png"))
    assert np.array_equal(decoded, vqz.decode_array(low.read_bytes(), realism=1.0))


@pytest.mark.parametrize("value", ["2", "-1", "abc"])
def test_the_cli_refuses_a_bad_realism_in_one_line(tmp_path, value, capfd):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "vqz", "decode", str(tmp_path / "x.vqz"), "--realism", value],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "--realism" in result.stderr


def test_the_pillow_plugin_takes_a_realism(with_realistic):
    data = vqz.encode(photo_crop(), quality=2)
    with Image.open(io.BytesIO(data)) as image:
        image.realism = 1.0
        image.load()
        assert np.array_equal(np.asarray(image), vqz.decode_array(data, realism=1.0))
    with Image.open(io.BytesIO(data)) as image:
        image.realism = 3.0
        with pytest.raises(ValueError):
            image.load()


@pytest.fixture(scope="module")
def stage_conditioned(tmp_path_factory, model):
    """A stage-conditioned realistic synthesis (perturbed g_s, random per-level scales and shifts) with
    per-level strengths, exported; -> (weights path, faithful g_s, realistic g_s, folded factors, strengths)."""
    from vqz.codec.levels import PURE_LEVELS
    from vqz.training.export import export_realism
    from vqz.training.loop import save_checkpoint
    from vqz.training.stage_film import StageFilm, folded_tensors

    folder = tmp_path_factory.mktemp("stage-real")
    faithful = torch_model(model).g_s
    perturbed = copy.deepcopy(faithful)
    film = StageFilm(perturbed, PURE_LEVELS)
    with torch.no_grad():
        torch.manual_seed(1)
        for p in perturbed.parameters():
            p.add_(0.02 * p.std() * torch.randn_like(p))
        for p in film.scale.values():
            p.add_(0.05 * torch.randn_like(p))
        for p in film.shift.values():
            p.add_(0.01 * torch.randn_like(p))
    checkpoint = folder / "realism.safetensors"
    save_checkpoint(checkpoint, {"g_s": perturbed, "film": film}, {}, 1, {"config": "{}"})
    strengths = [1.3, 1.0, 0.8, 0.6]
    paths = export_realism(checkpoint, folder / "stage-real.safetensors", "stage-real", strength=strengths)
    checkpoint.unlink()
    return paths[0], faithful, perturbed, folded_tensors(film, perturbed, prefix="g_s."), strengths


def test_stage_film_folds_into_the_weights(stage_conditioned, model):
    """The training network (hooks: scale and shift after each convolution, per sample's stage count) equals
    the network with the folded per-level weights the runtime builds."""
    from vqz.codec.vq import dequantize
    from vqz.training.realism import interpolate, level_factors
    from vqz.training.stage_film import StageFilm

    _, faithful, perturbed, folded, _ = stage_conditioned
    hooked = copy.deepcopy(perturbed)
    film = StageFilm(hooked, 4)
    film.load_state_dict({f"{kind}.{key}": torch.stack([folded[f"level{k}.{'mul' if kind == 'scale' else 'add'}.g_s.{name}.bias"]
                                                        for k in range(1, 5)])
                          for kind in ("scale", "shift") for key, name in zip(film.scale.keys(), film.names)})
    indices = np.random.default_rng(0).integers(0, model.codebooks.shape[1], (4, 6, 5))
    for k in (1, 3):
        latent = torch.from_numpy(dequantize(indices[:k], model.codebooks)).permute(2, 0, 1)[None].float()
        film.stages = torch.tensor([k])
        with torch.no_grad():
            expected = hooked(latent)
            got = interpolate(faithful, perturbed, 1.0, level_factors(folded, k))(latent)
        assert torch.allclose(expected, got, atol=1e-4)


def test_a_stage_conditioned_synthesis_decodes_each_level_with_its_own_weights(stage_conditioned, monkeypatch, model):
    """At R, a k-stage file runs w0 + R s_k (w1_k - w0): the runtime's output is the training world's
    folded network at that strength (within float rounding, here ONNX vs torch)."""
    from vqz.codec.tiling import to_uint8
    from vqz.codec.vq import dequantize
    from vqz.bitstream import unpack_file
    from vqz.codec.pipeline import decode_indices
    from vqz.training.realism import interpolate, level_factors

    path, faithful, perturbed, folded, strengths = stage_conditioned
    monkeypatch.setenv("VQZ_MODEL_PATH", str(path.parent))
    realism_module._installed.cache_clear()
    try:
        real = realism_module.realistic_for(model)
        assert real.levels == 4 and real.strength == strengths and real.level_of(9) == 4
        image = photo_crop()
        for level, realism in ((1, 1.0), (2, 0.5), (4, 1.0)):
            data = vqz.encode(image, quality=level)
            parsed = unpack_file(data)
            indices = decode_indices(model, parsed.header, parsed.payloads)
            latent = torch.from_numpy(dequantize(indices, model.codebooks)).permute(2, 0, 1)[None].float()
            with torch.no_grad():
                network = interpolate(faithful, perturbed, realism * strengths[level - 1], level_factors(folded, level))
                expected = to_uint8(network(latent).numpy())
            if parsed.header.postfilter is not None and realism < 1.0:  # the filter at weight 1 - R
                from vqz.codec.postfilter import postfilter_for_ref

                filtered = postfilter_for_ref(parsed.header.postfilter).apply(expected, parsed.header.postfilter.strength)
                expected = blend_postfilter(expected, filtered, realism)
            got = vqz.decode_array(data, realism=realism)
            diff = np.abs(got.astype(int) - expected.astype(int))
            assert diff.max() <= 1 and diff.mean() < 0.01, (level, diff.max(), diff.mean())
        # a level's weights are its own: level 1 at R = 1 differs from the unconditioned, unscaled weights
        data = vqz.encode(image, quality=1)
        assert not np.array_equal(vqz.decode_array(data, realism=1.0), vqz.decode_array(data, realism=1.0 / 1.3))
    finally:
        realism_module._installed.cache_clear()


def test_the_lattice_loss_sees_a_pattern_repeated_on_the_code_grid_and_nothing_else():
    from vqz.training.realism import grid_pattern, lattice_loss

    torch.manual_seed(0)
    image = torch.rand(2, 3, 32, 48)
    pattern = 0.05 * torch.randn(1, 3, 8, 8)
    pattern -= pattern.mean((2, 3), keepdim=True)
    grained = image + pattern.repeat(1, 1, 4, 6)
    assert torch.allclose(grid_pattern(grained) - grid_pattern(image), pattern.expand(2, -1, -1, -1), atol=1e-6)
    assert lattice_loss(grained, image).item() == pytest.approx(pattern.square().mean().item(), rel=1e-4)
    # a change that is not periodic on the grid (a shift of the whole crop's level, a single pixel) costs little
    assert lattice_loss(image + 0.1, image).item() < 1e-12
    spot = image.clone()
    spot[:, :, 5, 7] += 0.5
    assert lattice_loss(spot, image).item() < pattern.square().mean().item() / 20


def test_models_lists_the_realistic_synthesis(with_realistic):
    from vqz.cli.app import app

    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0 and "test-real" in result.output


@pytest.mark.slow  # codes images with the model and trains (a few seconds)
def test_realism_training_runs_resumes_logs_and_exports(tmp_path, monkeypatch):
    import csv

    from conftest import write_training_images
    from vqz.training.export import export_realism
    from vqz.training.realism import RealismTrainConfig, calibrate_strength, train_realism

    data = tmp_path / "photos"
    data.mkdir()
    write_training_images(data, 0.05)
    cfg = RealismTrainConfig(data=str(data), out=str(tmp_path / "run"), steps=4, batch=2, crop=32, d_warmup=1,
                             checkpoint_every=2, validate_every=2, heldout_crop=32, energy_weight=0.1,
                             precision="fp32", stage_film=True, lattice_weight=10.0)
    checkpoint = train_realism(cfg, log=lambda message: None)
    cfg = dataclasses.replace(cfg, steps=6)
    train_realism(cfg, resume=True, log=lambda message: None)
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert [r["step"] for r in rows] == ["0", "2", "4", "6"]
    assert all(float(r["psnr_r1_k1"]) > 10 for r in rows)
    strengths = calibrate_strength(checkpoint, target=0.5, images=2, crop=32, iterations=3, log=lambda message: None)
    assert len(strengths) == 4 and all(0.25 <= v <= 3.0 for v in strengths)
    paths = export_realism(checkpoint, tmp_path / "real.safetensors", "tiny-real", strength=strengths)
    assert [p.name for p in paths] == ["real.safetensors", "real.synthesis.onnx", "real.synthesis-head.onnx",
                                       "real.synthesis-tail.onnx"]
    monkeypatch.setenv("VQZ_MODEL_PATH", str(tmp_path))
    realism_module._installed.cache_clear()
    try:
        data_bytes = vqz.encode(photo_crop(), quality=1)
        assert vqz.realism_applies(data_bytes)
        assert vqz.decode_array(data_bytes, realism=1.0).shape == photo_crop().shape
    finally:
        realism_module._installed.cache_clear()


def test_the_code_classifying_discriminator_losses():
    from vqz.training.discriminator import PatchDiscriminator, code_d_loss, code_g_loss

    torch.manual_seed(0)
    disc = PatchDiscriminator(latent_dim=4, channels=8, classes=6)  # 5 codes + "decoded"
    logits, features = disc(torch.rand(2, 3, 32, 32), torch.randn(2, 4, 4, 4))
    assert logits.shape == (2, 6, 4, 4) and len(features) == 4
    labels = torch.randint(0, 5, (2, 4, 4))
    # a discriminator sure of every real cell's code and of every decoded cell scores near 0; the generator's
    # loss is then large, and small once its cells are taken for the real codes
    sure_real = torch.nn.functional.one_hot(labels, 6).permute(0, 3, 1, 2).float() * 50
    sure_fake = torch.zeros(2, 6, 4, 4)
    sure_fake[:, 5] = 50
    assert code_d_loss(sure_real, sure_fake, labels).item() < 1e-6
    assert code_g_loss(sure_fake, labels).shape == (2,) and code_g_loss(sure_fake, labels).min().item() > 40
    assert code_g_loss(sure_real, labels).max().item() < 1e-6


@pytest.mark.slow  # codes images with the model and trains (a few seconds)
def test_realism_training_with_a_code_classifying_discriminator(tmp_path):
    import csv

    from conftest import write_training_images
    from vqz.training.realism import RealismTrainConfig, train_realism

    data = tmp_path / "photos"
    data.mkdir()
    write_training_images(data, 0.05)
    cfg = RealismTrainConfig(data=str(data), out=str(tmp_path / "run"), steps=4, batch=2, crop=32, d_warmup=1,
                             checkpoint_every=2, validate_every=2, heldout_crop=32, precision="fp32", disc_codes=True)
    train_realism(cfg, log=lambda message: None)
    train_realism(dataclasses.replace(cfg, steps=6), resume=True, log=lambda message: None)
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert [r["step"] for r in rows] == ["0", "2", "4", "6"]
    assert 0.0 <= float(rows[-1]["d_fake"]) <= 1.0  # the probability of "decoded" on decoded cells
