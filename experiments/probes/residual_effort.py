"""Held-out check: encoder effort 3 against effort 1 at stage-only level 4 and residual levels 6, 10, 14
(dB at equal rate against the effort-1 curve of all 16 levels; encode seconds per image, this machine, training
running beside it). Usage: python experiments/probes/residual_effort.py N_IMAGES"""
import sys, time, numpy as np, collections
from PIL import Image
from vqz.benchmarks.metrics import psnr
from vqz.codec.registry import load_model
from vqz.codec.pipeline import encode_array, decode_bytes
w = load_model(None)
files = open("checkpoints/vqz-rvq16-f8/validation_files.txt").read().split()[3::6][:int(sys.argv[1])]
acc = collections.defaultdict(list)
for f in files:
    rgb = np.asarray(Image.open("../shared/data/train/" + f).convert("RGB")); H, W = rgb.shape[:2]
    for q in range(1, 17):
        for e in ((1, 3) if q in (4, 6, 10, 14) else (1,)):
            t = time.perf_counter(); d, _ = encode_array(w, rgb, q, effort=e); dt = time.perf_counter() - t
            acc[(q, e)].append((len(d) * 8 / (H * W), psnr(rgb, decode_bytes(w, d)), dt))
    print(f, flush=True)
pts = {k: np.mean(v, 0) for k, v in acc.items()}
c1 = sorted(tuple(v) for k, v in pts.items() if k[1] == 1)
for q in (4, 6, 10, 14):
    b, p, t = pts[(q, 3)]
    ref = np.interp(np.log(b), np.log([x[0] for x in c1]), [x[1] for x in c1])
    print(f'q{q}: effort3 {b:.3f} bpp {p:.2f} dB, vs effort-1 curve {p - ref:+.3f} dB; time {t:.2f} s vs {pts[(q, 1)][2]:.2f} s')
