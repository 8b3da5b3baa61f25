"""Probe: how many residual-layer bits a richer per-class law could save (held-out photos).

    python experiments/probes/residual_law.py 23 > experiments/probes/residual_law.txt

Per image (every second held-out name, centre crop of at most 512 x 768), 4 stages of the default
model and the residual layer at levels 5, 8, 12 and 16 as the encoder codes it. Per channel, band and
context class (codec/residual.py): the bits under the shipped law (two-sided geometric, best of its 48
scales), under a two-part law (its own P(0) from 64 values, geometric tail, sign bit), and the
class's empirical entropy (a lower bound for any static law per class). "actual" is the payload,
side information (scale indices, parameters, coder flush) included. Session 12.
"""
import math, sys
import numpy as np
from vqz.codec.registry import load_model
from vqz.codec.levels import RESIDUAL_CHROMA, RESIDUAL_OFFSET, RESIDUAL_ROUNDING, RESIDUAL_TILT, RESIDUAL_LADDER
from vqz.codec import residual as R
from residual_base import four_stage_base, heldout_names

w = load_model(None)
names = heldout_names(1, int(sys.argv[1]))
levels_q = [5, 8, 12, 16]
L = R._code_lengths()  # (49, 256)
Z = np.linspace(0.02, 0.995, 64)
RAT = np.array(R.RATIOS, dtype=np.float64) / 2**32
m = np.arange(256)
# two-part law: P(0)=z, P(+-m)= (1-z)/2 (1-r) r^(m-1)
tail = -np.log2(1 - RAT)[:, None] - (m[None, 1:] - 1) * np.log2(RAT)[:, None] + 1  # (48,255) bits for |k|=m>=1 incl sign
tot = {q: dict(file=0, stage=0, cur=0, actual=0, two=0, emp=0) for q in levels_q}
for name in names:
    rgb, idx, base, act, top, left = four_stage_base(w, name)
    H, W = rgb.shape[:2]
    for q in levels_q:
        step = RESIDUAL_LADDER[q - 5][1]
        params = R.ResidualParams(step, RESIDUAL_CHROMA, RESIDUAL_OFFSET, tilt=RESIDUAL_TILT)
        lv = R.quantize_residual(rgb, base, top, left, idx.shape[1:], params, RESIDUAL_ROUNDING)
        payload = R.encode_levels(lv, params, act)
        pe = R.ResidualParams(step, RESIDUAL_CHROMA, RESIDUAL_OFFSET, R.activity_edges(act), RESIDUAL_TILT)
        ac = R._activity_classes(act, act.shape, pe.edges)
        t = tot[q]; t['actual'] += 8 * len(payload); t['pixels'] = t.get('pixels', 0) + H * W
        for k in lv:
            gh, gw = k.shape[:2]; flat = k.reshape(gh * gw, -1); lower = np.zeros((gh, gw), dtype=np.int64)
            for pos in R._BAND_POSITIONS:
                cls = R._classes(lower, ac).ravel()
                mag = np.abs(flat[:, pos].astype(np.int64))
                hist = np.bincount((cls[:, None] * 256 + mag).ravel(), minlength=R.NUM_CLASSES * 256).reshape(R.NUM_CLASSES, 256)
                for c in np.flatnonzero(hist.sum(1)):
                    h = hist[c].astype(np.float64)
                    if h[1:].sum() == 0:
                        continue
                    t['cur'] += (L[1:] * h).sum(1).min()
                    # two-part
                    zc = -h[0] * np.log2(Z) - h[1:].sum() * np.log2(1 - Z)  # (64,)
                    t['two'] += zc.min() + (tail * h[1:]).sum(1).min()
                    n = h.sum(); nz = h[h > 0]
                    t['emp'] += -(nz * np.log2(nz / n)).sum() + h[1:].sum()
                lower += mag.sum(-1).reshape(gh, gw)
for q in levels_q:
    t = tot[q]; px = t['pixels']
    print(f"level {q}: residual actual {t['actual']/px:.4f} bpp, model-cur {t['cur']/px:.4f}, two-part {t['two']/px:.4f} "
          f"({100*(t['two']/t['cur']-1):+.1f}%), empirical {t['emp']/px:.4f} ({100*(t['emp']/t['cur']-1):+.1f}%)")
