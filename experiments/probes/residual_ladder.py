"""Held-out study for the residual layer (codec/residual.py): real payloads, every combination of
base stages and luma step, plus the quantizer/entropy options, on the held-out split only.
Writes experiments/probes/residual_ladder.json (one row per image and setting)."""
import json, math, sys
import numpy as np
from PIL import Image
from vqz.codec.registry import load_model
from vqz.codec.pipeline import encode_array_indices, decode_bytes, encode_indices, running_latent
from vqz.codec.padding import compute_padding
from vqz.codec import residual as R

w = load_model(None)
files = open("checkpoints/vqz-rvq16-f8/validation_files.txt").read().split()[::2][: int(sys.argv[2]) if len(sys.argv) > 2 else None]
BASES = (2, 3, 4, 5, 6, 8)
STEPS = (64, 48, 40, 32, 26, 21, 17, 14, 11, 9)
OPTIONS = [dict(rounding=0.25, chroma=1.25, offset=0.0)]
if len(sys.argv) > 1 and sys.argv[1] == 'options':
    BASES, STEPS = (3,), (48, 26, 14)
    OPTIONS = [dict(rounding=r, chroma=c, offset=o) for r in (0.18, 0.25, 0.33) for c in (1.0, 1.25, 1.6, 2.0) for o in (0.0, 0.1)]

def psnr(a, b):
    return 10 * math.log10(255**2 / np.mean((a.astype(np.float64) - b) ** 2))

rows = []
for f in files:
    rgb = np.asarray(Image.open('../shared/data/train/' + f).convert('RGB'))
    H, W = rgb.shape[:2]
    (left, right, top, bottom), _ = compute_padding(H, W, min_div=8)
    idx = encode_indices(w, rgb, 16)
    lat = running_latent(w, idx.shape[1:])
    for q in range(1, 17):
        data = encode_array_indices(w, rgb, min(q, 3), stages=q)[0]  # stage-only files of q stages
        base = decode_bytes(w, data)
        lat.add(idx[q - 1])
        rows.append(dict(f=f, kind='stages', q=q, bpp=len(data) * 8 / (H * W), psnr=psnr(rgb, base)))
        if q not in BASES:
            continue
        act = lat.activity()
        for step in STEPS:
            for o in OPTIONS:
                params = R.ResidualParams(step, o['chroma'], o['offset'])
                levels = R.quantize_residual(rgb, base, top, left, idx.shape[1:], params, o['rounding'])
                pay = R.encode_levels(levels, params, act)
                out = R.render_residual(base, levels, params, top, left)
                rows.append(dict(f=f, kind='residual', q=q, step=step, **o, bpp=(len(data) + len(pay)) * 8 / (H * W), psnr=psnr(rgb, out)))
    print(f, flush=True)
json.dump(rows, open('experiments/probes/residual_ladder%s.json' % ('_options' if OPTIONS[1:] else ''), 'w'))
