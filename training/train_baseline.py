"""Same-budget baselines: CompressAI's bmshj2018 models trained by ``vqz train``.

A training config with a ``family`` key (``"bmshj2018-factorized"`` or
``"bmshj2018-hyperprior"``) trains CompressAI's :class:`~compressai.models.FactorizedPrior`
or :class:`~compressai.models.ScaleHyperprior` on the same data, crops, batch size, number
of steps and seed as the vqz model, so the benchmark can compare the two at the same
training budget (not against CompressAI's published, fully trained weights).

The recipe follows CompressAI's ``examples/train.py``:

* loss = ``lmbda * 255**2 * MSE + bpp``, with bpp estimated from the likelihoods
  (:func:`rate_distortion_loss`);
* Adam on every parameter except the entropy bottleneck's ``quantiles``, which a second Adam
  (``aux_lr``) fits to the auxiliary loss (:meth:`CompressionModel.aux_loss`);
* gradient clipping at ``clip_max_norm``.

What is shared with the vqz training (:mod:`vqz.training.train`): the data split and crop
sampler (:mod:`vqz.training.data`), the learning-rate schedule (constant, then a cosine decay
over the last 40% of steps), safetensors checkpoints of model **and** optimizers written
every ``checkpoint_minutes`` and at the end (never pickle), ``resume``, ``log.csv`` and the
progress bar. Validation reports PSNR (8-bit-rounded output) and likelihood-estimated bpp
on centre crops of the held-out split (:func:`vqz.training.data.is_validation`).

:func:`export_baseline` turns a finished run into a small weights file for the benchmark
(``benchmarks/baselines/<family>-<lmbda>.safetensors``): the model's state dict after
``model.update(force=True)``, so the quantized CDF tables are frozen in the file, and
metadata naming the family, ``N``, ``M``, ``lmbda``, the steps trained and the data.
"""

from __future__ import annotations

import json
import math
import shutil
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from vqz.training.data import CropSampler, load_split
from vqz.training.loop import (CsvLog, RunClock, RunConfig, apply_checkpoint, autocast_enabled, is_due, learning_rate,
                               progress_bar, read_checkpoint, save_checkpoint)
from vqz.errors import VqzError

__all__ = [
    "FAMILIES",
    "WEIGHTS_FORMAT",
    "BaselineTrainConfig",
    "BaselineWeightsInfo",
    "build_model",
    "export_baseline",
    "load_baseline",
    "rate_distortion_loss",
    "read_baseline_info",
    "train_baseline",
    "validate_baseline",
]

FAMILIES: dict[str, str] = {
    "bmshj2018-factorized": "FactorizedPrior",
    "bmshj2018-hyperprior": "ScaleHyperprior",
}
"""Config ``family`` -> the :mod:`compressai.models` class it trains."""

DOWNSAMPLING: dict[str, int] = {"bmshj2018-factorized": 16, "bmshj2018-hyperprior": 64}
"""Image side / smallest latent side: crops must be multiples of it."""

WEIGHTS_FORMAT = "vqz-baseline-1"
"""``format`` metadata of an exported baseline weights file."""


def lmbda_name(lmbda: float) -> str:
    """The spelling of ``lmbda`` in run folders and weights file names (``0.0067``)."""
    return format(lmbda, "g")


@dataclass(frozen=True, kw_only=True)
class BaselineTrainConfig(RunConfig):
    """Everything a baseline training run depends on (:class:`~vqz.training.loop.RunConfig` and the
    family's own). ``out`` left empty means ``runs/<family>-<lmbda>``. With ``precision = "bf16"`` the
    transforms run under bf16 autocast; the entropy models stay float32.
    """

    family: str
    lmbda: float
    N: int = 128
    M: int = 192
    out: str = ""
    steps: int = 5500
    lr: float = 1e-4
    aux_lr: float = 1e-3
    lr_final_fraction: float = 0.1
    clip_max_norm: float = 1.0
    validate_every: int = 250
    checkpoint_minutes: float = 5.0
    snapshot_steps: tuple[int, ...] = ()  # also keep the checkpoint of these steps (checkpoint-<step>.safetensors)
    # a checkpoint of another lmbda's run of the same family, N and M (e.g. its snapshot at half the budget) to go
    # on from with this lmbda: its weights, optimizer state and step, so ``steps`` still counts the training pixels
    # of the model's whole lineage (the way vqz-rvq16b-f8's budget counts vqz-rvq8-f8's steps)
    branch_from: str = ""

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise VqzError(f"`family` must be one of {', '.join(FAMILIES)}, got {self.family!r}")
        numbers = {"lmbda": float, "lr": float, "aux_lr": float, "lr_final_fraction": float, "clip_max_norm": float,
                   "validation_fraction": float, "checkpoint_minutes": float,
                   "N": int, "M": int, "crop": int, "batch": int, "steps": int, "validate_every": int,
                   "seed": int, "threads": int}  # precision: a string, checked below
        for name, kind in numbers.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
                raise VqzError(f"`{name}` must be a{'n integer' if kind is int else ' number'}, got {value!r}")
            object.__setattr__(self, name, kind(value))
        for name in ("lmbda", "lr", "aux_lr", "N", "M", "crop", "batch", "steps", "validate_every", "checkpoint_minutes"):
            if getattr(self, name) <= 0:
                raise VqzError(f"`{name}` must be positive, got {getattr(self, name)}")
        if not isinstance(self.snapshot_steps, (list, tuple)) or not all(isinstance(v, int) and v > 0 for v in self.snapshot_steps):
            raise VqzError(f"`snapshot_steps` must be a list of positive step numbers, got {self.snapshot_steps!r}")
        object.__setattr__(self, "snapshot_steps", tuple(self.snapshot_steps))
        super().__post_init__()
        if self.crop % DOWNSAMPLING[self.family]:
            raise VqzError(f"`crop` must be a multiple of {DOWNSAMPLING[self.family]} for {self.family}, got {self.crop}")
        if not self.out:
            object.__setattr__(self, "out", f"runs/{self.family}-{lmbda_name(self.lmbda)}")

    @classmethod
    def from_toml(cls, path: Path, overrides: dict[str, object] | None = None) -> BaselineTrainConfig:
        return cls.from_dict(tomllib.loads(Path(path).read_text()), overrides)

    @classmethod
    def from_dict(cls, data: dict[str, Any], overrides: dict[str, object] | None = None) -> BaselineTrainConfig:
        data = {**data, **(overrides or {})}
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise VqzError(f"unknown baseline training option(s): {', '.join(sorted(unknown))}")
        for name in ("family", "lmbda"):
            if name not in data:
                raise VqzError(f"a baseline training config needs `{name}`")
        return cls(**data)


def build_model(family: str, N: int, M: int) -> torch.nn.Module:
    """A freshly initialised CompressAI model of ``family`` with ``N``/``M`` channels."""
    from compressai import models

    if family not in FAMILIES:
        raise VqzError(f"unknown baseline family {family!r}; known: {', '.join(FAMILIES)}")
    return getattr(models, FAMILIES[family])(N, M)


def keep_entropy_models_float32(model: torch.nn.Module) -> None:
    """Run every entropy model of ``model`` (EntropyBottleneck, GaussianConditional) in float32 with autocast off,
    whatever the precision around it: likelihoods in bf16 (8 bits of mantissa) would misestimate the rate."""
    from compressai.entropy_models import EntropyModel

    for module in model.modules():
        if isinstance(module, EntropyModel):
            forward = module.forward

            def float32_forward(*args, _forward=forward, **kwargs):
                args = [a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args]
                with torch.autocast(device_type="cpu", enabled=False), torch.autocast(device_type="cuda", enabled=False):
                    return _forward(*args, **kwargs)

            module.forward = float32_forward


def rate_distortion_loss(output: dict[str, Any], target: torch.Tensor, lmbda: float) -> dict[str, torch.Tensor]:
    """CompressAI's ``RateDistortionLoss``: ``lmbda * 255**2 * MSE + bpp``.

    ``output`` is a model's ``forward`` result; ``target`` the (B, 3, H, W) input in [0, 1].
    ``bpp`` is the likelihood estimate: ``sum(-log2 p) / (B * H * W)``.
    """
    batch, _, height, width = target.shape
    pixels = batch * height * width
    bpp = sum(torch.log(p).sum() for p in output["likelihoods"].values()) / (-math.log(2) * pixels)
    mse = F.mse_loss(output["x_hat"], target)
    return {"loss": lmbda * 255**2 * mse + bpp, "mse": mse, "bpp": bpp}


def _parameter_groups(model: torch.nn.Module) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """(main parameters, entropy-bottleneck ``quantiles``), as in CompressAI's examples/train.py."""
    main = [p for n, p in model.named_parameters() if not n.endswith(".quantiles") and p.requires_grad]
    aux = [p for n, p in model.named_parameters() if n.endswith(".quantiles") and p.requires_grad]
    return main, aux


def _checkpoint_metadata(path: Path, metadata: dict[str, str]) -> dict[str, str]:
    for key in ("step", "family", "config"):
        if key not in metadata:
            raise VqzError(f"{path} is not a baseline training checkpoint (no `{key}` in its metadata)")
    return metadata


def _load_checkpoint(path: Path, model: torch.nn.Module, optimizers: dict[str, torch.optim.Optimizer],
                     config: BaselineTrainConfig) -> int:
    tensors, metadata = read_checkpoint(path)
    saved = json.loads(_checkpoint_metadata(path, metadata)["config"])
    for key in ("family", "N", "M"):
        if saved.get(key) != getattr(config, key):
            raise VqzError(f"{path} was trained with {key} = {saved.get(key)!r}, the config says {getattr(config, key)!r}; "
                           "use another `out` folder or drop --resume")
    return apply_checkpoint(tensors, metadata, {"model": model}, optimizers)


def _centre_crops(images: list, size: int, multiple: int) -> list[torch.Tensor]:
    crops = []
    for image in images:
        h, w = image.shape[:2]
        s = min(size, h, w) // multiple * multiple
        if s == 0:
            continue
        y, x = (h - s) // 2, (w - s) // 2
        crops.append(torch.from_numpy(image[y : y + s, x : x + s].copy()).permute(2, 0, 1).float().div(255))
    return crops


@torch.no_grad()
def validate_baseline(model: torch.nn.Module, images: list, device: torch.device, family: str,
                      size: int = 256) -> dict[str, float]:
    """Mean PSNR (dB, 8-bit-rounded output) and likelihood-estimated bpp on centre crops.

    Crops are ``min(size, H, W)`` rounded down to the model's downsampling factor; images
    smaller than that are skipped. Both values are NaN when no image is left.
    """
    crops = _centre_crops(images, size, DOWNSAMPLING[family])
    if not crops:
        return {"psnr": math.nan, "bpp": math.nan}
    was_training = model.training
    model.eval()
    psnrs, bpps = [], []
    for crop in crops:
        x = crop[None].to(device)
        output = model(x)
        x_hat = output["x_hat"].clamp(0, 1)
        mse = F.mse_loss(torch.round(x_hat * 255), torch.round(x * 255)).item()
        psnrs.append(10 * math.log10(255**2 / max(mse, 1e-10)))
        bpps.append(rate_distortion_loss(output, x, 0.0)["bpp"].item())
    model.train(was_training)
    return {"psnr": sum(psnrs) / len(psnrs), "bpp": sum(bpps) / len(bpps)}


LOG_COLUMNS = ["step", "lr", "loss", "mse", "bpp", "aux_loss", "train_psnr", "elapsed_s", "val_psnr", "val_bpp"]


def train_baseline(config: BaselineTrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Run (or resume) a baseline training; returns the path of the last checkpoint."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(asdict(config), indent=2))
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    train_images, val_images, val_names = load_split(Path(config.data), config.validation_fraction)
    (out / "validation_files.txt").write_text("".join(name + "\n" for name in val_names))
    try:
        sampler = CropSampler(train_images, config.crop, config.seed)
    except ValueError as exc:
        raise VqzError(f"{config.data}: {exc}") from exc

    # channels-last activations: oneDNN's convolutions skip their layout reorders (1.5x the steps per second of
    # one CPU thread, both families, bf16, session 19); the values are the same computation in another order
    model = build_model(config.family, config.N, config.M).to(device, memory_format=torch.channels_last)
    keep_entropy_models_float32(model)
    use_bf16 = autocast_enabled(config.precision, device)
    main_parameters, aux_parameters = _parameter_groups(model)
    optimizer = torch.optim.Adam(main_parameters, lr=config.lr)
    aux_optimizer = torch.optim.Adam(aux_parameters, lr=config.aux_lr)
    optimizers = {"optim": optimizer, "aux_optim": aux_optimizer}
    checkpoint = out / "checkpoint.safetensors"
    step = 0
    if resume and checkpoint.exists():
        step = _load_checkpoint(checkpoint, model, optimizers, config)
    elif config.branch_from:
        step = _load_checkpoint(Path(config.branch_from), model, optimizers, config)
        if step >= config.steps:
            raise VqzError(f"{config.branch_from} is at step {step}, past this run's {config.steps} steps")
    if step:
        sampler.rng = __import__("numpy").random.default_rng(config.seed + step)
        torch.manual_seed(config.seed + step)
    model.train()
    clock = RunClock(config.checkpoint_minutes)
    totals = dict.fromkeys(("loss", "mse", "bpp", "aux", "psnr"), 0.0)
    count = 0
    with CsvLog(out / "log.csv", LOG_COLUMNS, resume) as log, progress_bar(f"train {config.family}", progress) as bar:
        task = bar.add_task("train", total=config.steps, completed=step, status="")
        while step < config.steps:
            lr = learning_rate(config.lr, step, config.steps, config.lr_final_fraction)  # the vqz models' schedule
            for group in optimizer.param_groups:
                group["lr"] = lr
            x = sampler.sample(config.batch).to(device).contiguous(memory_format=torch.channels_last)
            optimizer.zero_grad(set_to_none=True)
            aux_optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
                output = model(x)
            output["x_hat"] = output["x_hat"].float()
            terms = rate_distortion_loss(output, x, config.lmbda)
            terms["loss"].backward()
            if config.clip_max_norm > 0:
                torch.nn.utils.clip_grad_norm_(main_parameters, config.clip_max_norm)
            optimizer.step()
            aux_loss = model.aux_loss()
            aux_loss.backward()
            aux_optimizer.step()
            step += 1
            count += 1
            totals["loss"] += terms["loss"].item()
            totals["mse"] += terms["mse"].item()
            totals["bpp"] += terms["bpp"].item()
            totals["aux"] += aux_loss.item()
            totals["psnr"] += -10 * math.log10(max(terms["mse"].item(), 1e-10))
            bar.update(task, completed=step, status=f"loss {totals['loss'] / count:.4f} "
                       f"psnr {totals['psnr'] / count:.2f}dB bpp {totals['bpp'] / count:.3f}")

            is_last = step == config.steps
            if is_due(step, config.validate_every, config.steps):
                val = validate_baseline(model, val_images, device, config.family)
                log.row(step=step, lr=f"{lr:.3g}", loss=f"{totals['loss'] / count:.6f}", mse=f"{totals['mse'] / count:.6f}",
                        bpp=f"{totals['bpp'] / count:.4f}", aux_loss=f"{totals['aux'] / count:.3f}",
                        train_psnr=f"{totals['psnr'] / count:.3f}", elapsed_s=f"{clock.seconds:.0f}",
                        val_psnr=f"{val['psnr']:.3f}", val_bpp=f"{val['bpp']:.4f}")
                totals = dict.fromkeys(totals, 0.0)
                count = 0
            if is_last or step in config.snapshot_steps or clock.checkpoint_due():
                save_checkpoint(checkpoint, {"model": model}, optimizers, step,
                                {"family": config.family, "config": json.dumps(asdict(config))})
                clock.checkpointed()
                if step in config.snapshot_steps:
                    shutil.copyfile(checkpoint, out / f"checkpoint-{step}.safetensors")
    return checkpoint


@dataclass(frozen=True)
class BaselineWeightsInfo:
    """The metadata of an exported baseline weights file (:func:`export_baseline`)."""

    path: Path
    family: str
    N: int
    M: int
    lmbda: float
    steps: int
    config_steps: int
    batch: int
    crop: int
    data: str


def export_baseline(run: Path, output: Path) -> BaselineWeightsInfo:
    """Write ``output`` (safetensors): the run's model with its CDF tables built.

    Reads ``run/checkpoint.safetensors``, calls ``model.update(force=True)`` (quantized
    CDFs of the entropy bottleneck and, for the hyperprior, the Gaussian conditional's
    scale table), and stores the full state dict, buffers included, with metadata
    ``format``, ``family``, ``N``, ``M``, ``lmbda``, ``steps`` (trained), ``config_steps``,
    ``batch``, ``crop``, ``data``. No optimizer state, no pickle.
    """
    checkpoint = Path(run) / "checkpoint.safetensors"
    if not checkpoint.exists():
        raise VqzError(f"{checkpoint} does not exist: train first (vqz train CONFIG.toml)")
    tensors, metadata = read_checkpoint(checkpoint)
    config = BaselineTrainConfig.from_dict(json.loads(_checkpoint_metadata(checkpoint, metadata)["config"]))
    model = build_model(config.family, config.N, config.M)
    apply_checkpoint(tensors, metadata, {"model": model})
    model.eval()
    model.update(force=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    info = {"format": WEIGHTS_FORMAT, "family": config.family, "N": str(config.N), "M": str(config.M),
            "lmbda": repr(config.lmbda), "steps": metadata["step"], "config_steps": str(config.steps),
            "batch": str(config.batch), "crop": str(config.crop), "data": config.data,
            "trained_by": "vqz train (vqz.training.train_baseline)"}
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    save_file(state, str(tmp), metadata=info)
    tmp.replace(output)
    return read_baseline_info(output)


def read_baseline_info(path: Path) -> BaselineWeightsInfo:
    """The metadata of a baseline weights file; :class:`VqzError` if it is not one."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types for a bad header
        raise VqzError(f"{path} is not a safetensors file: {exc}") from exc
    if metadata.get("format") != WEIGHTS_FORMAT:
        raise VqzError(f"{path} is not a baseline weights file (format {metadata.get('format')!r}, "
                       f"expected {WEIGHTS_FORMAT!r})")
    try:
        return BaselineWeightsInfo(
            path=Path(path), family=metadata["family"], N=int(metadata["N"]), M=int(metadata["M"]),
            lmbda=float(metadata["lmbda"]), steps=int(metadata["steps"]), config_steps=int(metadata["config_steps"]),
            batch=int(metadata["batch"]), crop=int(metadata["crop"]), data=metadata["data"])
    except (KeyError, ValueError) as exc:
        raise VqzError(f"{path}: bad baseline metadata: {exc}") from exc


def load_baseline(path: Path) -> tuple[torch.nn.Module, BaselineWeightsInfo]:
    """The model of a baseline weights file, in eval mode, ready for ``compress``/``decompress``."""
    info = read_baseline_info(path)
    model = build_model(info.family, info.N, info.M)
    model.load_state_dict(load_file(str(path)))  # CompressAI resizes the CDF buffers to the stored ones
    return model.eval(), info
