"""Claims about the same-budget CompressAI baselines: training, resume, export, benchmark adapter."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import struct
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open
from typer.testing import CliRunner
from vqz.benchmarks import registry
from vqz.benchmarks.codecs_baseline import BASELINE_PATH_ENV, FactorizedSameBudgetCodec, HyperpriorSameBudgetCodec
from vqz.benchmarks.errors import BenchmarkError, CodecUnavailable
from vqz.benchmarks.runner import measure

from vqz.cli.app import app
from vqz.codec.photos import is_validation
from vqz.training.train_baseline import BaselineTrainConfig, export_baseline, read_baseline_info, train_baseline
from vqz.errors import VqzError

ROOT = Path(__file__).resolve().parents[2]
FAMILIES = ["bmshj2018-factorized", "bmshj2018-hyperprior"]
CODEC_OF = {"bmshj2018-factorized": FactorizedSameBudgetCodec, "bmshj2018-hyperprior": HyperpriorSameBudgetCodec}
VALIDATION_FRACTION = 0.34
runner = CliRunner()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three small random PNGs: two in the training split, one held out."""
    folder = tmp_path_factory.mktemp("images")
    names = [f"img{i:02d}.png" for i in range(100)]
    val = [n for n in names if is_validation(n, VALIDATION_FRACTION)][:1]
    train = [n for n in names if not is_validation(n, VALIDATION_FRACTION)][:2]
    rng = np.random.default_rng(0)
    for name in val + train:
        Image.fromarray(rng.integers(0, 256, (72, 80, 3), dtype=np.uint8)).save(folder / name)
    return folder


def _config(family: str, data: Path, out: Path, steps: int = 3, **extra: object) -> BaselineTrainConfig:
    return BaselineTrainConfig(family=family, lmbda=0.01, N=16, M=16, data=str(data), out=str(out), crop=64,
                               batch=2, steps=steps, validate_every=1, validation_fraction=VALIDATION_FRACTION,
                               **extra)


def _metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


def _tensor(path: Path, name: str):
    with safe_open(str(path), framework="pt") as handle:
        return handle.get_tensor(name)


@pytest.fixture(scope="module")
def exported(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding one exported weights file per family (3 training steps each)."""
    weights = tmp_path_factory.mktemp("baselines")
    runs = tmp_path_factory.mktemp("runs")
    for family in FAMILIES:
        train_baseline(_config(family, data_dir, runs / family), progress=False)
        export_baseline(runs / family, weights / f"{family}-0.01.safetensors")
    return weights


@pytest.mark.parametrize("family", FAMILIES)
def test_vqz_train_dispatches_on_family_and_writes_a_checkpoint_and_log(family: str, data_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "baseline.toml"
    config.write_text(f'family = "{family}"\nlmbda = 0.01\nN = 16\nM = 16\ncrop = 64\nbatch = 2\nsteps = 3\n'
                      f'validate_every = 2\nvalidation_fraction = {VALIDATION_FRACTION}\n')
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(config), "--data", str(data_dir), "--out", str(out), "--lr", "5e-4", "--quiet"])
    assert result.exit_code == 0, result.output
    checkpoint = out / "checkpoint.safetensors"
    assert f"checkpoint: {checkpoint}" in result.stdout
    meta = _metadata(checkpoint)
    assert meta["step"] == "3" and meta["family"] == family
    settings = json.loads((out / "train_config.json").read_text())
    assert settings["family"] == family and settings["lr"] == 5e-4 and settings["data"] == str(data_dir)
    with (out / "log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == ["2", "3"]
    assert all(math.isfinite(float(r["val_psnr"])) and float(r["val_bpp"]) > 0 for r in rows)
    assert (out / "validation_files.txt").read_text().count(".png") == 1


def test_resume_continues_from_the_checkpoint_with_the_optimizer_state(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train_baseline(_config("bmshj2018-hyperprior", data_dir, out, steps=2), progress=False)
    checkpoint = out / "checkpoint.safetensors"
    before = _tensor(checkpoint, "model.g_a.0.weight")
    train_baseline(_config("bmshj2018-hyperprior", data_dir, out, steps=2), resume=True, progress=False)
    assert _metadata(checkpoint)["step"] == "2"
    assert _tensor(checkpoint, "model.g_a.0.weight").equal(before)  # nothing left to do: untouched
    train_baseline(_config("bmshj2018-hyperprior", data_dir, out, steps=3), resume=True, progress=False)
    assert _metadata(checkpoint)["step"] == "3"
    # Adam counts its steps: 3 only if the state of the first run was loaded
    assert _tensor(checkpoint, "optim.0.step").item() == 3
    assert _tensor(checkpoint, "aux_optim.0.step").item() == 3
    with (out / "log.csv").open() as f:
        assert [r["step"] for r in csv.DictReader(f)] == ["1", "2", "3"]


def test_a_branch_goes_on_from_another_lmbdas_checkpoint_with_its_step_and_optimizer(data_dir: Path, tmp_path: Path) -> None:
    parent = tmp_path / "parent"
    train_baseline(_config("bmshj2018-hyperprior", data_dir, parent, steps=2), progress=False)
    branch = tmp_path / "branch"
    config = _config("bmshj2018-hyperprior", data_dir, branch, steps=3, branch_from=str(parent / "checkpoint.safetensors"))
    train_baseline(dataclasses.replace(config, lmbda=0.05), progress=False)
    checkpoint = branch / "checkpoint.safetensors"
    assert _metadata(checkpoint)["step"] == "3" and json.loads(_metadata(checkpoint)["config"])["lmbda"] == 0.05
    assert _tensor(checkpoint, "optim.0.step").item() == 3  # one step on top of the parent's two
    with (branch / "log.csv").open() as f:
        assert [r["step"] for r in csv.DictReader(f)] == ["3"]
    with pytest.raises(VqzError, match="past this run"):
        train_baseline(_config("bmshj2018-hyperprior", data_dir, tmp_path / "late", steps=2,
                               branch_from=str(checkpoint)), progress=False)
    with pytest.raises(VqzError, match="family"):
        train_baseline(_config("bmshj2018-factorized", data_dir, tmp_path / "other", steps=4,
                               branch_from=str(checkpoint)), progress=False)


def test_resume_refuses_a_checkpoint_of_another_architecture(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train_baseline(_config("bmshj2018-factorized", data_dir, out, steps=1), progress=False)
    with pytest.raises(VqzError, match="family"):
        train_baseline(_config("bmshj2018-hyperprior", data_dir, out, steps=2), resume=True, progress=False)


@pytest.mark.parametrize("family", FAMILIES)
def test_export_writes_safetensors_with_cdf_tables_and_metadata_and_no_pickle(family: str, exported: Path) -> None:
    path = exported / f"{family}-0.01.safetensors"
    raw = path.read_bytes()
    # safetensors: u64 header length, a JSON header, then the raw tensor bytes and nothing else
    # (no room for a pickle; a torch.save file would start with a zip or pickle header)
    header_length = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + header_length])
    end = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
    assert len(raw) == 8 + header_length + end
    meta = _metadata(path)
    assert meta["family"] == family and meta["N"] == "16" and meta["M"] == "16"
    assert float(meta["lmbda"]) == 0.01 and meta["steps"] == "3" and meta["data"]
    assert _tensor(path, "entropy_bottleneck._quantized_cdf").numel() > 0  # update(force=True) ran
    with safe_open(str(path), framework="pt") as handle:
        assert not any(key.startswith(("optim", "aux_optim", "model.")) for key in handle.keys())
    info = read_baseline_info(path)
    assert (info.family, info.lmbda, info.steps) == (family, 0.01, 3)


def test_export_through_the_cli_writes_the_weights_file(data_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train_baseline(_config("bmshj2018-factorized", data_dir, run, steps=1), progress=False)
    output = tmp_path / "baselines" / "bmshj2018-factorized-0.01.safetensors"
    result = runner.invoke(app, ["export-model", str(run), "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert _metadata(output)["format"] == "vqz-baseline-1"


@pytest.mark.parametrize("family", FAMILIES)
def test_adapter_round_trips_to_real_bytes_and_the_bpp_is_the_byte_count(family: str, exported: Path) -> None:
    codec = CODEC_OF[family](exported)
    assert codec.settings() == [0.01]
    assert "same training budget as vqz (trained by vqz train)" in codec.label
    assert "same training budget as vqz (trained by vqz train)" in codec.description
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (40, 70, 3), dtype=np.uint8)  # not a multiple of 16/64: padded and cropped
    data = codec.encode(img, 0.01)
    assert data[:4] == b"CAIs"
    decoded = codec.decode(data)
    assert decoded.shape == img.shape and decoded.dtype == np.uint8
    row = measure(codec, img, 0.01, "random.png")
    assert row.bytes == len(data) and row.bpp == pytest.approx(len(data) * 8 / (40 * 70))
    with pytest.raises(BenchmarkError, match="truncated"):
        codec.decode(data[:-1])
    with pytest.raises(BenchmarkError, match="trailing"):
        codec.decode(data + b"\0")


def test_adapter_of_the_other_family_ignores_these_weights(exported: Path, tmp_path: Path) -> None:
    only_factorized = tmp_path / "w"
    only_factorized.mkdir()
    (only_factorized / "f.safetensors").write_bytes((exported / "bmshj2018-factorized-0.01.safetensors").read_bytes())
    assert FactorizedSameBudgetCodec(only_factorized).settings() == [0.01]
    with pytest.raises(CodecUnavailable):
        HyperpriorSameBudgetCodec(only_factorized)


@pytest.mark.parametrize("name", ["factorized-samebudget", "hyperprior-samebudget"])
def test_the_bench_skips_the_baselines_without_weights(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BASELINE_PATH_ENV, str(tmp_path))
    registry.get_codec.cache_clear()
    try:
        skipped: list[tuple[str, str]] = []
        assert registry.available([name], lambda n, why: skipped.append((n, why))) == []
        assert len(skipped) == 1 and skipped[0][0] == name
        assert "no bmshj2018" in skipped[0][1] and "vqz train" in skipped[0][1] and "\n" not in skipped[0][1]
    finally:
        registry.get_codec.cache_clear()


@pytest.mark.parametrize("family", ["factorized", "hyperprior"])
def test_the_baseline_configs_have_the_default_models_budget(family: str) -> None:
    default = tomllib.loads((ROOT / "configs" / "default.toml").read_text())
    config = BaselineTrainConfig.from_toml(ROOT / "configs" / f"baseline-{family}.toml")
    assert config.family == f"bmshj2018-{family}"
    for key in ("data", "crop", "batch", "seed"):
        assert getattr(config, key) == default[key], key
    # the training pixels of vqz-rvq16b-f8's lineage: vqz-rvq8-f8's 15000 steps and the rvq16 line's 10853, rounded
    assert config.steps == 25900 and config.batch == 16 and config.crop == 128
    assert config.precision == "bf16" and config.snapshot_steps == (3237, 6475, 12950)
    assert config.out == f"runs/bmshj2018-{family}-0.0067"


def test_bf16_training_keeps_the_entropy_models_in_float32() -> None:
    import torch

    from vqz.training.train_baseline import build_model, keep_entropy_models_float32

    torch.manual_seed(0)
    model = build_model("bmshj2018-hyperprior", 32, 48)
    keep_entropy_models_float32(model)
    x = torch.rand(2, 3, 64, 64)
    reference = model(x)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        mixed = model(x)
    for name in ("y", "z"):
        assert mixed["likelihoods"][name].dtype == torch.float32
    # z's likelihoods depend only on the float32 entropy bottleneck after the (bf16) transforms
    assert torch.allclose(mixed["likelihoods"]["z"].log().sum(), reference["likelihoods"]["z"].log().sum(), rtol=0.05)


@pytest.mark.parametrize("changes, message", [
    ({"family": "bmshj2018-hyperprior", "crop": 96}, "multiple of 64"),
    ({"family": "mbt2018"}, "`family` must be one of"),
    ({"lmbda": -1.0}, "`lmbda` must be positive"),
    ({"N": "128"}, "`N` must be an integer"),
    ({"warmup_steps": 10}, "unknown baseline training option"),
])
def test_bad_baseline_configs_are_refused_with_the_option_named(changes: dict, message: str) -> None:
    with pytest.raises(VqzError, match=message):
        BaselineTrainConfig.from_dict({"family": "bmshj2018-factorized", "lmbda": 0.01, **changes})


def test_lmbda_on_a_vqz_config_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", str(ROOT / "configs" / "default.toml"), "--lmbda", "0.01",
                                 "--out", str(tmp_path / "never")])
    assert result.exit_code == 2
    assert not (tmp_path / "never").exists()
