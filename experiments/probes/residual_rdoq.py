"""Probe: RD-optimised quantization for the residual layer vs dead-zone rounding 0.33."""
import math, sys, numpy as np
from PIL import Image
from vqz.codec.registry import load_model
from vqz.codec.pipeline import encode_array_indices, decode_bytes, encode_indices, running_latent
from vqz.codec.padding import compute_padding
from vqz.codec import residual as R

w = load_model(None)
files = open('checkpoints/vqz-rvq16-f8/validation_files.txt').read().split()[1::4][:int(sys.argv[1])]
LAM = [float(x) for x in sys.argv[2].split(',')]
def psnr(a, b): return 10 * math.log10(255**2 / np.mean((a.astype(np.float64) - b) ** 2))

def unquantized(rgb, base, top, left, grid, params):
    gh, gw = grid; H, W = rgb.shape[:2]
    cols = R._image_rows(0, gw * 8, left, W); rows = R._image_rows(0, gh * 8, top, H)
    strip = rgb[rows][:, cols].astype(np.float32) - base[rows][:, cols].astype(np.float32)
    return [R._forward(strip @ R._RGB_TO_YCC[c].astype(np.float32), gh, gw) / st for c, st in enumerate(params.steps())]

def rdo_levels(us, act, lam, rounding=0.33):
    """Band by band in coding order: classes from decided lower bands, scale index fitted on dead-zone
    rounding, then per coefficient k in {floor(|u|), floor(|u|)+1} minimising (|u|-k)^2 + lam*bits."""
    lengths = R._code_lengths()
    out = []
    for u in us:
        gh, gw = u.shape[:2]; flat = u.reshape(gh * gw, -1)
        k = np.zeros(flat.shape, dtype=np.int16)
        lower = np.zeros((gh, gw), dtype=np.int64)
        for positions in R._BAND_POSITIONS:
            classes = R._classes(lower, act).ravel()
            a = np.abs(flat[:, positions]); sgn = np.sign(flat[:, positions])
            k0 = np.minimum(np.floor(a + rounding), 255).astype(np.int64)
            hist = np.bincount((classes[:, None] * 256 + k0).ravel(), minlength=R.NUM_CLASSES * 256).reshape(R.NUM_CLASSES, 256)
            idx = np.zeros(R.NUM_CLASSES, dtype=int)
            for cls in range(R.NUM_CLASSES):
                if hist[cls, 1:].sum():
                    idx[cls] = int(np.argmin((lengths[1:] * hist[cls]).sum(1))) + 1
            lo = np.minimum(np.floor(a), 255).astype(np.int64); hi = np.minimum(lo + 1, 255)
            L = lengths[idx[classes]]  # (n, 256)
            def bits(kk):
                b = np.take_along_axis(L, kk, 1)
                return np.where(np.isinf(b), 1e9, b)
            cost_lo = (a - lo) ** 2 + lam * bits(lo); cost_hi = (a - hi) ** 2 + lam * bits(hi)
            kk = np.where(cost_hi < cost_lo, hi, lo)
            k[:, positions] = (kk * sgn).astype(np.int16)
            lower += np.abs(kk).sum(-1).reshape(gh, gw)
        out.append(k.reshape(gh, gw, -1))
    return out

res = {}
for f in files:
    rgb = np.asarray(Image.open('../shared/data/train/' + f).convert('RGB')); H, W = rgb.shape[:2]
    (left, _, top, _), _ = compute_padding(H, W, min_div=8)
    data, _, idx, _ = encode_array_indices(w, rgb, 3)
    base = decode_bytes(w, data)
    lat = running_latent(w, idx.shape[1:])
    for s in range(3): lat.add(idx[s])
    act_raw = lat.activity(); edges = R.activity_edges(act_raw); act = np.searchsorted(np.array(edges), act_raw, side='right')
    for step in (48, 26, 14):
        params = R.ResidualParams(step, tilt=1.0)
        lv = R.quantize_residual(rgb, base, top, left, idx.shape[1:], params, 0.33)
        pay = R.encode_levels(lv, params, act_raw); out = R.render_residual(base, lv, params, top, left)
        res.setdefault(('dz', step), []).append(((len(data) + len(pay)) * 8 / (H * W), psnr(rgb, out)))
        us = unquantized(rgb, base, top, left, idx.shape[1:], params)
        for lam in LAM:
            lv2 = rdo_levels(us, act, lam)
            pay = R.encode_levels(lv2, params, act_raw); out = R.render_residual(base, lv2, params, top, left)
            res.setdefault((f'rdo{lam}', step), []).append(((len(data) + len(pay)) * 8 / (H * W), psnr(rgb, out)))
    print(f, flush=True)
pts = {k: np.mean(v, 0) for k, v in res.items()}
ref = sorted((tuple(v) for k, v in pts.items() if k[0] == 'dz'))
for kind in sorted(set(k[0] for k in pts)):
    cv = sorted(tuple(v) for k, v in pts.items() if k[0] == kind)
    grid = np.linspace(max(ref[0][0], cv[0][0]), min(ref[-1][0], cv[-1][0]), 12)
    d = np.mean([np.interp(np.log(b), np.log([p[0] for p in cv]), [p[1] for p in cv]) - np.interp(np.log(b), np.log([p[0] for p in ref]), [p[1] for p in ref]) for b in grid])
    print(kind, f'{d:+.3f} dB', ' '.join(f'{b:.3f}/{p:.2f}' for b, p in cv))
