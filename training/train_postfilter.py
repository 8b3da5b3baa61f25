"""Train the decoder's post-filter (:mod:`vqz.training.postfilter_net`) on what the codec decodes.

Pairs: each training image (the model's training split; the held-out split by the same hash,
``validation_fraction`` 0.05, is kept for validation) is centre-cropped to at most
``max_pixels``, coded by the installed model ``model`` at its highest stage-only level, and the
residual layer is added at ``steps_per_image`` randomly chosen steps of the quality ladder
(:data:`vqz.codec.levels.RESIDUAL_LADDER`); with ``stage_pairs_per_image`` > 0, as many decodings
of a random stage-only level (1..PURE_LEVELS stages) are added at that level's strength
(:func:`vqz.codec.levels.postfilter_strength`), so one filter serves every level. The decoded
images are cached as ``.npz`` in ``<out>/pairs`` (derivable: delete them at will).

Training: random ``crop`` x ``crop`` crops (even offsets), batches of ``batch``, the loss the mean
over crops of the filtered crop's squared error (RGB in [0, 1]) divided by the mean unfiltered
error of its level over the training pairs (coarse levels would otherwise outweigh fine ones), Adam, cosine learning-rate decay from ``lr`` to 0 over ``steps``. The checkpoint
(``<out>/postfilter.safetensors``: network, Adam state, step; configuration in its metadata)
is written every ``checkpoint_every`` steps; ``resume`` continues from it. ``init_from`` starts a
new run from a shipped filter's weights (a warm start: a filter for a new model begins from what the
last one learned; Adam starts fresh, ``lr_warmup_steps`` ramps its rate). Held-out PSNR gain
(dB, filtered vs unfiltered decoded image, mean over images and steps) is logged to
``<out>/log.csv`` at each checkpoint, over the residual levels and the stage-only levels apart.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vqz.errors import VqzError
from vqz.training.loop import (CsvLog, RunConfig, autocast_enabled, cosine_lr, is_due, load_checkpoint, save_checkpoint,
                               warmup_factor)

__all__ = ["PostFilterTrainConfig", "make_pairs", "train_postfilter", "heldout_gain"]


@dataclass(frozen=True, kw_only=True)
class PostFilterTrainConfig(RunConfig):
    """A post-filter run: :class:`~vqz.training.loop.RunConfig` and the options below."""

    out: str = "runs/postfilter"
    model: str | None = None  # installed model id whose decoded images the filter learns from
    channels: int = 32
    layers: int = 4
    quarter_channels: int = 0  # > 0: one layer is a quarter-resolution branch of this width (postfilter_net)
    steps: int = 6000
    threads: int = 2
    lr: float = 2e-3
    images: int = 400  # training images to code (a random subset of the split)
    heldout_images: int = 12
    steps_per_image: int = 3
    stage_pairs_per_image: int = 0  # decodings of random stage-only levels per image (0: residual levels only)
    max_pixels: int = 400_000
    checkpoint_every: int = 500  # steps; held-out validation at each checkpoint
    lr_warmup_steps: int = 0  # linear ramp of the learning rate from 0 over these steps (a warm start's first steps)
    init_from: str | None = None  # a shipped filter's weights file (tensors ``pf.*``) to start from; same channels and layers


def _centre_crop(rgb: np.ndarray, max_pixels: int) -> np.ndarray:
    height, width = rgb.shape[:2]
    if height * width <= max_pixels:
        return rgb
    side = int(math.sqrt(max_pixels))
    ch, cw = min(height, side), min(width, max_pixels // min(height, side))
    top, left = (height - ch) // 2 // 8 * 8, (width - cw) // 2 // 8 * 8
    return np.ascontiguousarray(rgb[top : top + ch, left : left + cw])


def make_pairs(model: str | None, paths: list[Path], folder: Path, steps: list[float], per_image: int | None,
               max_pixels: int, seed: int) -> list[Path]:
    """Code each image of ``paths`` and cache (original, decoded images, strengths) in ``folder``.

    ``steps``: residual steps, or negative numbers ``-s`` for the stage-only level of ``s`` stages
    (cached at its filter strength); ``per_image`` random ones per image, or all of them when None."""
    from vqz.codec import pipeline
    from vqz.codec.photos import load_rgb
    from vqz.codec.levels import PURE_LEVELS, LevelPlan, postfilter_strength
    from vqz.codec.padding import compute_padding
    from vqz.codec.registry import load_model
    from vqz.codec.residual import decode_residual

    weights = load_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for path in paths:
        target = folder / f"{path.name}.npz"
        picks = list(steps) if per_image is None else [steps[i] for i in rng.choice(len(steps), per_image, replace=False)]
        out.append(target)
        if target.exists():
            continue
        rgb = _centre_crop(load_rgb(path), max_pixels)
        height, width = rgb.shape[:2]
        indices = pipeline.encode_indices(weights, rgb, PURE_LEVELS)
        decoded = [pipeline.render(weights, indices[: int(-step)], height, width) for step in picks if step < 0]
        if any(step > 0 for step in picks):
            base = pipeline.render(weights, indices, height, width)
            activity = pipeline.whole_stage_activity(weights, indices, PURE_LEVELS)
            (left, _, top, _), _ = compute_padding(height, width, min_div=8)
            decoded += [decode_residual(pipeline.residual_layer(weights, rgb, indices, step, base), base, top, left,
                                        indices.shape[1:], activity) for step in picks if step > 0]
        picks = [step for step in picks if step < 0] + [step for step in picks if step > 0]
        strengths = [step if step > 0 else postfilter_strength(LevelPlan(int(-step))) for step in picks]
        tmp = target.with_suffix(".tmp.npz")
        np.savez(tmp, rgb=rgb, decoded=np.stack(decoded), steps=np.array(strengths, dtype=np.float32))
        tmp.replace(target)
    return out


def _split(cfg: PostFilterTrainConfig) -> tuple[list[Path], list[Path]]:
    from vqz.training.data import split_paths

    return split_paths(Path(cfg.data), cfg.validation_fraction, cfg.images, cfg.heldout_images, cfg.seed)


def _load(paths: list[Path], extra: list[Path] | None = None) -> list[dict[str, np.ndarray]]:
    """The cached pairs; ``extra`` (same images, same order): more decodings appended to each."""
    pairs = [dict(np.load(p)) for p in paths]
    for pair, path in zip(pairs, extra or []):
        more = np.load(path)
        pair["decoded"] = np.concatenate([pair["decoded"], more["decoded"]])
        pair["steps"] = np.concatenate([pair["steps"], more["steps"]])
    return pairs


def _level_errors(pairs: list[dict[str, np.ndarray]]) -> dict[float, float]:
    """Mean squared error (RGB in [0, 1]) of the decoded images of each strength over ``pairs``."""
    sums: dict[float, list[float]] = {}
    for pair in pairs:
        rgb = pair["rgb"].astype(np.float32) / 255
        for decoded, strength in zip(pair["decoded"], pair["steps"]):
            sums.setdefault(float(strength), []).append(float(np.mean(np.square(decoded.astype(np.float32) / 255 - rgb))))
    return {strength: max(float(np.mean(values)), 1e-8) for strength, values in sums.items()}


def heldout_gain(net, pairs: list[dict[str, np.ndarray]]) -> float:
    """Mean PSNR gain (dB) of the filtered over the decoded image, over held-out images and steps."""
    import torch

    gains = []
    with torch.no_grad():
        for pair in pairs:
            rgb = pair["rgb"].astype(np.float64)
            height, width = rgb.shape[:2]
            for decoded, step in zip(pair["decoded"], pair["steps"]):
                x = torch.from_numpy(decoded).permute(2, 0, 1)[None].float() / 255
                x = torch.nn.functional.pad(x, (0, -width % net.multiple, 0, -height % net.multiple), mode="replicate")
                y = net(x, torch.tensor([float(step)]))[0, :, :height, :width]
                filtered = (y.clamp(0, 1) * 255).round().permute(1, 2, 0).numpy()
                before = np.mean((decoded.astype(np.float64) - rgb) ** 2)
                after = np.mean((filtered - rgb) ** 2)
                gains.append(10 * math.log10(max(before, 1e-10) / max(after, 1e-10)))
    return float(np.mean(gains))


def _batch(pairs: list[dict[str, np.ndarray]], batch: int, crop: int, rng: np.random.Generator, multiple: int = 2):
    """``batch`` random crops (even offsets; sides a multiple of ``multiple``, at most ``crop``)."""
    import torch

    xs, ys, strengths = [], [], []
    for _ in range(batch):
        pair = pairs[rng.integers(len(pairs))]
        k = rng.integers(len(pair["steps"]))
        height, width = pair["rgb"].shape[:2]
        size = min(crop, height // multiple * multiple, width // multiple * multiple) // multiple * multiple
        top = 2 * rng.integers((height - size) // 2 + 1)
        left = 2 * rng.integers((width - size) // 2 + 1)
        xs.append(pair["decoded"][k, top : top + size, left : left + size][:crop, :crop])
        ys.append(pair["rgb"][top : top + size, left : left + size][:crop, :crop])
        strengths.append(pair["steps"][k])
    if len({x.shape for x in xs}) > 1:  # an image smaller than the crop: use the smallest common size
        side = min(min(x.shape[:2]) for x in xs) // multiple * multiple
        xs, ys = [x[:side, :side] for x in xs], [y[:side, :side] for y in ys]
    to_tensor = lambda a: torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2).float() / 255  # noqa: E731
    return to_tensor(xs), to_tensor(ys), torch.tensor(np.array(strengths, dtype=np.float32))


def train_postfilter(cfg: PostFilterTrainConfig, resume: bool = False, log=print) -> Path:
    """Train (or continue) a post-filter; returns the checkpoint path."""
    import torch

    from vqz.codec.levels import PURE_LEVELS, RESIDUAL_LADDER
    from vqz.training.postfilter_net import PostFilterNet, load_shipped_filter

    use_bf16 = autocast_enabled(cfg.precision, torch.device("cpu"))
    net = PostFilterNet(cfg.channels, cfg.layers, cfg.quarter_channels)
    if cfg.init_from:  # checked before any image is coded
        warm = load_shipped_filter(Path(cfg.init_from))
        shape = lambda n: (n.channels, n.layers, n.quarter_channels)  # noqa: E731
        if shape(warm) != shape(net):
            raise VqzError(f"{cfg.init_from} is a post-filter of {warm.channels} channels and {warm.layers} layers "
                           f"(quarter-resolution branch {warm.quarter_channels}); this run trains {net.channels} "
                           f"channels and {net.layers} layers (quarter-resolution branch {net.quarter_channels})")

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "postfilter.safetensors"
    train_paths, held_paths = _split(cfg)
    steps = [step for _, step in RESIDUAL_LADDER]
    started = time.time()
    stage_levels = [-float(s) for s in range(1, PURE_LEVELS + 1)]
    train_stages = held_stages = None
    if cfg.stage_pairs_per_image:
        train_stages = make_pairs(cfg.model, train_paths, out / "pairs-stages", stage_levels, cfg.stage_pairs_per_image,
                                  cfg.max_pixels, cfg.seed)
        held_stages = make_pairs(cfg.model, held_paths, out / "pairs-heldout-stages", stage_levels, None, cfg.max_pixels,
                                 cfg.seed)
    train = _load(make_pairs(cfg.model, train_paths, out / "pairs", steps, cfg.steps_per_image, cfg.max_pixels, cfg.seed),
                  train_stages)
    held = _load(make_pairs(cfg.model, held_paths, out / "pairs-heldout", steps[::2], None, cfg.max_pixels, cfg.seed))
    held_stage = _load(held_stages) if held_stages else []
    log(f"{len(train)} training and {len(held)} held-out images coded in {time.time() - started:.0f} s")
    level_error = _level_errors(train)

    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    start = 0
    if resume and checkpoint.exists():
        start = load_checkpoint(checkpoint, {"net": net}, {"opt": opt})
        log(f"resumed at step {start}")
    elif cfg.init_from:
        net.load_state_dict(warm.state_dict())
        log(f"warm start from {cfg.init_from}")
    rng = np.random.default_rng(cfg.seed + start)
    columns = ["step", "lr", "train_gain_db", "heldout_gain_db", "heldout_stage_gain_db", "minutes"]
    with CsvLog(out / "log.csv", columns, resume) as csv_log:
        running = 0.0
        for step in range(start, cfg.steps):
            lr = cosine_lr(cfg.lr, step, cfg.steps) * warmup_factor(step, cfg.lr_warmup_steps)
            for group in opt.param_groups:
                group["lr"] = lr
            x, y, strength = _batch(train, cfg.batch, cfg.crop, rng, net.multiple)
            with torch.autocast(device_type="cpu", dtype=torch.bfloat16, enabled=use_bf16):
                filtered = net(x, strength)
            # each crop's squared error relative to its level's mean unfiltered error: the mean PSNR gain over
            # levels is what counts, and the coarse levels' larger errors would otherwise drown the fine ones
            # (a per-crop ratio is unstable: flat crops have almost no error to remove)
            weight = torch.tensor([1.0 / level_error[float(v)] for v in strength.tolist()])
            loss = ((filtered.float() - y).square().mean((1, 2, 3)) * weight).mean()
            before = ((x - y).square().mean((1, 2, 3)) * weight).mean().item()
            opt.zero_grad()
            loss.backward()
            opt.step()
            running = 0.98 * running + 0.02 * 10 * math.log10(max(before, 1e-12) / max(loss.item(), 1e-12))
            done = step + 1
            if is_due(done, cfg.checkpoint_every, cfg.steps):
                net.eval()
                gain = heldout_gain(net, held)
                stage_gain = heldout_gain(net, held_stage) if held_stage else float("nan")
                net.train()
                save_checkpoint(checkpoint, {"net": net}, {"opt": opt}, done, {"config": json.dumps(asdict(cfg))})
                minutes = (time.time() - started) / 60
                csv_log.row(step=done, lr=f"{lr:.3e}", train_gain_db=f"{running:.4f}", heldout_gain_db=f"{gain:.4f}",
                            heldout_stage_gain_db=f"{stage_gain:.4f}", minutes=f"{minutes:.1f}")
                log(f"step {done}: train gain {running:.3f} dB (running), held-out gain {gain:.3f} dB "
                    f"(stage-only levels {stage_gain:.3f} dB), {minutes:.1f} min")
    return checkpoint
