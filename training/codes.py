"""A model's codes as training data: the photos coded once and cached, aligned crops of them, the validation.

The trainers of a model's decoder-side transforms (the realistic synthesis, :mod:`vqz.training.realism`; the
light transforms, :mod:`vqz.training.light`) learn on the shipped model's frozen codes. Each training photo
(the run's training split; the held-out split by the same name hash, ``validation_fraction``, is kept for
validation) is cut to multiples of 8 pixels and at most ``max_pixels``, and coded once by the installed model
(ONNX runtime, greedy quantizer) to ``PURE_LEVELS`` stages; pixels and index planes are cached as
``<cache>/<split>/<name>.npz`` (derivable, shared by every run of one model). A training sample is an
aligned crop and its index planes, decoded from a random number of stages k in 1..PURE_LEVELS.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from vqz.training.loop import CodeGridRunConfig, autocast_enabled

__all__ = ["CodeSampler", "cache_codes", "cached_splits", "code_sampler", "split_photos", "start_run", "validate"]


def _cut(rgb: np.ndarray, max_pixels: int, multiple: int = 8) -> np.ndarray:
    """The centre of ``rgb`` with sides multiples of ``multiple`` and at most ``max_pixels`` pixels."""
    height, width = rgb.shape[:2]
    if height * width > max_pixels:
        side = int(math.sqrt(max_pixels))
        height, width = min(height, side), min(width, max_pixels // min(height, side))
    h, w = height // multiple * multiple, width // multiple * multiple
    top, left = (rgb.shape[0] - h) // 2, (rgb.shape[1] - w) // 2
    return np.ascontiguousarray(rgb[top : top + h, left : left + w])


def _whole(rgb: np.ndarray, max_pixels: int) -> np.ndarray:
    """The whole of ``rgb`` scaled down (Lanczos) to at most ``max_pixels`` pixels, cut to multiples of 8."""
    from PIL import Image

    height, width = rgb.shape[:2]
    if height * width > max_pixels:
        scale = math.sqrt(max_pixels / (height * width))
        size = (max(8, int(width * scale)), max(8, int(height * scale)))
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0))
    return _cut(rgb, height * width)


def cache_codes(model: str | None, paths: list[Path], folder: Path, max_pixels: int, log=print,
                whole: bool = False) -> list[Path]:
    """Code each image of ``paths`` with the installed ``model`` to the stage-only levels' stages and cache
    ``rgb`` ((H, W, 3) uint8, sides multiples of 8) and ``indices`` ((PURE_LEVELS, H/8, W/8) int16) in
    ``folder/<name>.npz``; existing files are kept. Returns the cache files, in ``paths`` order. ``rgb`` is the
    photo's centre cut to ``max_pixels``, or with ``whole`` the whole photo scaled down to it (the detail of a
    photo seen whole: a camera photo's centre at its own scale is mostly smooth)."""
    from vqz.codec import pipeline
    from vqz.codec.photos import load_rgb
    from vqz.codec.levels import PURE_LEVELS
    from vqz.codec.registry import load_model

    weights = load_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    out, started = [], time.time()
    for number, path in enumerate(paths):
        target = folder / f"{path.name}.npz"
        out.append(target)
        if target.exists():
            continue
        rgb = (_whole if whole else _cut)(load_rgb(path), max_pixels)
        if min(rgb.shape[:2]) < 8:
            out.pop()
            continue
        indices = pipeline.encode_indices(weights, rgb, PURE_LEVELS).astype(np.int16)
        tmp = target.with_suffix(".tmp.npz")
        np.savez(tmp, rgb=rgb, indices=indices)
        tmp.replace(target)
        if (number + 1) % 100 == 0:
            log(f"coded {number + 1}/{len(paths)} images, {time.time() - started:.0f} s")
    return out


def split_photos(cfg: CodeGridRunConfig) -> tuple[list[Path], list[Path]]:
    from vqz.training.data import split_paths

    return split_paths(Path(cfg.data), cfg.validation_fraction, cfg.images, cfg.heldout_images, cfg.seed)


class CodeSampler:
    """Random aligned crops of cached (pixels, index planes), each with a random stage count."""

    def __init__(self, items: list[dict[str, np.ndarray]], codebooks: np.ndarray, crop: int, max_stages: int,
                 seed: int) -> None:
        self.items = [it for it in items if min(it["rgb"].shape[:2]) >= crop]
        if not self.items:
            raise ValueError(f"no cached image is at least {crop}x{crop} pixels")
        self.codebooks, self.crop, self.max_stages = codebooks, crop, max_stages
        self.rng = np.random.default_rng(seed)

    def sample(self, batch: int, labels: bool = False) -> tuple[Tensor, ...]:
        """-> (images (B, 3, crop, crop) in [0, 1], latents (B, M, crop/8, crop/8), stage counts (B,)), and with
        ``labels`` the crops' first-stage codes (B, crop/8, crop/8) int64."""
        from vqz.codec.vq import dequantize

        cells = self.crop // 8
        images, latents, stages, codes = [], [], [], []
        for _ in range(batch):
            item = self.items[self.rng.integers(len(self.items))]
            gh, gw = item["indices"].shape[1:]
            y, x = self.rng.integers(gh - cells + 1), self.rng.integers(gw - cells + 1)
            k = int(self.rng.integers(1, self.max_stages + 1))
            images.append(item["rgb"][8 * y : 8 * (y + cells), 8 * x : 8 * (x + cells)])
            latents.append(dequantize(item["indices"][:k, y : y + cells, x : x + cells].astype(np.int64), self.codebooks))
            stages.append(k)
            codes.append(item["indices"][0, y : y + cells, x : x + cells].astype(np.int64))
        image = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255)
        latent = torch.from_numpy(np.stack(latents)).permute(0, 3, 1, 2).contiguous()
        if labels:
            return image, latent, torch.tensor(stages), torch.from_numpy(np.stack(codes))
        return image, latent, torch.tensor(stages)


@torch.no_grad()
def validate(synthesis: nn.Module | Callable[[int], nn.Module], held: list[dict[str, np.ndarray]],
             codebooks: np.ndarray, crop: int, max_stages: int,
             stages: list[int] | None = None) -> dict[int, tuple[float, float]]:
    """stage count -> (mean PSNR dB, mean detail ratio) on centre crops of ``held`` of ``synthesis``, or of
    ``synthesis(k)`` where it is a function of the stage count k; for k in ``stages`` (default 1..max_stages)."""
    from vqz.benchmarks.metrics import detail_ratio, psnr
    from vqz.codec.tiling import to_uint8
    from vqz.codec.vq import dequantize

    out = {}
    for k in stages or range(1, max_stages + 1):
        network = synthesis if isinstance(synthesis, nn.Module) else synthesis(k)
        was_training = network.training
        network.eval()
        psnrs, ratios = [], []
        for item in held:
            gh, gw = item["indices"].shape[1:]
            ch, cw = min(gh, crop // 8), min(gw, crop // 8)
            y, x = (gh - ch) // 2, (gw - cw) // 2
            latent = dequantize(item["indices"][:k, y : y + ch, x : x + cw].astype(np.int64), codebooks)
            image = to_uint8(network(torch.from_numpy(latent).permute(2, 0, 1)[None].contiguous(
                memory_format=torch.channels_last)).float().contiguous().numpy())
            ref = item["rgb"][8 * y : 8 * (y + ch), 8 * x : 8 * (x + cw)]
            psnrs.append(psnr(ref, image))
            ratios.append(detail_ratio(ref, image))
        out[k] = (float(np.mean(psnrs)), float(np.mean(ratios)))
        network.train(was_training)
    return out


def start_run(cfg: CodeGridRunConfig, checkpoint_name: str):
    """The common start of a code-grid run: torch threads and seed, the installed model (``cfg.model``), the run
    folder with ``config.json`` (the config and the model's id) -> (weights, run folder, checkpoint path, whether
    bf16 autocast is on)."""
    from vqz.codec.registry import load_model

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    use_bf16 = autocast_enabled(cfg.precision, torch.device("cpu"))
    weights = load_model(cfg.model)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg) | {"model_id": weights.model_id,
                                                               "model_sha256": weights.metadata.get("sha256", "")},
                                                indent=2, sort_keys=True))
    return weights, out, out / checkpoint_name, use_bf16


def cached_splits(cfg: CodeGridRunConfig, log=print) -> tuple[list[Path], list[Path]]:
    """The cache files of the run's training and held-out photos (coded now where missing): ``cfg.cache``
    (default ``<out>/codes``), ``train/`` and ``heldout/``."""
    train_paths, held_paths = split_photos(cfg)
    cache = Path(cfg.cache) if cfg.cache else Path(cfg.out) / "codes"
    started = time.time()
    train = cache_codes(cfg.model, train_paths, cache / "train", cfg.max_pixels, log)
    held = cache_codes(cfg.model, held_paths, cache / "heldout", cfg.max_pixels, log)
    if cfg.whole_photos:  # the same photos seen whole, scaled down, beside their centre cuts
        train += cache_codes(cfg.model, train_paths, cache / "train-whole", cfg.max_pixels, log, whole=True)
        held += cache_codes(cfg.model, held_paths, cache / "heldout-whole", cfg.max_pixels, log, whole=True)
    log(f"{len(train)} training and {len(held)} held-out images coded ({time.time() - started:.0f} s)")
    return train, held


def code_sampler(cfg: CodeGridRunConfig, codebooks: np.ndarray, log=print) -> tuple["CodeSampler", list[dict[str, np.ndarray]]]:
    """The run's :class:`CodeSampler` over its cached training photos (stage counts 1..PURE_LEVELS) and its cached
    held-out photos (``rgb``, ``indices``)."""
    from vqz.codec.levels import PURE_LEVELS

    train_files, held_files = cached_splits(cfg, log)
    train = [dict(np.load(p)) for p in train_files]
    return CodeSampler(train, codebooks, cfg.crop, PURE_LEVELS, cfg.seed), [dict(np.load(p)) for p in held_files]
