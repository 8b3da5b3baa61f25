"""Probe: would the decoded stages' own DCT coefficient (same block, frequency) be a useful context?

    python experiments/probes/residual_base_context.py 23 > experiments/probes/residual_base_context.txt

The decoder has the image of the stages (the residual layer's base) before it decodes the layer. Per
coefficient, |base DCT coefficient| / its step, split into 1-6 bins, refines each context class of
codec/residual.py; bits = per (channel, band, refined class) the best of the 48 geometric scales plus
4 bits of side information. 23 held-out photos (every second held-out name, centre crops of at most
512 x 768), levels 5, 8, 12, 16. Session 12.
"""
import sys
import numpy as np
from vqz.codec.registry import load_model
from vqz.codec.levels import RESIDUAL_CHROMA, RESIDUAL_OFFSET, RESIDUAL_ROUNDING, RESIDUAL_TILT, RESIDUAL_LADDER
from vqz.codec import residual as R
from residual_base import four_stage_base, heldout_names

w = load_model(None)
names = heldout_names(1, int(sys.argv[1]))
EDGES = [np.array(e) for e in ([], [1.0], [0.5, 2.0], [0.25, 0.75, 2.0], [0.25, 0.5, 1.0, 2.0, 4.0])]
levels_q = [5, 8, 12, 16]
L = R._code_lengths()
SIDE = 4.0  # bits per present (channel, band, class): the delta-coded scale index
tot = {q: {'px': 0, 'actual': 0, **{i: 0.0 for i in range(len(EDGES))}} for q in levels_q}
for name in names:
    rgb, idx, base, act, top, left = four_stage_base(w, name)
    H, W = rgb.shape[:2]
    gh, gw = idx.shape[1:]
    cols = R._image_rows(0, gw * 8, left, W); rows = R._image_rows(0, gh * 8, top, H)
    bstrip = base[rows][:, cols].astype(np.float32)
    bcoef = [np.abs(R._forward(bstrip @ R._RGB_TO_YCC[c].astype(np.float32), gh, gw)).reshape(gh * gw, -1) for c in range(3)]
    for q in levels_q:
        step = RESIDUAL_LADDER[q - 5][1]
        params = R.ResidualParams(step, RESIDUAL_CHROMA, RESIDUAL_OFFSET, tilt=RESIDUAL_TILT)
        lv = R.quantize_residual(rgb, base, top, left, (gh, gw), params, RESIDUAL_ROUNDING)
        t = tot[q]; t['px'] += H * W; t['actual'] += 8 * len(R.encode_levels(lv, params, act))
        pe = R.ResidualParams(step, RESIDUAL_CHROMA, RESIDUAL_OFFSET, R.activity_edges(act), RESIDUAL_TILT)
        ac = R._activity_classes(act, act.shape, pe.edges)
        for c, (k, steps) in enumerate(zip(lv, params.steps())):
            flat = k.reshape(gh * gw, -1); lower = np.zeros((gh, gw), dtype=np.int64)
            feat = bcoef[c] / steps[None, :]
            for pos in R._BAND_POSITIONS:
                cls = R._classes(lower, ac).ravel()
                mag = np.abs(flat[:, pos].astype(np.int64))
                for e, edges in enumerate(EDGES):
                    sub = np.searchsorted(edges, feat[:, pos], side='right')  # (n, |pos|)
                    full = (cls[:, None] * 8 + sub)
                    nc = R.NUM_CLASSES * 8
                    hist = np.bincount((full * 256 + mag).ravel(), minlength=nc * 256).reshape(nc, 256).astype(np.float64)
                    for h in hist[hist.sum(1) > 0]:
                        t[e] += SIDE + (0 if h[1:].sum() == 0 else (L[1:] * h).sum(1).min())
                lower += mag.sum(-1).reshape(gh, gw)
for q in levels_q:
    t = tot[q]; px = t['px']
    row = ", ".join(f"{len(EDGES[e]) + 1} bins {t[e]/px:.4f} ({100*(t[e]/t[0]-1):+.1f}%)" for e in range(len(EDGES)))
    print(f"level {q}: actual {t['actual']/px:.4f} bpp; {row}")
