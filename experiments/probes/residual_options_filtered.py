"""Probe: re-tune the residual layer's encoder options now that every level is post-filtered.

    python experiments/probes/residual_options_filtered.py CONFIGS > OUT.txt

CONFIGS: ``chroma,tilt,rounding;chroma,tilt,rounding;...``, the first is the anchor. The residual
layer's chroma multiplier, frequency tilt and dead-zone rounding were chosen in session 9, before
any post-filter (experiments/probes/residual_ladder.md). Here every candidate is scored after the
shipped filter, as the encoder writes files: the filter's reference where it lowers the error.
Tuning photos: the *first* of every two held-out names (checkpoints/vqz-rvq16-f8/validation_files.txt),
disjoint from the 23 photos of the held-out bench (the second of every two), centre crops of at most
512 x 768. Per config: mean bpp (file bytes: the 4-stage file plus the residual payload), PSNR and
MS-SSIM (dB) at 7 steps of the ladder; BD-rate against the anchor. Session 12.
"""
import sys
from pathlib import Path

import numpy as np

from vqz.benchmarks.metrics import bd_rate, ms_ssim, ms_ssim_db, psnr
from vqz.codec import residual as R
from vqz.codec.photos import load_rgb
from vqz.codec.padding import compute_padding
from vqz.codec.pipeline import encode_array_indices, render, whole_stage_activity
from vqz.codec.postfilter import default_postfilter
from vqz.codec.registry import load_model
from vqz.training.train_postfilter import _centre_crop

STEPS = (57.0, 34.0, 24.0, 17.5, 13.0, 9.5, 8.0)
configs = [tuple(float(v) for v in c.split(",")) for c in sys.argv[1].split(";")]
count = int(sys.argv[2]) if len(sys.argv) > 2 else 23
w = load_model(None)
pf = default_postfilter()
names = [line.strip() for line in open("checkpoints/vqz-rvq16-f8/validation_files.txt")][0::2][:count]
# results[config][step] = list of (bits, pixels, psnr, msssim_db)
results = {c: {s: [] for s in STEPS} for c in configs}
for n, name in enumerate(names):
    rgb = _centre_crop(load_rgb(Path("../shared/data/train") / name), 512 * 768)
    height, width = rgb.shape[:2]
    data, _, idx, _ = encode_array_indices(w, rgb, 4, stages=4)  # the 4 stages, no filter check
    base = render(w, idx, height, width)
    act = whole_stage_activity(w, idx, 4)
    (left, _, top, _), _ = compute_padding(height, width, min_div=8)
    for chroma, tilt, rounding in configs:
        for step in STEPS:
            params = R.ResidualParams(step, chroma, 0.0, tilt=tilt)
            levels = R.quantize_residual(rgb, base, top, left, idx.shape[1:], params, rounding)
            payload = R.encode_levels(levels, params, act)
            decoded = R.render_residual(base, levels, params, top, left)
            filtered = pf.apply(decoded, step)
            err = lambda x: np.square(x.astype(np.int32) - rgb.astype(np.int32)).sum(dtype=np.int64)
            out, extra = (filtered, 9) if err(filtered) < err(decoded) else (decoded, 0)
            results[(chroma, tilt, rounding)][step].append(
                (8 * (len(data) + len(payload) + extra), height * width, psnr(rgb, out), float(ms_ssim_db(ms_ssim(rgb, out)))))
    print(f"# {n + 1}/{len(names)} {name}", file=sys.stderr, flush=True)


def curve(c):
    rows = [results[c][s] for s in STEPS]
    bpp = np.array([np.mean([b / p for b, p, _, _ in r]) for r in rows])
    return bpp, np.array([np.mean([q for *_, q, _ in r]) for r in rows]), np.array([np.mean([m for *_, m in r]) for r in rows])


anchor = curve(configs[0])
print(f"# {len(names)} tuning photos; anchor chroma,tilt,rounding = {configs[0]}; steps {STEPS}")
print("| chroma | tilt | rounding | bpp at steps 57 / 8 | PSNR at 57 / 8 | BD-rate PSNR | BD-rate MS-SSIM dB |")
print("|---|---|---|---|---|---|---|")
for c in configs:
    b, p, m = curve(c)
    print(f"| {c[0]:g} | {c[1]:g} | {c[2]:g} | {b[0]:.4f} / {b[-1]:.4f} | {p[0]:.2f} / {p[-1]:.2f} | "
          f"{bd_rate(anchor[0], anchor[1], b, p).percent:+.2f}% | {bd_rate(anchor[0], anchor[2], b, m).percent:+.2f}% |")
