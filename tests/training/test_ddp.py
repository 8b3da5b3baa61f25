"""Claims about data-parallel training (torchrun / DistributedDataParallel, gloo on CPU).

One 2-process run goes through the real entry point (``python -m torch.distributed.run ...
-m vqz train``); the resume runs fork 2 workers from this process with torch.multiprocessing
(no re-import of torch per worker), each joining a gloo group through torchrun's variables.
"""

from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from vqz.codec.config import ModelConfig
from vqz.training.train import TrainConfig, train
from vqz.errors import VqzError

from conftest import write_training_images

FRACTION = 0.3
TINY_MODEL = {"channels": 16, "latent_dim": 4, "downsampling_log2": 2, "num_stages": 3, "codebook_size": 8}
ATOL = 1e-5  # float reduction order (gradients and EMA sums over 2 halves vs 1 batch)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ddp-images")
    return write_training_images(folder, FRACTION)


def _config(data: Path, out: Path, steps: int) -> TrainConfig:
    return TrainConfig(data=str(data), out=str(out), model_id="tiny", crop=32, batch=4, steps=steps, warmup_steps=2,
                       validate_every=2, validation_fraction=FRACTION, checkpoint_minutes=100.0, threads=1,
                       full_stage_fraction=0.25, model=ModelConfig(**TINY_MODEL))


def _toml(config: TrainConfig, path: Path) -> Path:
    model = "\n".join(f"{k} = {v}" for k, v in TINY_MODEL.items())
    path.write_text(f'data = "{config.data}"\nout = "{config.out}"\nmodel_id = "tiny"\ncrop = 32\nbatch = 4\n'
                    f"steps = {config.steps}\nwarmup_steps = 2\nvalidate_every = 2\nvalidation_fraction = {FRACTION}\n"
                    f"checkpoint_minutes = 100.0\nfull_stage_fraction = 0.25\n\n[model]\n{model}\n")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, config: TrainConfig, resume: bool) -> None:
    torch.set_num_threads(1)  # a forked child must not reuse the parent's OpenMP pool
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    train(config, resume=resume, progress=False)


def _run(config: TrainConfig, world: int, resume: bool = False) -> Path:
    """Train with ``world`` processes (forked; 1: in this process)."""
    if world == 1:
        return train(config, resume=resume, progress=False)
    mp.start_processes(_worker, args=(world, _free_port(), config, resume), nprocs=world, start_method="fork")
    return Path(config.out) / "checkpoint.safetensors"


def _assert_same(a: Path, b: Path) -> None:
    x, y = load_file(str(a)), load_file(str(b))
    assert x.keys() == y.keys()
    for key in x:
        torch.testing.assert_close(x[key], y[key], rtol=0, atol=ATOL, msg=key)


def _steps(run: Path) -> list[int]:
    return [int(r["step"]) for r in csv.DictReader((run / "log.csv").open())]


@pytest.fixture(scope="module")
def runs(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """4 steps on 1 process (in-process) and on 2 processes through torchrun's launcher."""
    root = tmp_path_factory.mktemp("ddp-runs")
    one = _config(data_dir, root / "one", steps=4)
    _run(one, 1)
    two = replace(one, out=str(root / "two"))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--rdzv-backend", "c10d",
               "--rdzv-endpoint", "localhost:0", "-m", "vqz", "train", str(_toml(two, root / "tiny.toml")), "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("checkpoint:") == 1  # rank 0 alone reports
    return {"one": root / "one", "two": root / "two", "root": root, "data": data_dir}


@pytest.mark.slow  # torchrun: two training processes
def test_two_processes_end_with_the_weights_and_codebooks_of_one(runs: dict[str, Path]) -> None:
    # every rank's replicas were compared (bit for bit) at each log row and at the end: the run
    # would have failed otherwise; here rank 0's result against the 1-process run
    _assert_same(runs["one"] / "checkpoint.safetensors", runs["two"] / "checkpoint.safetensors")
    one = list(csv.DictReader((runs["one"] / "log.csv").open()))
    two = list(csv.DictReader((runs["two"] / "log.csv").open()))
    assert [r["step"] for r in two] == ["2", "4"] and two[-1]["phase"] == "vq"
    for a, b in zip(one, two):  # the log reports the global batch's loss
        assert abs(float(a["loss"]) - float(b["loss"])) < 1e-5


@pytest.mark.slow  # torchrun: two training processes
def test_resume_continues_the_curve_on_any_number_of_processes(runs: dict[str, Path]) -> None:
    root = runs["root"]
    reference = root / "one-to-one"
    shutil.copytree(runs["one"], reference)
    _run(_config(runs["data"], reference, 6), 1, resume=True)
    cases = {"two-to-two": (runs["two"], 2), "two-to-one": (runs["two"], 1), "one-to-two": (runs["one"], 2)}
    for name, (start, world) in cases.items():
        folder = root / name
        shutil.copytree(start, folder)
        _run(_config(runs["data"], folder, 6), world, resume=True)
        assert _steps(folder) == [2, 4, 6], name
        _assert_same(reference / "checkpoint.safetensors", folder / "checkpoint.safetensors")


def test_a_batch_that_does_not_split_over_the_processes_is_refused(data_dir: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(VqzError, match=r"`batch` \(4\) must be a multiple of the number of processes \(3\)"):
        train(_config(data_dir, tmp_path / "run", 2), progress=False)
    assert not (tmp_path / "run").exists()


def _agree_worker(rank: int, port: int, result: Path) -> None:
    from vqz.training import distributed

    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    context = distributed.setup()
    same = distributed.replicas_agree([torch.arange(6.0).view(2, 3)], context)
    # the same values in another order, on rank 1 only: a plain sum would not see it
    swapped = distributed.replicas_agree([torch.tensor([1.0, 0.0]) if rank else torch.tensor([0.0, 1.0])], context)
    rows = distributed.ReplicaSync().gather_rows(torch.full((rank + 1, 2), float(rank)))
    if rank == 0:
        result.write_text(f"{same} {swapped} {rows.tolist()}")
    distributed.teardown(context)


def test_replica_check_and_row_gathering(tmp_path: Path) -> None:
    result = tmp_path / "result.txt"
    mp.start_processes(_agree_worker, args=(_free_port(), result), nprocs=2, start_method="fork")
    assert result.read_text() == "True False [[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]"
