"""Claims about the one-shot GPU script (scripts/gpu_oneshot.sh), run end to end on the CPU with a
tiny model: the same code path as on a GPU (wheel install, source layout, time-budgeted
training from a checkpoint, export, round trip, packing), a few steps long; and about
scripts/gpu_bundle.py, which gets such a run under the device machine's upload limit (carry
folder, stash of the large files, restore), on a tiny git tree."""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.numpy import load_file as load_numpy
from safetensors.torch import load_file, save_file

from vqz.codec.config import ModelConfig
from vqz.training.data import is_validation
from vqz.training.model import VQCodecModel
from vqz.codec.pipeline import decode_bytes, encode_array
from vqz.training.train import TrainConfig, learning_rate
from vqz.codec.weights import load_weights

ROOT = Path(__file__).resolve().parents[2]
FRACTION = 0.3
TINY = {"channels": 16, "latent_dim": 4, "downsampling_log2": 2, "num_stages": 3, "codebook_size": 8}
BUNDLE = ROOT / "scripts" / "gpu_bundle.py"


def _bundle_module():
    spec = importlib.util.spec_from_file_location("gpu_bundle", BUNDLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


@pytest.mark.slow  # runs the one-shot GPU script end to end on the CPU
def test_the_one_shot_script_trains_exports_and_packs_weights_that_code_images(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    names = [f"photo{i:02d}.png" for i in range(50)]
    rng = np.random.default_rng(3)
    for name in [n for n in names if is_validation(n, FRACTION)][:1] + [n for n in names if not is_validation(n, FRACTION)][:3]:
        Image.fromarray(rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)).resize((56, 48), Image.BILINEAR).save(data / name)
    torch.manual_seed(0)
    full = tmp_path / "checkpoint.safetensors"  # a "committed checkpoint": model with k-means codebooks + Adam state
    model = VQCodecModel(ModelConfig(**TINY))
    with torch.no_grad():
        model.quantizer._kmeans_init(torch.randn(256, TINY["latent_dim"]))
    tensors = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}
    tensors |= {f"optim.0.{k[6:]}": torch.randn_like(v.float()) for k, v in list(tensors.items())[:5]}
    save_file(tensors, str(full), metadata={"step": "40", "config": model.config.to_json(), "model_id": "tiny"})
    start = tmp_path / "carry" / "model.safetensors"  # what gpu_bundle.py start carries: model.* only, same bytes
    _bundle_module().model_only(full, start)
    kept = load_file(str(start))
    assert set(kept) == {k for k in tensors if k.startswith("model.")}
    assert all(torch.equal(kept[k], tensors[k]) for k in kept)
    config = tmp_path / "tiny.toml"
    config.write_text('model_id = "tiny"\ncrop = 32\nbatch = 2\nsteps = 100000\nwarmup_steps = 0\nvalidate_every = 2\n'
                      f"validation_fraction = {FRACTION}\ncheckpoint_minutes = 0.01\nthreads = 1\nprecision = \"bf16\"\n"
                      "lr_ramp_steps = 2\n\n[model]\n" + "\n".join(f"{k} = {v}" for k, v in TINY.items()) + "\n")
    wheels = _wheel(tmp_path / "wheels").parent
    out, site, pack = tmp_path / "out", tmp_path / "site", tmp_path / "pack"
    command = ["bash", str(ROOT / "scripts" / "gpu_oneshot.sh"), "--config", str(config), "--checkpoint", str(start),
               "--data", str(data), "--out", str(out), "--max-minutes", "0.03", "--limit", "2", "--wheels", str(wheels),
               "--site", str(site), "--pack-into", str(pack), "--part-mb", "1", "--deadline", "200"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, env={"PATH": "/usr/bin:/bin",
                            "PYTHON": sys.executable, "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (site / "vqz_probe" / "__init__.py").exists()  # the carried wheel went into the site folder

    summary = json.loads((out / "summary.json").read_text())
    # the precision it trained in: bf16 where this CPU has it natively, else the fp32 fallback
    expected = "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
    assert summary["steps"] >= 1 and summary["device"] == "cpu" and summary["precision"] == expected
    assert set(summary["psnr_before"]) == set(summary["psnr_after"]) == {"1", "2", "3"}  # JSON keys: every level of a three-stage model
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
    assert len(list(pack.iterdir())) <= 8  # the device tool returns at most 8 files
    (tmp_path / "joined.tar").write_bytes(b"".join(p.read_bytes() for p in parts))
    with tarfile.open(tmp_path / "joined.tar") as archive:
        assert {"tiny.safetensors", "tiny.analysis.onnx", "tiny.synthesis.onnx", "run/model.safetensors", "run/log.csv",
                "summary.json"} <= set(archive.getnames())
    assert (pack / "summary.json").exists() and (pack / "oneshot.log").exists()


def test_a_time_budget_ends_the_decay_with_the_time() -> None:
    config = TrainConfig(steps=1000, lr=1e-3, lr_final_fraction=0.1, max_minutes=1.0)
    assert learning_rate(config, 10, 0.5) == pytest.approx(1e-3)
    assert learning_rate(config, 10, 0.8) == pytest.approx(0.55e-3)  # half-way through the decay, by time
    assert learning_rate(config, 10, 1.0) == pytest.approx(1e-4)
    assert learning_rate(config, 800, 0.1) == learning_rate(config, 800)  # the step share leads: as without a budget


@pytest.mark.slow  # runs the one-shot GPU script end to end on the CPU
def test_a_failing_run_still_packs_its_log(tmp_path: Path) -> None:
    pack = tmp_path / "pack"
    result = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_oneshot.sh"), "--checkpoint", str(tmp_path / "absent.safetensors"),
                             "--data", str(tmp_path), "--out", str(tmp_path / "out"), "--wheels", str(tmp_path / "none"),
                             "--site", str(tmp_path / "site"), "--pack-into", str(pack)],
                            capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": str(tmp_path)})
    assert result.returncode != 0
    log = (pack / "oneshot.log").read_text()
    assert "not found (pass --checkpoint" in log and "packed nothing" in log


# --- scripts/gpu_bundle.py on a tiny git tree --------------------------------------------------

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "GIT_CONFIG_NOSYSTEM": "1"}


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, env={**os.environ, **GIT_ENV})


def _tree(tmp_path: Path, ignore: bool = True) -> Path:
    """A committed tree with small files, large ones (weights, a full checkpoint, a report) and an
    untracked large file; a training folder and a wheel beside it."""
    rng = np.random.default_rng(0)
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy2(BUNDLE, root / "scripts" / "gpu_bundle.py")
    gitignore = (ROOT / ".gitignore").read_text()
    (root / ".gitignore").write_text(gitignore if ignore else gitignore.replace("/.device-stash/\n", ""))
    (root / "codec" / "weights").mkdir(parents=True)
    (root / "codec" / "a.py").write_text("x = 1\n")
    (root / "codec" / "weights" / "m.safetensors").write_bytes(rng.bytes(300_000))
    (root / "benchmarks").mkdir()
    (root / "benchmarks" / "report.html").write_bytes(rng.bytes(150_000))
    (root / "checkpoints" / "m").mkdir(parents=True)
    tensors = {"model.w": rng.standard_normal((100, 300), dtype=np.float32), "model.n": np.arange(7, dtype=np.int64),
               "optim.0.exp_avg": rng.standard_normal((100, 600), dtype=np.float32)}
    from safetensors.numpy import save_file as save_numpy

    save_numpy(tensors, str(root / "checkpoints" / "m" / "checkpoint.safetensors"), metadata={"step": "9", "config": "{}"})
    assert _git(root, "init", "-q").returncode == 0
    _git(root, "add", "-A")
    assert _git(root, "commit", "-q", "-m", "tree").returncode == 0
    (root / "notes").mkdir()
    (root / "notes" / "big.bin").write_bytes(rng.bytes(200_000))  # untracked, not ignored: it would travel
    (root / "runs").mkdir()
    (root / "runs" / "ignored.bin").write_bytes(rng.bytes(500_000))  # ignored: it stays, and does not travel
    train = tmp_path / "train"
    train.mkdir()
    for i in range(60):
        (train / f"img{i:02d}.jpg").write_bytes(rng.bytes(30_000))
    _wheel(tmp_path / "wheels")
    return root


def _run_bundle(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(root / "scripts" / "gpu_bundle.py"), *args], cwd=root,
                          capture_output=True, text=True, timeout=120, env={**os.environ, **GIT_ENV})


def _start(root: Path, *extra: str) -> subprocess.CompletedProcess:
    return _run_bundle(root, "start", "--checkpoint", "checkpoints/m/checkpoint.safetensors", "--source",
                       str(root.parent / "train"), "--wheels-from", str(root.parent / "wheels"), "--no-download",
                       "--min-mb", "0.1", "--limit-mib", "2", "--margin-mib", "0.25", *extra)


def _digests(root: Path) -> dict[str, str]:
    names = ["codec/weights/m.safetensors", "benchmarks/report.html", "checkpoints/m/checkpoint.safetensors", "notes/big.bin"]
    return {n: hashlib.sha256((root / n).read_bytes()).hexdigest() for n in names}


def test_start_stashes_the_large_files_carries_what_the_run_needs_and_restore_puts_them_back(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    before, status_before = _digests(root), _git(root, "status", "--porcelain").stdout
    result = _start(root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "STASHED" in result.stdout and "gpu-carry" in result.stdout
    for name in before:
        assert not (root / name).exists() and (root / ".device-stash" / "files" / name).is_file()
    assert (root / "runs" / "ignored.bin").exists() and (root / "codec" / "a.py").exists()

    bundle = _bundle_module()  # what a device call would upload: within the limit, none of the stashed files
    parts = bundle.travelling(root, [root / "gpu-carry"])
    travelling = {name: size for files in parts.values() for name, size in files.items()}
    assert sum(travelling.values()) <= 2 * 2**20 - 0.25 * 2**20
    assert not set(before) & set(travelling) and "runs/ignored.bin" not in travelling
    assert {"gpu-carry/start/model.safetensors", "scripts/gpu_bundle.py", "codec/a.py"} <= set(travelling)
    images = list((root / "gpu-carry" / "data").iterdir())
    assert 20 <= len(images) < 60  # sized to what is left of the limit
    assert [p.name for p in (root / "gpu-carry" / "wheels").iterdir()] == ["vqz_probe-0.1-py3-none-any.whl"]
    full = load_numpy(str(root / ".device-stash" / "files" / "checkpoints" / "m" / "checkpoint.safetensors"))
    start = load_numpy(str(root / "gpu-carry" / "start" / "model.safetensors"))
    assert set(start) == {"model.w", "model.n"} and all(np.array_equal(start[k], full[k]) for k in start)

    size = _run_bundle(root, "size")
    assert size.returncode == 0 and size.stdout.count("STASHED") == 2 and "within the 64 MiB limit" in size.stdout
    again = _start(root)
    assert again.returncode == 1 and "already exists" in again.stderr and len(again.stderr.strip().splitlines()) == 1

    head = _git(root, "rev-parse", "HEAD").stdout
    refused = _git(root, "commit", "-qam", "oops")  # the guard hook: stashed files are not deletions to commit
    assert refused.returncode != 0 and "gpu_bundle.py restore" in refused.stderr
    assert _git(root, "rev-parse", "HEAD").stdout == head
    _git(root, "reset", "-q")
    (root / "codec" / "a.py").write_text("x = 2\n")  # other work still commits
    _git(root, "add", "codec/a.py")
    assert _git(root, "commit", "-qm", "other work").returncode == 0

    restored = _run_bundle(root, "restore")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "restored 4 of 4 files" in restored.stdout and "clean" in restored.stdout
    assert _digests(root) == before and not (root / ".device-stash").exists()
    assert _git(root, "status", "--porcelain").stdout == status_before
    twice = _run_bundle(root, "restore")
    assert twice.returncode == 0 and "nothing stashed" in twice.stdout


def test_start_refuses_over_the_limit_or_where_the_stash_would_travel(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    status = _git(root, "status", "--porcelain").stdout
    over = _start(root, "--limit-mib", "0.3")
    assert over.returncode == 1 and len(over.stderr.strip().splitlines()) == 1 and "nothing moved" in over.stderr
    assert not (root / ".device-stash").exists() and _git(root, "status", "--porcelain").stdout == status

    unignored = _tree(tmp_path / "b", ignore=False)
    refused = _start(unignored)
    assert refused.returncode == 1 and ".device-stash/ is not git-ignored" in refused.stderr
    assert not (unignored / ".device-stash").exists() and (unignored / "codec" / "weights" / "m.safetensors").exists()


def test_restore_keeps_the_stash_when_a_file_or_the_index_changed_meanwhile(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    before = _digests(root)
    assert _start(root, "--no-hook").returncode == 0
    (root / "benchmarks" / "report.html").write_text("something else")
    conflict = _run_bundle(root, "restore")
    assert conflict.returncode == 1 and "a different file is in its place" in conflict.stderr
    assert (root / ".device-stash" / "files" / "benchmarks" / "report.html").exists()
    (root / "benchmarks" / "report.html").unlink()

    _git(root, "add", "-A")  # the accident: the stashed files staged as deleted
    staged = _run_bundle(root, "restore")
    assert staged.returncode == 1 and "git restore --staged" in staged.stderr and (root / ".device-stash").exists()
    _git(root, "restore", "--staged", ".")
    done = _run_bundle(root, "restore")
    assert done.returncode == 0, done.stderr
    assert _digests(root) == before and not (root / ".device-stash").exists()
