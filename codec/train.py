"""Training entry point (``vqz train CONFIG``).

Two phases in one run:

1. ``warmup_steps`` of a continuous autoencoder (quantizer bypassed): the cheapest way
   to get good transforms on a CPU;
2. residual VQ in the loop: codebooks are initialised by k-means on real latents, then
   follow EMA updates; every sample keeps a random number of stages (stage dropout), so one
   model serves every quality level and any prefix of stages is a coarser image.

Checkpoints (safetensors, model + optimizer, never pickle) are written every
``checkpoint_minutes`` and at the end; ``resume=True`` continues from the last one.
Curves go to ``log.csv`` in the run folder. After training, the entropy tables are
measured on the training split and frozen into the final weights (``--finalize``).
"""

from __future__ import annotations

import csv
import math
import time
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor

from vqz.codec.config import ModelConfig
from vqz.codec.data import CropSampler, load_split
from vqz.codec.model import VQCodecModel
from vqz.errors import VqzError


PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on. Paths are relative to the working directory."""

    data: str = "../shared/data/train"
    out: str = "runs/default"
    model_id: str = "vqz-rvq-f8"
    crop: int = 128
    batch: int = 16
    steps: int = 4000
    warmup_steps: int = 600
    lr: float = 2e-4
    lr_final_fraction: float = 0.1
    commitment_weight: float = 0.25
    validation_fraction: float = 0.05
    validate_every: int = 250
    checkpoint_minutes: float = 5.0
    seed: int = 0
    threads: int = 0  # 0: torch's default
    precision: str = "fp32"  # "bf16": autocast the transforms to bfloat16 (the quantizer stays float32)
    full_stage_fraction: float = 0.0  # share of each batch that keeps every stage; the rest draw 1..S uniformly
    lr_ramp_steps: int = 0  # linear ramp of the learning rate from 0 over the first steps of a run
    init_from: str = ""  # checkpoint of a smaller model to grow from (codec/grow.py) when no checkpoint exists
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        if self.crop % self.model.downsampling:
            raise VqzError(f"`crop` must be a multiple of {self.model.downsampling}, got {self.crop}")
        for name in ("batch", "steps", "crop"):
            if getattr(self, name) <= 0:
                raise VqzError(f"`{name}` must be positive")
        if not 0 <= self.warmup_steps <= self.steps:
            raise VqzError("`warmup_steps` must be in [0, steps]")
        if self.precision not in PRECISIONS:
            raise VqzError(f"`precision` must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not 0.0 <= self.full_stage_fraction <= 1.0:
            raise VqzError(f"`full_stage_fraction` must be in [0, 1], got {self.full_stage_fraction}")
        if self.lr_ramp_steps < 0:
            raise VqzError("`lr_ramp_steps` must be >= 0")

    @classmethod
    def from_toml(cls, path: Path, overrides: dict[str, object] | None = None) -> "TrainConfig":
        data = tomllib.loads(Path(path).read_text())
        data.update(overrides or {})
        model = ModelConfig(**data.pop("model", {}))
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise VqzError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        return cls(model=model, **data)


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear ramp over ``lr_ramp_steps``, constant, then a cosine decay to
    ``lr * lr_final_fraction`` over the last 40% of steps."""
    start = int(config.steps * 0.6)
    if step < config.lr_ramp_steps:
        return config.lr * min(1.0, (step + 1) / config.lr_ramp_steps)
    if step < start:
        return config.lr
    progress = (step - start) / max(1, config.steps - start)
    low = config.lr * config.lr_final_fraction
    return low + (config.lr - low) * 0.5 * (1 + math.cos(math.pi * progress))


def _save_checkpoint(path: Path, model: VQCodecModel, optimizer: torch.optim.Optimizer, step: int, config: TrainConfig) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"step": str(step), "config": model.config.to_json(), "model_id": config.model_id})
    tmp.replace(path)


def _load_checkpoint(path: Path, model: VQCodecModel, optimizer: torch.optim.Optimizer) -> int:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        step = int((handle.metadata() or {})["step"])
    tensors = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state = optimizer.state_dict()
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state["state"].setdefault(int(index), {})[name] = value
    optimizer.load_state_dict(state)
    return step


@torch.no_grad()
def validate(model: VQCodecModel, images: list, device: torch.device, levels: list[int], size: int = 256) -> dict[int, float]:
    """Mean PSNR (dB, on 8-bit-rounded output) of centre crops per number of stages."""
    model.eval()
    crops = []
    for image in images:
        h, w = image.shape[:2]
        s = min(size, h, w) // model.config.downsampling * model.config.downsampling
        if s == 0:  # smaller than one latent cell
            continue
        y, x = (h - s) // 2, (w - s) // 2
        crops.append(torch.from_numpy(image[y : y + s, x : x + s].copy()).permute(2, 0, 1).float().div(255))
    result: dict[int, float] = {}
    if not crops:  # no usable held-out image: nothing to report
        model.train()
        return result
    for level in levels:
        psnrs = []
        for crop in crops:
            x = crop[None].to(device)
            x_hat = model.decode_indices(model.encode_indices(x, level))
            mse = F.mse_loss(torch.round(x_hat * 255), torch.round(x * 255)).item()
            psnrs.append(10 * math.log10(255**2 / max(mse, 1e-10)))
        result[level] = sum(psnrs) / len(psnrs)
    model.train()
    return result


def sample_stages(config: TrainConfig, generator: torch.Generator | None = None) -> Tensor:
    """(batch,) int64 in [1, S]: how many stages each sample keeps (stage dropout).

    A share ``full_stage_fraction`` of the batch keeps all ``S`` stages, so the top stages'
    codebooks and the decoder's finest inputs train on more than ``1/S`` of the samples; the
    rest draw uniformly from ``1..S``, so every quality level keeps training.
    """
    batch, top = config.batch, config.model.num_stages
    stages = torch.randint(1, top + 1, (batch,), generator=generator)
    full = round(batch * config.full_stage_fraction)
    if full:
        stages[:full] = top
    return stages


def _grow_from(config: TrainConfig, sampler: CropSampler, device: torch.device) -> VQCodecModel:
    """The config's architecture grown from ``init_from`` (see codec/grow.py), new stages
    initialised by k-means on residuals of real training latents."""
    from safetensors import safe_open

    from vqz.codec.config import ModelConfig
    from vqz.codec.grow import grow_model, init_new_stages

    path = Path(config.init_from)
    try:
        with safe_open(str(path), framework="pt") as handle:
            old_config = ModelConfig.from_json((handle.metadata() or {})["config"])
        tensors = load_file(str(path))
    except (OSError, KeyError, ValueError) as exc:
        raise VqzError(f"cannot grow from {path}: {exc}") from None
    old_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    model = grow_model(old_state, old_config, config.model, seed=config.seed).to(device)
    if config.model.num_stages > old_config.num_stages:
        with torch.no_grad():
            model.eval()
            latents = torch.cat([model.g_a(sampler.sample(16).to(device)) for _ in range(8)])
            model.train()
        init_new_stages(model, latents, old_config.num_stages)
    return model


def _kmeans_initialize(model: VQCodecModel, sampler: CropSampler, device: torch.device, batches: int = 8) -> None:
    with torch.no_grad():
        latents = [model.g_a(sampler.sample(16).to(device)) for _ in range(batches)]
    flat = torch.cat([z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]) for z in latents])
    model.quantizer._kmeans_init(flat)


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Run (or resume) training; returns the path of the last checkpoint."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(__import__("json").dumps(asdict(config), indent=2))
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    train_images, val_images, val_names = load_split(Path(config.data), config.validation_fraction)
    (out / "validation_files.txt").write_text("\n".join(val_names) + "\n")
    try:
        sampler = CropSampler(train_images, config.crop, config.seed)
    except ValueError as exc:
        raise VqzError(f"{config.data}: {exc}") from None

    checkpoint = out / "checkpoint.safetensors"
    resuming = resume and checkpoint.exists()
    if config.init_from and not resuming:
        model = _grow_from(config, sampler, device)
    else:
        model = VQCodecModel(config.model).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    step = 0
    if resuming:
        step = _load_checkpoint(checkpoint, model, optimizer)
        sampler.rng = __import__("numpy").random.default_rng(config.seed + step)
    log_path = out / "log.csv"
    new_log = not log_path.exists() or not resume
    log = open(log_path, "w" if new_log else "a", newline="")
    writer = csv.writer(log)
    levels = sorted({1, max(1, config.model.num_stages // 2), config.model.num_stages})
    if new_log:
        writer.writerow(["step", "phase", "lr", "loss", "train_psnr", "elapsed_s"] + [f"val_psnr_s{l}" for l in levels])

    model.train()
    started = time.time()
    last_checkpoint = time.time()
    running_loss, running_psnr, count = 0.0, 0.0, 0
    columns = [TextColumn("[bold]train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("train", total=config.steps, completed=step, status="")
        while step < config.steps:
            quantize = step >= config.warmup_steps
            if quantize and not bool(model.quantizer.initialized):
                _kmeans_initialize(model, sampler, device)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, step)
            x = sampler.sample(config.batch).to(device)
            stages = sample_stages(config).to(device) if quantize else None
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16"):
                result = model(x, stages)
            mse = F.mse_loss(result["x_hat"].float(), x)
            loss = mse + config.commitment_weight * result["commitment"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            running_loss += loss.item()
            running_psnr += -10 * math.log10(max(mse.item(), 1e-10))
            count += 1
            bar.update(task, completed=step, status=f"loss {running_loss / count:.5f} psnr {running_psnr / count:.2f}dB")

            is_last = step == config.steps
            if step % config.validate_every == 0 or is_last:
                val = validate(model, val_images, device, levels) if quantize else {}
                writer.writerow([step, "vq" if quantize else "ae", f"{learning_rate(config, step):.3g}",
                                 f"{running_loss / count:.6f}", f"{running_psnr / count:.3f}", f"{time.time() - started:.0f}"]
                                + [f"{val.get(l, float('nan')):.3f}" for l in levels])
                log.flush()
                running_loss, running_psnr, count = 0.0, 0.0, 0
            if is_last or time.time() - last_checkpoint > config.checkpoint_minutes * 60:
                _save_checkpoint(checkpoint, model, optimizer, step, config)
                last_checkpoint = time.time()
    log.close()
    return checkpoint
