"""Probe: quantizer / layer options of the residual layer scored in PSNR and MS-SSIM at equal rate
(experiments/probes/residual_ladder.md, section 5). Usage: python experiments/probes/residual_options_msssim.py N_IMAGES"""
import json, sys, numpy as np, collections
from PIL import Image
from vqz.benchmarks.metrics import ms_ssim, ms_ssim_db, psnr
from vqz.codec.registry import load_model
from vqz.codec.pipeline import encode_array_indices, decode_bytes, encode_indices, running_latent
from vqz.codec.padding import compute_padding
from vqz.codec import residual as R
w = load_model(None)
files = open("checkpoints/vqz-rvq16-f8/validation_files.txt").read().split()[1::3][:int(sys.argv[1])]
# first run (bases 3 and 6): rounding 0.5 / 0.42, chroma 2.0, tilt 1 against the reference; this is the second
OPTS = [dict(r=0.33, c=1.25, t=0.0), dict(r=0.33, c=1.25, t=1.0), dict(r=0.33, c=1.25, t=2.0), dict(r=0.33, c=1.25, t=3.5), dict(r=0.25, c=1.25, t=2.0)]
rows = []
for f in files:
    rgb = np.asarray(Image.open("../shared/data/train/" + f).convert("RGB")); H, W = rgb.shape[:2]
    (left, _, top, _), _ = compute_padding(H, W, min_div=8)
    idx = encode_indices(w, rgb, 6); lat = running_latent(w, idx.shape[1:])
    for q in range(1, 7):
        lat.add(idx[q - 1])
        if q not in (3,): continue
        data = encode_array_indices(w, rgb, 3, stages=q)[0]; base = decode_bytes(w, data); act = lat.activity()
        for step in (64, 40, 26, 17):
            for i, o in enumerate(OPTS):
                p = R.ResidualParams(step, o['c'], 0.0, tilt=o['t'])
                lv = R.quantize_residual(rgb, base, top, left, idx.shape[1:], p, o['r'])
                pay = R.encode_levels(lv, p, act); out = R.render_residual(base, lv, p, top, left)
                rows.append((q, i, step, (len(data) + len(pay)) * 8 / (H * W), psnr(rgb, out), float(ms_ssim_db(ms_ssim(rgb, out)))))
    print(f, flush=True)
agg = collections.defaultdict(list)
for q, i, step, b, p, m in rows: agg[(q, i, step)].append((b, p, m))
pts = {k: np.mean(v, 0) for k, v in agg.items()}
for q in (3,):
    ref = sorted([pts[(q, 0, s)] for s in (64, 40, 26, 17)], key=lambda x: x[0])
    for i, o in enumerate(OPTS):
        cv = sorted([pts[(q, i, s)] for s in (64, 40, 26, 17)], key=lambda x: x[0])
        lo, hi = max(ref[0][0], cv[0][0]), min(ref[-1][0], cv[-1][0]); g = np.exp(np.linspace(np.log(lo), np.log(hi), 10))
        d = [np.mean([np.interp(np.log(b), np.log([x[0] for x in cv]), [x[j] for x in cv]) - np.interp(np.log(b), np.log([x[0] for x in ref]), [x[j] for x in ref]) for b in g]) for j in (1, 2)]
        print(f'base {q} {o}: dPSNR {d[0]:+.3f} dMS {d[1]:+.3f}  ' + ' '.join(f'{x[0]:.2f}/{x[1]:.2f}/{x[2]:.2f}' for x in cv))
