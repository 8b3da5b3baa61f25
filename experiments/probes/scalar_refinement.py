"""Experiment: RVQ q stages + uniform scalar quantization of the remaining latent residual.
Rate of the scalar part: cross-entropy under per-channel histograms fitted on the other held-out part."""
import math, json
import numpy as np
from PIL import Image
from vqz.codec.registry import load_model
from vqz.codec.pipeline import encode_latent, encode_array, render
from vqz.codec.vq import quantize, dequantize
from vqz.codec.tiling import synthesis_uint8, tile_margin
from vqz.codec.padding import compute_padding

w = load_model(None)
files = open('checkpoints/vqz-rvq16-f8/validation_files.txt').read().split()
tune = files[::3]; fit = [f for i, f in enumerate(files) if i % 3]
QS = [2, 4, 6, 8]; DELTAS = [0.5, 0.35, 0.25, 0.18, 0.12]
def load(f):
    im = np.asarray(Image.open('../shared/data/train/' + f).convert('RGB'))
    return im[:256*2, :256*2]  # cap size for speed
def psnr(a, b):
    return 10 * math.log10(255**2 / np.mean((a.astype(np.float64) - b) ** 2))
d = w.config.downsampling
# fit histograms
hist = {}
for f in fit:
    rgb = load(f); lat = encode_latent(w, rgb)
    for q in QS:
        idx = quantize(lat, w.codebooks, q); r = lat - dequantize(idx, w.codebooks)
        for D in DELTAS:
            k = np.clip(np.round(r / D).astype(np.int64), -64, 64) + 64  # (h,w,M)
            h = hist.setdefault((q, D), np.ones((r.shape[-1], 129)))
            for m in range(r.shape[-1]):
                h[m] += np.bincount(k[..., m].ravel(), minlength=129)
rows = []
for f in tune:
    rgb = load(f); H, W_ = rgb.shape[:2]; lat = encode_latent(w, rgb)
    (left, _, top, _), _ = compute_padding(H, W_, min_div=d)
    for q in list(range(1, 17)):
        data, _ = encode_array(w, rgb, q)
        rec = render(w, quantize(lat, w.codebooks, q), H, W_)
        rows.append(dict(f=f, kind='rvq', q=q, D=0, bpp=len(data) * 8 / (H * W_), psnr=psnr(rgb, rec)))
    for q in QS:
        idx = quantize(lat, w.codebooks, q); base = dequantize(idx, w.codebooks); r = lat - base
        data, _ = encode_array(w, rgb, q)
        for D in DELTAS:
            kk = np.clip(np.round(r / D).astype(np.int64), -64, 64)
            p = hist[(q, D)]; p = p / p.sum(1, keepdims=True)
            bits = -sum(np.log2(p[m][kk[..., m].ravel() + 64]).sum() for m in range(r.shape[-1]))
            lat2 = base + kk * D
            padded = synthesis_uint8(w.synthesis, np.ascontiguousarray(lat2.transpose(2, 0, 1)[None]).astype(np.float32), d, margin=tile_margin(w.config))
            rec = padded[top:top + H, left:left + W_]
            rows.append(dict(f=f, kind='sq', q=q, D=D, bpp=(len(data) * 8 + bits) / (H * W_), psnr=psnr(rgb, rec)))
    unq = synthesis_uint8(w.synthesis, np.ascontiguousarray(lat.transpose(2, 0, 1)[None]), d, margin=tile_margin(w.config))[top:top+H, left:left+W_]
    rows.append(dict(f=f, kind='unq', q=0, D=0, bpp=0, psnr=psnr(rgb, unq)))
    print(f, flush=True)
json.dump(rows, open('experiments/probes/scalar_refinement.json', 'w'))
