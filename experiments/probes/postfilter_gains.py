"""Probe (session 11): what a post-filter adds per quality level on held-out photos, runtime path.

For every second file of the models' held-out list (from the second: the 23 photos of
`postfilter_heldout_bench.md`), centre crops of at most 512 x 768, coded by the default model at
every level with the level's own post-filter choice switched off, then filtered by each filter
given (ONNX Runtime, as the decoder runs it) at the level's strength
(`vqz.codec.levels.postfilter_strength`). Prints, per level and filter, the mean PSNR and MS-SSIM (dB)
gain of the filtered over the unfiltered decoding and how many images it helps (what the encoder's
check would then ask for). Usage (repository root):
python experiments/probes/postfilter_gains.py codec/weights/vqz-pf1.safetensors codec/weights/vqz-pf2.safetensors
"""
import sys
from pathlib import Path

import numpy as np

from vqz.benchmarks.metrics import ms_ssim, ms_ssim_db, psnr
from vqz.codec import pipeline
from vqz.codec.photos import load_rgb
from vqz.codec.levels import level_plans, postfilter_strength
from vqz.codec.padding import compute_padding
from vqz.codec.postfilter import PostFilter
from vqz.codec.registry import load_model
from vqz.codec.residual import decode_residual
from vqz.training.train_postfilter import _centre_crop

filters = [PostFilter(Path(p)) for p in sys.argv[1:]]
weights = load_model(None)
plans = level_plans(weights)
names = open("checkpoints/vqz-rvq16-f8/validation_files.txt").read().split()[1::2]
rows: dict[tuple[int, str], list[tuple[float, float, float, float]]] = {}
for name in names:
    rgb = _centre_crop(load_rgb(Path("../shared/data/train") / name), 512 * 768)
    height, width = rgb.shape[:2]
    indices = pipeline.encode_indices(weights, rgb, 4)
    (left, _, top, _), _ = compute_padding(height, width, min_div=8)
    base = pipeline.render(weights, indices, height, width)
    activity = pipeline.whole_stage_activity(weights, indices, 4)
    for quality, plan in enumerate(plans, 1):
        if plan.residual_step is None:
            decoded = base if plan.stages == 4 else pipeline.render(weights, indices[: plan.stages], height, width)
        else:
            payload = pipeline.residual_layer(weights, rgb, indices, plan.residual_step, base)
            decoded = decode_residual(payload, base, top, left, indices.shape[1:], activity)
        before = (psnr(rgb, decoded), ms_ssim_db(ms_ssim(rgb, decoded)))
        for pf in filters:
            filtered = pf.apply(decoded, postfilter_strength(plan))
            rows.setdefault((quality, pf.filter_id), []).append(
                (*before, psnr(rgb, filtered) - before[0], ms_ssim_db(ms_ssim(rgb, filtered)) - before[1]))
print(f"{len(names)} held-out photos, default model {weights.model_id}\n")
print("| level | strength | filter | PSNR before | PSNR gain (dB) | MS-SSIM before (dB) | MS-SSIM gain (dB) | images helped |")
print("|---|---|---|---|---|---|---|---|")
for quality in range(1, len(plans) + 1):
    per_filter = [np.array(rows[(quality, pf.filter_id)]) for pf in filters]
    if len(filters) > 1:  # the encoder's best of the filters per image (or none: a gain of 0)
        gains = np.stack([v[:, 2] for v in per_filter])
        pick = gains.argmax(0)
        best = np.array([per_filter[k][i] for i, k in enumerate(pick)])
        best[:, 2:] = np.where(best[:, 2:3] > 0, best[:, 2:], 0)
        per_filter.append(best)
    for name, v in zip([pf.filter_id for pf in filters] + ["best of them"], per_filter):
        print(f"| {quality} | {postfilter_strength(plans[quality - 1]):g} | {name} | {v[:, 0].mean():.2f} | "
              f"{v[:, 2].mean():+.3f} | {v[:, 1].mean():.2f} | {v[:, 3].mean():+.3f} | {(v[:, 2] > 0).sum()}/{len(v)} |")
