"""Held-out study: PSNR *and* MS-SSIM of stage-only levels against base stages + residual layer
(codec/residual.py as shipped: rounding 0.33, chroma 1.25), to choose the base of each level.
Writes experiments/probes/residual_msssim.json (one row per image and setting)."""
import json, sys
import numpy as np
from PIL import Image
from vqz.benchmarks.metrics import ms_ssim, ms_ssim_db, psnr
from vqz.codec.registry import load_model
from vqz.codec.pipeline import encode_array_indices, decode_bytes, encode_indices, running_latent
from vqz.codec.padding import compute_padding
from vqz.codec import residual as R

w = load_model(None)
files = open("checkpoints/vqz-rvq16-f8/validation_files.txt").read().split()[1::2][: int(sys.argv[1]) if len(sys.argv) > 1 else None]
BASES = (3, 4, 5, 6, 8)
STEPS = (128, 90, 64, 48, 40, 32, 26, 21, 17, 14, 11)
rows = []
for f in files:
    rgb = np.asarray(Image.open("../shared/data/train/" + f).convert("RGB"))
    H, W = rgb.shape[:2]
    (left, _, top, _), _ = compute_padding(H, W, min_div=8)
    idx = encode_indices(w, rgb, 16)
    lat = running_latent(w, idx.shape[1:])
    for q in range(1, 17):
        data = encode_array_indices(w, rgb, min(q, 3), stages=q)[0]
        base = decode_bytes(w, data)
        lat.add(idx[q - 1])
        rows.append(dict(f=f, kind="stages", q=q, step=0, bpp=len(data) * 8 / (H * W), psnr=psnr(rgb, base),
                         msssim_db=float(ms_ssim_db(ms_ssim(rgb, base)))))
        if q not in BASES:
            continue
        act = lat.activity()
        for step in STEPS:
            params = R.ResidualParams(step)
            levels = R.quantize_residual(rgb, base, top, left, idx.shape[1:], params, 0.33)
            pay = R.encode_levels(levels, params, act)
            out = R.render_residual(base, levels, params, top, left)
            rows.append(dict(f=f, kind="residual", q=q, step=step, bpp=(len(data) + len(pay)) * 8 / (H * W),
                             psnr=psnr(rgb, out), msssim_db=float(ms_ssim_db(ms_ssim(rgb, out)))))
    print(f, flush=True)
json.dump(rows, open("experiments/probes/residual_msssim.json", "w"))
