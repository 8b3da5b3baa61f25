"""Held-out sweep for the spacing of the residual levels (codec/levels.py as shipped: base 4 stages,
tilt 1, rounding 0.33): bpp, PSNR and MS-SSIM of each luma step, to space the 12 residual levels
evenly in log-rate between level 4 and the finest step. Writes experiments/probes/residual_steps.json."""
import json, sys
import numpy as np
from PIL import Image
from vqz.benchmarks.metrics import ms_ssim, ms_ssim_db, psnr
from vqz.codec import residual as R
from vqz.codec.levels import RESIDUAL_CHROMA, RESIDUAL_OFFSET, RESIDUAL_ROUNDING, RESIDUAL_TILT
from vqz.codec.padding import compute_padding
from vqz.codec.pipeline import decode_bytes, encode_array_indices, whole_stage_activity
from vqz.codec.registry import load_model

w = load_model(None)
files = open("checkpoints/vqz-rvq16-f8/validation_files.txt").read().split()[: int(sys.argv[1]) if len(sys.argv) > 1 else None]
STEPS = (160, 128, 100, 80, 64, 52, 42, 34, 28, 23, 19, 16, 13.5, 11.5, 10, 9, 8)
rows = []
for f in files:
    rgb = np.asarray(Image.open("../shared/data/train/" + f).convert("RGB"))
    H, W = rgb.shape[:2]
    (left, _, top, _), _ = compute_padding(H, W, min_div=8)
    data, _, idx, _ = encode_array_indices(w, rgb, 4)
    base = decode_bytes(w, data)
    act = whole_stage_activity(w, idx, 4)
    rows.append(dict(f=f, step=0, bpp=len(data) * 8 / (H * W), psnr=psnr(rgb, base), msssim_db=float(ms_ssim_db(ms_ssim(rgb, base)))))
    for step in STEPS:
        params = R.ResidualParams(step, RESIDUAL_CHROMA, RESIDUAL_OFFSET, tilt=RESIDUAL_TILT)
        levels = R.quantize_residual(rgb, base, top, left, idx.shape[1:], params, RESIDUAL_ROUNDING)
        pay = R.encode_levels(levels, params, act)
        out = R.render_residual(base, levels, params, top, left)
        rows.append(dict(f=f, step=step, bpp=(len(data) + len(pay)) * 8 / (H * W), psnr=psnr(rgb, out),
                         msssim_db=float(ms_ssim_db(ms_ssim(rgb, out)))))
    print(f, flush=True)
json.dump(rows, open("experiments/probes/residual_steps.json", "w"))
