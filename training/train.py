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
measured on the training split and frozen into the final weights (``vqz export-model``).

Under ``torchrun`` (see :mod:`vqz.training.distributed`) the same function trains with
DistributedDataParallel: ``batch`` is the global batch, split evenly over the ranks; every
rank draws the random choices of the whole global batch from the same streams and keeps its
own share, so a step sees the same global batch on any number of processes; gradients are
averaged by DDP and the quantizer's EMA statistics summed (its ``sync`` hook), so every rank
holds the same model; rank 0 alone writes the run folder.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from vqz.training import distributed
from vqz.codec.config import ModelConfig
from vqz.training.data import CropSampler, load_split
from vqz.training.loop import (CsvLog, RunClock, RunConfig, apply_checkpoint, autocast_enabled, is_due,
                               progress_bar, read_checkpoint, save_checkpoint)
from vqz.training.loop import learning_rate as schedule
from vqz.training.model import VQCodecModel
from vqz.errors import VqzError


@dataclass(frozen=True, kw_only=True)
class TrainConfig(RunConfig):
    """Everything a training run depends on (:class:`~vqz.training.loop.RunConfig` and the model's own).
    The transforms run under bf16 autocast with ``precision = "bf16"``; the quantizer stays float32."""

    model_id: str = "vqz-rvq-f8"
    warmup_steps: int = 600
    lr: float = 2e-4
    lr_final_fraction: float = 0.1
    commitment_weight: float = 0.25
    validate_every: int = 250
    checkpoint_minutes: float = 5.0
    full_stage_fraction: float = 0.0  # share of each batch that keeps every trained stage; the rest draw 1..T uniformly
    train_stages: int = 0  # T: the most stages a sample keeps (0: all S); later stages' codebooks then stay as they are
    lr_ramp_steps: int = 0  # linear ramp of the learning rate from 0 over the first steps of a run
    init_from: str = ""  # checkpoint of a smaller model to grow from (training/grow.py) when no checkpoint exists
    max_minutes: float = 0.0  # stop cleanly after this much training time (0: no limit); the LR decays by time then
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.crop % self.model.downsampling:
            raise VqzError(f"`crop` must be a multiple of {self.model.downsampling}, got {self.crop}")
        if not 0 <= self.warmup_steps <= self.steps:
            raise VqzError("`warmup_steps` must be in [0, steps]")
        if not 0.0 <= self.full_stage_fraction <= 1.0:
            raise VqzError(f"`full_stage_fraction` must be in [0, 1], got {self.full_stage_fraction}")
        if not 0 <= self.train_stages <= self.model.num_stages:
            raise VqzError(f"`train_stages` must be in [0, {self.model.num_stages}] (0: every stage), got {self.train_stages}")
        if self.lr_ramp_steps < 0:
            raise VqzError("`lr_ramp_steps` must be >= 0")
        if self.max_minutes < 0:
            raise VqzError("`max_minutes` must be >= 0 (0: no time limit)")

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


def learning_rate(config: TrainConfig, step: int, time_fraction: float = 0.0) -> float:
    """The run's learning rate at ``step`` (:func:`vqz.training.loop.learning_rate`: ramp, constant, cosine
    decay to ``lr * lr_final_fraction`` over the last 40% of the steps or of the time budget)."""
    return schedule(config.lr, step, config.steps, config.lr_final_fraction, config.lr_ramp_steps, time_fraction)


MODULES = "model"
OPTIMIZER = "optim"


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


def trained_stages(config: TrainConfig) -> int:
    """``T``: the most stages a training sample keeps (``train_stages``, or every stage ``S`` when 0)."""
    return config.train_stages or config.model.num_stages


def validation_levels(config: TrainConfig) -> list[int]:
    """Stage counts the held-out PSNR is logged at: every one up to 4 trained stages, else 1, T/2 and T."""
    top = trained_stages(config)
    if top <= 4:
        return list(range(1, top + 1))
    return sorted({1, top // 2, top})


def sample_stages(config: TrainConfig, generator: torch.Generator | None = None) -> Tensor:
    """(batch,) int64 in [1, T]: how many stages each sample keeps (stage dropout).

    A share ``full_stage_fraction`` of the batch keeps all ``T`` trained stages (``train_stages``,
    default every stage ``S``), so the top stages' codebooks and the decoder's finest inputs train on
    more than ``1/T`` of the samples; the rest draw uniformly from ``1..T``, so every quality level
    keeps training. With ``T < S`` the decoder spends its capacity on the levels a product uses
    (the quality ladder codes at most four stages, :mod:`vqz.codec.levels`).
    """
    batch, top = config.batch, trained_stages(config)
    stages = torch.randint(1, top + 1, (batch,), generator=generator)
    full = round(batch * config.full_stage_fraction)
    if full:
        stages[:full] = top
    return stages


def _grow_from(config: TrainConfig, sampler: CropSampler, device: torch.device) -> VQCodecModel:
    """The config's architecture grown from ``init_from`` (see training/grow.py), new stages
    initialised by k-means on residuals of real training latents."""
    from vqz.training.finalize import load_checkpoint_model
    from vqz.training.grow import grow_model, init_new_stages

    try:
        old, _ = load_checkpoint_model(Path(config.init_from))
    except (OSError, KeyError, ValueError) as exc:
        raise VqzError(f"cannot grow from {config.init_from}: {exc}") from None
    model = grow_model(old.state_dict(), old.config, config.model, seed=config.seed).to(device)
    if config.model.num_stages > old.config.num_stages:
        with torch.no_grad():
            latents = torch.cat([model.g_a(sampler.sample(16).to(device)) for _ in range(8)])
        init_new_stages(model, latents, old.config.num_stages)
    return model


def _kmeans_initialize(model: VQCodecModel, sampler: CropSampler, device: torch.device, batches: int = 8) -> None:
    with torch.no_grad():
        latents = [model.g_a(sampler.sample(16).to(device)) for _ in range(batches)]
    flat = torch.cat([z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]) for z in latents])
    model.quantizer._kmeans_init(flat)


def _float_state(model: VQCodecModel) -> list[Tensor]:
    return [v for v in model.state_dict().values() if v.is_floating_point()]


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Run (or resume) training; returns the path of the last checkpoint.

    Under torchrun every rank calls this; the process group is joined here and left on return.
    """
    rank, world_size, _ = distributed.environment()
    if config.batch % world_size:
        raise VqzError(f"`batch` ({config.batch}) must be a multiple of the number of processes ({world_size})")
    context = distributed.setup()
    try:
        return _train(config, resume, progress, context)
    finally:
        distributed.teardown(context)


def _train(config: TrainConfig, resume: bool, progress: bool, context: distributed.Context) -> Path:
    main = context.is_main
    out = Path(config.out)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(asdict(config), indent=2))
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    device = context.device
    use_bf16 = autocast_enabled(config.precision, device, announce=main)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop size: let cuDNN pick its fastest kernels

    train_images, val_images, val_names = load_split(Path(config.data), config.validation_fraction)
    if main:
        (out / "validation_files.txt").write_text("\n".join(val_names) + "\n")
    try:
        sampler = CropSampler(train_images, config.crop, config.seed)
    except ValueError as exc:
        raise VqzError(f"{config.data}: {exc}") from None
    # this rank's share of the global batch (every rank draws the choices of all of it)
    local = config.batch // context.world_size
    part = range(context.rank * local, (context.rank + 1) * local) if context.distributed else None

    checkpoint = out / "checkpoint.safetensors"
    # rank 0's file system decides (the run folder need not be shared between nodes)
    resuming = bool(distributed.broadcast_scalar(float(main and resume and checkpoint.exists()), context))
    if config.init_from and not resuming:
        model = _grow_from(config, sampler, device)
    else:
        model = VQCodecModel(config.model).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    step = 0
    if resuming:
        tensors, metadata = read_checkpoint(checkpoint) if main else (None, None)
        if context.distributed:
            tensors, metadata = distributed.broadcast_tensor_dict(tensors, metadata, context)
        step = apply_checkpoint(tensors, metadata, {MODULES: model}, {OPTIMIZER: optimizer})
        sampler.rng = __import__("numpy").random.default_rng(config.seed + step)
    net: torch.nn.Module = model
    if context.distributed:
        from torch.nn.parallel import DistributedDataParallel

        distributed.broadcast_(_float_state(model))  # one starting point, bit for bit
        model.quantizer.sync = distributed.ReplicaSync()
        # the quantizer's buffers are kept identical by its sync hook, not re-sent every step
        import inspect

        no_buffer_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                          else {"broadcast_buffers": False})  # the name before torch 2.14
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None, **no_buffer_sync)

    levels = validation_levels(config)
    columns = ["step", "phase", "lr", "loss", "train_psnr", "elapsed_s"] + [f"val_psnr_s{l}" for l in levels]
    log = CsvLog(out / "log.csv", columns, resume) if main else None

    model.train()
    clock = RunClock(config.checkpoint_minutes, config.max_minutes)
    time_fraction = 0.0  # share of max_minutes spent (rank 0's clock), 0 without a time budget
    running_loss, running_psnr, count = 0.0, 0.0, 0
    with progress_bar("train", progress and main) as bar:
        task = bar.add_task("train", total=config.steps, completed=step, status="")
        is_last = step >= config.steps
        while not is_last:
            quantize = step >= config.warmup_steps
            if quantize and not bool(model.quantizer.initialized):
                _kmeans_initialize(model, sampler, device)
                if context.distributed:
                    distributed.broadcast_(_float_state(model.quantizer))
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, step, time_fraction)
            x = sampler.sample(config.batch, part, device)
            stages = None
            if quantize:
                stages = sample_stages(config)
                stages = (stages if part is None else stages[part.start : part.stop]).to(device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
                result = net(x, stages)
            mse = F.mse_loss(result["x_hat"].float(), x)
            loss = mse + config.commitment_weight * result["commitment"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            loss_value, mse_value = distributed.mean_over_ranks(torch.stack([loss.detach(), mse.detach()]), context).tolist()
            running_loss += loss_value
            running_psnr += -10 * math.log10(max(mse_value, 1e-10))
            count += 1
            bar.update(task, completed=step, status=f"loss {running_loss / count:.5f} psnr {running_psnr / count:.2f}dB")
            if config.max_minutes > 0:
                time_fraction = distributed.broadcast_scalar(clock.budget_fraction(), context)

            is_last = step >= config.steps or time_fraction >= 1.0
            validating = is_due(step, config.validate_every, config.steps) or is_last
            if main and validating:
                val = validate(model, val_images, device, levels) if quantize else {}
                log.row(step=step, phase="vq" if quantize else "ae", lr=f"{learning_rate(config, step, time_fraction):.3g}",
                        loss=f"{running_loss / count:.6f}", train_psnr=f"{running_psnr / count:.3f}",
                        elapsed_s=f"{clock.seconds:.0f}", **{f"val_psnr_s{l}": f"{val.get(l, float('nan')):.3f}" for l in levels})
            if validating:
                running_loss, running_psnr, count = 0.0, 0.0, 0
                if not distributed.replicas_agree(_float_state(model), context):
                    raise VqzError(f"step {step}: the processes' models diverged (parameters or codebooks differ)")
            if main and (is_last or clock.checkpoint_due()):
                save_checkpoint(checkpoint, {MODULES: model}, {OPTIMIZER: optimizer}, step,
                                {"config": model.config.to_json(), "model_id": config.model_id})
                clock.checkpointed()
    if log is not None:
        log.close()
    if context.distributed:
        model.quantizer.sync = None
        distributed.barrier(context)  # the checkpoint is written when any rank returns
    return checkpoint
