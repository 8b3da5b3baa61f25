"""Train a light synthesis for an installed model: a cheaper decoder of the same codes (``vqz decode --fast``).

The model's analysis transform, codebooks and entropy tables stay as they are, so every ``.vqz`` file of the
model decodes with either synthesis (:mod:`vqz.codec.light` at run time). The light synthesis has the
shape of the model's own (:func:`light_synthesis`): a 3x3 convolution and ``head_blocks`` residual blocks
at latent resolution (``channels`` wide, started from the model's own first layers), then three stride-2
transposed convolutions with inverse GDNs, ``tail_channels`` wide: the full-resolution layers, which hold
about 90% of the model synthesis' work, are where it is lighter.

It is trained against the original pixels, not against the model's decoded image: a decode at a
stage-only level (1-4) shows the light synthesis' output as it is, without the post-filter that the
model's decoder applies, so it learns the filter's job too. Data are the realistic synthesis' cached codes
(:func:`vqz.training.realism.cache_codes`: each training photo coded once to the stage-only levels' stages);
a sample is an aligned crop decoded from a random stage count k in 1..PURE_LEVELS. Loss: mean squared
error on the [0, 1] scale, float32 (the transforms under bf16 autocast where the CPU has it natively).

Validation (``<out>/log.csv`` every ``validate_every`` steps): PSNR of 8-bit output on centre crops of the
held-out photos for k = 1..4, beside the model's own synthesis on the same crops (step 0).
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vqz.codec.light import LightConfig
from vqz.errors import VqzError
from vqz.training.codes import cached_splits, code_sampler, start_run, validate
from vqz.training.compressai_layers import GDN, ResidualBlock, conv, deconv
from vqz.training.loop import CodeGridRunConfig, CsvLog, RunClock, cosine_lr, is_due, load_checkpoint, save_checkpoint
from vqz.training.model import torch_model

__all__ = ["LightAnalysisTrainConfig", "LightTrainConfig", "light_analysis_head", "light_synthesis", "train_light",
           "train_light_analysis"]


def light_synthesis(config: LightConfig) -> nn.Sequential:
    """The light synthesis network of ``config``: (B, latent_dim, h, w) -> (B, 3, 8h, 8w), unclamped.

    Layer names follow the model's ``g_s`` (``0`` the first convolution, ``1..head_blocks`` the residual
    blocks, then the transposed convolutions and inverse GDNs), so the first ``1 + head_blocks`` layers can
    start from the model's."""
    n = config.channels
    layers: list[nn.Module] = [conv(config.latent_dim, n, kernel_size=3, stride=1)]
    layers += [ResidualBlock(n, n) for _ in range(config.head_blocks)]
    widths = [n, *config.tail_channels, 3]
    for i in range(len(widths) - 1):
        layers.append(deconv(widths[i], widths[i + 1], kernel_size=5, stride=2))
        if i < len(widths) - 2:
            layers.append(GDN(widths[i + 1], inverse=True))
    return nn.Sequential(*layers)


@dataclass(frozen=True, kw_only=True)
class LightTrainConfig(CodeGridRunConfig):
    """A light synthesis run: :class:`~vqz.training.loop.CodeGridRunConfig` and the options below."""

    out: str = "runs/light"
    steps: int = 12000
    batch: int = 16
    lr: float = 3e-4  # Adam, 200 warm-up steps, cosine decay to lr / 30
    head_blocks: int = 2  # residual blocks at latent resolution (the model's own has 1 + latent_blocks)
    tail_channels: tuple[int, ...] = (64, 32)  # widths after the first two transposed convolutions
    heldout_images: int = 16
    heldout_crop: int = 256
    checkpoint_every: int = 500
    validate_every: int = 1000
    cache: str | None = "runs/realism-codes"  # folder of the coded images, shared with the realism trainer
    init: str | None = None  # a light synthesis checkpoint to start from (a fresh run: new Adam state and schedule)

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.tail_channels) != 2 or min(self.tail_channels) < 1 or self.head_blocks < 0:
            raise VqzError("`tail_channels` takes two widths and `head_blocks` is at least 0")

    def light_config(self, latent_dim: int, channels: int) -> LightConfig:
        return LightConfig(latent_dim=latent_dim, channels=channels, head_blocks=self.head_blocks,
                           tail_channels=tuple(self.tail_channels))


def _step(optimizer: torch.optim.Optimizer, prediction: torch.Tensor, target: torch.Tensor) -> float:
    """One Adam step on the mean squared error (float32) of ``prediction``; returns the loss."""
    loss = (prediction.float() - target).square().mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def _start_from_model(light: nn.Sequential, faithful: nn.Sequential, head_blocks: int) -> None:
    """Copy the model synthesis' first convolution and first ``head_blocks`` residual blocks into ``light``."""
    for index in range(1 + head_blocks):
        light[index].load_state_dict(faithful[index].state_dict())


def train_light(cfg: LightTrainConfig, resume: bool = False, log=print) -> Path:
    """Train (or continue) a light synthesis; returns the checkpoint path (``<out>/light.safetensors``)."""
    from vqz.codec.levels import PURE_LEVELS

    clock = RunClock()
    weights, out, checkpoint, use_bf16 = start_run(cfg, "light.safetensors")
    sampler, held = code_sampler(cfg, weights.codebooks, log)
    codebooks = weights.codebooks

    faithful = torch_model(weights).g_s.eval()
    config = cfg.light_config(weights.config.latent_dim, weights.config.channels)
    light = light_synthesis(config)
    _start_from_model(light, faithful, cfg.head_blocks)
    if cfg.init and not (resume and checkpoint.exists()):
        load_checkpoint(Path(cfg.init), {"g_s": light})
        log(f"started from {cfg.init}")
    light.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(light.parameters(), lr=cfg.lr)
    # base_model_id, not model_id: a weights folder must not take the checkpoint for the model itself
    metadata = {"config": json.dumps(asdict(cfg)), "light_config": config.to_json(), "base_model_id": weights.model_id}
    start = 0
    if resume and checkpoint.exists():
        start = load_checkpoint(checkpoint, {"g_s": light}, {"g_s.opt": optimizer})
        sampler.rng = np.random.default_rng(cfg.seed + start)
        log(f"resumed at step {start}")
    columns = ["step", "lr", "mse", "minutes"] + [f"psnr_k{k}" for k in range(1, PURE_LEVELS + 1)]
    csv_log = CsvLog(out / "log.csv", columns, resume and start > 0)
    if start == 0:
        base = validate(faithful, held, codebooks, cfg.heldout_crop, PURE_LEVELS)
        log("model synthesis: " + ", ".join(f"k{k} {p:.2f} dB" for k, (p, _) in base.items()))
        csv_log.row(step="model", **{f"psnr_k{k}": p for k, (p, _) in base.items()})
    running = 0.0
    for step in range(start, cfg.steps):
        lr = cosine_lr(cfg.lr, step, cfg.steps, warmup=200, floor=cfg.lr / 30)
        for group in optimizer.param_groups:
            group["lr"] = lr
        image, latent, _ = sampler.sample(cfg.batch)
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16, enabled=use_bf16):
            decoded = light(latent.contiguous(memory_format=torch.channels_last))
        loss = _step(optimizer, decoded, image)
        running = loss if step == start else 0.98 * running + 0.02 * loss
        done = step + 1
        if is_due(done, cfg.checkpoint_every, cfg.steps):
            save_checkpoint(checkpoint, {"g_s": light}, {"g_s.opt": optimizer}, done, metadata)
        if is_due(done, cfg.validate_every, cfg.steps):
            scores = validate(light, held, codebooks, cfg.heldout_crop, PURE_LEVELS)
            minutes = clock.seconds / 60
            csv_log.row(step=done, lr=lr, mse=running, minutes=round(minutes, 1),
                        **{f"psnr_k{k}": p for k, (p, _) in scores.items()})
            log(f"step {done}: mse {running:.5f}; " + ", ".join(f"k{k} {p:.2f} dB" for k, (p, _) in scores.items())
                + f"; {minutes:.1f} min")
    csv_log.close()
    return checkpoint


def load_light(checkpoint: Path) -> tuple[nn.Sequential, LightConfig, dict[str, str]]:
    """(network in eval mode, its config, the checkpoint's metadata) of a light synthesis training checkpoint."""
    from safetensors import safe_open

    with safe_open(str(checkpoint), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
    if "light_config" not in metadata:
        raise VqzError(f"{checkpoint} is not a light synthesis checkpoint (written by `vqz train-light`)")
    config = LightConfig.from_json(metadata["light_config"])
    network = light_synthesis(config)
    load_checkpoint(checkpoint, {"g_s": network})
    return copy.deepcopy(network).eval(), config, metadata


def light_analysis_head(widths: tuple[int, ...]) -> nn.Sequential:
    """A light head for the model's analysis: stride-2 5x5 convolutions ``3 -> widths[0] -> ... -> widths[-1]``,
    each followed by a GDN: (B, 3, H, W) -> (B, widths[-1], H/2^n, W/2^n). ``widths[-1]`` is the model's
    ``channels``: the model's own analysis tail (its latent-resolution layers) runs after it."""
    layers: list[nn.Module] = []
    channels = 3
    for width in widths:
        layers += [conv(channels, width, kernel_size=5, stride=2), GDN(width)]
        channels = width
    return nn.Sequential(*layers)


@dataclass(frozen=True, kw_only=True)
class LightAnalysisTrainConfig(CodeGridRunConfig):
    """A light analysis run (``vqz encode --fast``): a light head distilled from the model's analysis.

    The loss is the mean squared difference between the model's latent and the latent of the light head
    followed by the model's own (frozen) analysis tail, on random crops of the training photos, so the
    light encoder picks mostly the same codes. The model's latents of the training photos are computed
    once by the runtime and cached in ``<out>/latents`` (float16)."""

    out: str = "runs/light-analysis"
    steps: int = 8000
    batch: int = 16
    lr: float = 5e-4
    widths: tuple[int, ...] = (48, 64, 128)  # the head's widths; the last is the model's channels
    heldout_images: int = 16
    checkpoint_every: int = 250
    validate_every: int = 500
    cache: str | None = "runs/realism-codes"  # the coded photos (pixels) shared with the other decoder trainers



def _cached_latents(weights, items: list[Path], folder: Path, log) -> list[dict[str, np.ndarray]]:
    """(pixels, the model's latent (M, H/8, W/8) float16) of each cached photo, the latents computed once."""
    from vqz.codec import pipeline

    folder.mkdir(parents=True, exist_ok=True)
    out, started = [], time.time()
    for number, path in enumerate(items):
        rgb = np.load(path)["rgb"]
        target = folder / path.parent.name / path.name  # e.g. latents/train-whole/<photo>.npz
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            latent = pipeline.encode_latent(weights, rgb).transpose(2, 0, 1).astype(np.float16)
            tmp = target.with_suffix(".tmp.npz")
            np.savez(tmp, latent=latent)
            tmp.replace(target)
            if (number + 1) % 100 == 0:
                log(f"latents of {number + 1}/{len(items)} photos, {time.time() - started:.0f} s")
        out.append({"rgb": rgb, "latent": np.load(target)["latent"]})
    return out


def train_light_analysis(cfg: LightAnalysisTrainConfig, resume: bool = False, log=print) -> Path:
    """Train (or continue) a light analysis head; returns the checkpoint path (``<out>/light.safetensors``)."""
    from vqz.codec.tiling import analysis_split

    weights, out, checkpoint, use_bf16 = start_run(cfg, "light.safetensors")
    if cfg.widths[-1] != weights.config.channels or len(cfg.widths) != weights.config.downsampling_log2:
        raise VqzError(f"`widths` needs {weights.config.downsampling_log2} widths ending with {weights.config.channels}")
    train_files, held_files = cached_splits(cfg, log)
    train_items = _cached_latents(weights, train_files, out / "latents", log)
    held = _cached_latents(weights, held_files, out / "latents", log)
    items = [it for it in train_items if min(it["rgb"].shape[:2]) >= cfg.crop]
    split = analysis_split(weights.config)
    tail = copy.deepcopy(torch_model(weights).g_a[split:]).eval()
    for p in tail.parameters():
        p.requires_grad_(False)
    head = light_analysis_head(cfg.widths).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(head.parameters(), lr=cfg.lr)
    metadata = {"config": json.dumps(asdict(cfg)), "light_role": "analysis", "base_model_id": weights.model_id,
                "light_widths": json.dumps(list(cfg.widths))}
    start = 0
    rng = np.random.default_rng(cfg.seed)
    if resume and checkpoint.exists():
        start = load_checkpoint(checkpoint, {"g_a": head}, {"g_a.opt": optimizer})
        rng = np.random.default_rng(cfg.seed + start)
        log(f"resumed at step {start}")

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        cells, images, latents = cfg.crop // 8, [], []
        for _ in range(cfg.batch):
            item = items[rng.integers(len(items))]
            gh, gw = item["latent"].shape[1:]
            y, x = rng.integers(gh - cells + 1), rng.integers(gw - cells + 1)
            images.append(item["rgb"][8 * y : 8 * (y + cells), 8 * x : 8 * (x + cells)])
            latents.append(item["latent"][:, y : y + cells, x : x + cells])
        image = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255)
        return image.contiguous(memory_format=torch.channels_last), torch.from_numpy(np.stack(latents).astype(np.float32))

    columns = ["step", "lr", "mse", "minutes", "heldout_mse", "heldout_codes_equal"]
    csv_log = CsvLog(out / "log.csv", columns, resume and start > 0)
    clock, running = RunClock(), 0.0
    for step in range(start, cfg.steps):
        lr = cosine_lr(cfg.lr, step, cfg.steps, warmup=200, floor=cfg.lr / 30)
        for group in optimizer.param_groups:
            group["lr"] = lr
        image, target = batch()
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16, enabled=use_bf16):
            latent = tail(head(image))
        loss = _step(optimizer, latent, target)
        running = loss if step == start else 0.98 * running + 0.02 * loss
        done = step + 1
        if is_due(done, cfg.checkpoint_every, cfg.steps):
            save_checkpoint(checkpoint, {"g_a": head}, {"g_a.opt": optimizer}, done, metadata)
        if is_due(done, cfg.validate_every, cfg.steps):
            heldout_mse, equal = _validate_analysis(head, tail, held, weights.codebooks)
            minutes = clock.seconds / 60
            csv_log.row(step=done, lr=lr, mse=running, minutes=round(minutes, 1), heldout_mse=heldout_mse,
                        heldout_codes_equal=equal)
            log(f"step {done}: mse {running:.5f}; held-out latent mse {heldout_mse:.5f}, stage-1 codes equal "
                f"{100 * equal:.1f}%; {minutes:.1f} min")
    csv_log.close()
    return checkpoint


@torch.no_grad()
def _validate_analysis(head: nn.Module, tail: nn.Module, held: list[dict[str, np.ndarray]],
                       codebooks: np.ndarray, crop: int = 256) -> tuple[float, float]:
    """(mean squared latent difference, share of equal stage-1 codes) on centre crops of ``held``."""
    from vqz.codec.vq import nearest

    head.eval()
    errors, equal = [], []
    for item in held:
        gh, gw = item["latent"].shape[1:]
        ch, cw = min(gh, crop // 8), min(gw, crop // 8)
        y, x = (gh - ch) // 2, (gw - cw) // 2
        image = torch.from_numpy(item["rgb"][8 * y : 8 * (y + ch), 8 * x : 8 * (x + cw)]).permute(2, 0, 1)[None]
        latent = tail(head(image.float().div(255).contiguous(memory_format=torch.channels_last)))[0].float().numpy()
        target = item["latent"][:, y : y + ch, x : x + cw].astype(np.float32)
        errors.append(float(np.square(latent - target).mean()))
        a = nearest(np.ascontiguousarray(latent.reshape(latent.shape[0], -1).T), codebooks[0])
        b = nearest(np.ascontiguousarray(target.reshape(target.shape[0], -1).T), codebooks[0])
        equal.append(float((a == b).mean()))
    head.train()
    return float(np.mean(errors)), float(np.mean(equal))
