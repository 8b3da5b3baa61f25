"""Claims about the one-shot GPU script (scripts/gpu_oneshot.sh), run end to end on the CPU with a
tiny model: the same code path as on a GPU (wheel install, source layout, time-budgeted
training from a checkpoint, export, round trip, packing), a few steps long."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from vqz.codec.config import ModelConfig
from vqz.codec.data import is_validation
from vqz.codec.model import VQCodecModel
from vqz.codec.pipeline import decode_bytes, encode_array
from vqz.codec.train import TrainConfig, learning_rate
from vqz.codec.weights import load_weights

ROOT = Path(__file__).resolve().parents[1]
FRACTION = 0.3
TINY = {"channels": 16, "latent_dim": 4, "downsampling_log2": 2, "num_stages": 3, "codebook_size": 8}


def _wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel (package `vqz_probe`), to exercise the carried-wheel install."""
    name = "vqz_probe-0.1-py3-none-any.whl"
    files = {"vqz_probe/__init__.py": b"VALUE = 7\n",
             "vqz_probe-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: vqz-probe\nVersion: 0.1\n",
             "vqz_probe-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = [f"{k},sha256={base64.urlsafe_b64encode(hashlib.sha256(v).digest()).rstrip(b'=').decode()},{len(v)}"
              for k, v in files.items()] + ["vqz_probe-0.1.dist-info/RECORD,,"]
    folder.mkdir()
    with zipfile.ZipFile(folder / name, "w") as archive:
        for key, value in files.items():
            archive.writestr(key, value)
        archive.writestr("vqz_probe-0.1.dist-info/RECORD", "\n".join(record) + "\n")
    return folder / name


def test_the_one_shot_script_trains_exports_and_packs_weights_that_code_images(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    names = [f"photo{i:02d}.png" for i in range(50)]
    rng = np.random.default_rng(3)
    for name in [n for n in names if is_validation(n, FRACTION)][:1] + [n for n in names if not is_validation(n, FRACTION)][:3]:
        Image.fromarray(rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)).resize((56, 48), Image.BILINEAR).save(data / name)
    torch.manual_seed(0)
    start = tmp_path / "start.safetensors"  # a "committed checkpoint": model tensors with k-means codebooks
    model = VQCodecModel(ModelConfig(**TINY))
    with torch.no_grad():
        model.quantizer._kmeans_init(torch.randn(256, TINY["latent_dim"]))
    save_file({f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}, str(start),
              metadata={"step": "0", "config": model.config.to_json(), "model_id": "tiny"})
    config = tmp_path / "tiny.toml"
    config.write_text('model_id = "tiny"\ncrop = 32\nbatch = 2\nsteps = 100000\nwarmup_steps = 0\nvalidate_every = 2\n'
                      f"validation_fraction = {FRACTION}\ncheckpoint_minutes = 0.01\nthreads = 1\nprecision = \"bf16\"\n"
                      "lr_ramp_steps = 2\n\n[model]\n" + "\n".join(f"{k} = {v}" for k, v in TINY.items()) + "\n")
    wheels = _wheel(tmp_path / "wheels").parent
    out, site, pack = tmp_path / "out", tmp_path / "site", tmp_path / "pack"
    command = ["bash", str(ROOT / "scripts" / "gpu_oneshot.sh"), "--config", str(config), "--checkpoint", str(start),
               "--data", str(data), "--out", str(out), "--max-minutes", "0.03", "--limit", "2", "--wheels", str(wheels),
               "--site", str(site), "--pack-into", str(pack), "--part-mb", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, env={"PATH": "/usr/bin:/bin",
                            "PYTHON": sys.executable, "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (site / "vqz_probe" / "__init__.py").exists()  # the carried wheel went into the site folder

    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] >= 1 and summary["device"] == "cpu" and summary["precision"] == "bf16"
    assert set(summary["psnr_before"]) == set(summary["psnr_after"]) == {"1", "3"}  # JSON keys
    rows = list(csv.DictReader((out / "run" / "log.csv").open()))
    assert int(rows[-1]["step"]) == summary["steps"] < 100000  # stopped by the time budget, with a log row
    assert (out / "run" / "checkpoint.safetensors").exists() and (out / "run" / "model.safetensors").exists()
    assert "gpu_oneshot: wrote" in (out / "oneshot.log").read_text()

    weights = load_weights(out / "tiny.safetensors")
    assert json.loads(weights.metadata["training"])["table_images"] == 2
    rgb = np.asarray(Image.open(next(data.iterdir())).convert("RGB"))
    encoded, _ = encode_array(weights, rgb, 3)
    assert decode_bytes(weights, encoded).shape == rgb.shape

    parts = sorted(pack.glob("oneshot.tar.part-*"))
    assert parts and all(p.stat().st_size <= 2**20 for p in parts)
    (tmp_path / "joined.tar").write_bytes(b"".join(p.read_bytes() for p in parts))
    with tarfile.open(tmp_path / "joined.tar") as archive:
        assert {"tiny.safetensors", "run/model.safetensors", "run/log.csv", "summary.json"} <= set(archive.getnames())
    assert (pack / "summary.json").exists() and (pack / "oneshot.log").exists()


def test_a_time_budget_ends_the_decay_with_the_time() -> None:
    config = TrainConfig(steps=1000, lr=1e-3, lr_final_fraction=0.1, max_minutes=1.0)
    assert learning_rate(config, 10, 0.5) == pytest.approx(1e-3)
    assert learning_rate(config, 10, 0.8) == pytest.approx(0.55e-3)  # half-way through the decay, by time
    assert learning_rate(config, 10, 1.0) == pytest.approx(1e-4)
    assert learning_rate(config, 800, 0.1) == learning_rate(config, 800)  # the step share leads: as without a budget
