"""Experiment: contexts for the pixel-residual layer (see pixel_residual.py).
c6: sum|k| of the left and top blocks (sequential in blocks, slow to decode in Python);
band: coded band by band over the whole image, context = sum|k| of the lower bands in the block
and its 4 neighbours (vectorized: 15 bands x 3 channels calls); band+act: also the latent cell's
integer activity after q stages (bit-exact: derived from the indices only); band+act+luma."""
import math, json, sys
import numpy as np
from PIL import Image
from scipy.fft import dctn, idctn
from vqz.codec.registry import load_model
from vqz.codec.pipeline import encode_array, decode_bytes, encode_indices, running_latent

w = load_model(None)
files = open('checkpoints/vqz-rvq16-f8/validation_files.txt').read().split()
tune = files[::3][:int(sys.argv[1])]
M = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
Minv = np.linalg.inv(M)
band = np.add.outer(np.arange(8), np.arange(8))

def load(f):
    im = np.asarray(Image.open('../shared/data/train/' + f).convert('RGB'))
    im = im[:512, :768]
    return np.ascontiguousarray(im[:im.shape[0] // 8 * 8, :im.shape[1] // 8 * 8])

def psnr(a, b):
    return 10 * math.log10(255**2 / np.mean((a.astype(np.float64) - b) ** 2))

def blocks(ch):
    H, W = ch.shape
    return ch.reshape(H // 8, 8, W // 8, 8).transpose(0, 2, 1, 3)

def unblocks(b):
    h, w_ = b.shape[:2]
    return b.transpose(0, 2, 1, 3).reshape(h * 8, w_ * 8)

def lap_bits(k, b):
    b = np.maximum(b, 0.02)
    def cdf(x):
        return np.where(x < 0, 0.5 * np.exp(x / b), 1 - 0.5 * np.exp(-x / b))
    return -np.log2(np.maximum(cdf(k + 0.5) - cdf(k - 0.5), 1e-12))

def neigh(a):  # a + its 4 neighbours
    s = a.copy(); s[:, 1:] += a[:, :-1]; s[:, :-1] += a[:, 1:]; s[1:] += a[:-1]; s[:-1] += a[1:]
    return s

def cost(kk, cls, ncls):
    bits = 0.0
    for cx in range(ncls):
        v = kk[cls == cx]
        if v.size == 0:
            continue
        m = np.abs(v).mean()
        if m == 0:
            bits += 1; continue
        bq = 2 ** (np.round(8 * np.log2(max(m, 1e-3))) / 8)
        bits += 7 + lap_bits(v, bq).sum()
    return bits

def code(res, step, cm, rnd, mode, act):
    ycc = res @ M.T; out = np.zeros_like(ycc); bits = 0.0; K = []
    for c in range(3):
        D = step * (cm if c else 1.0)
        coef = dctn(blocks(ycc[..., c]), axes=(2, 3), norm='ortho')
        k = np.sign(coef) * np.floor(np.abs(coef) / D + rnd); K.append(k)
        out[..., c] = unblocks(idctn(k * D, axes=(2, 3), norm='ortho'))
        if mode == 'c6':
            a = np.abs(k).sum((2, 3)); nb = np.zeros_like(a); nb[:, 1:] += a[:, :-1]; nb[1:, :] += a[:-1, :]
            ctx = np.minimum(np.floor(np.log2(1 + nb)).astype(int), 5)
            for bd in range(15):
                bits += cost(k[:, :, band == bd], np.broadcast_to(ctx[..., None], k[:, :, band == bd].shape), 6)
            continue
        absk = np.abs(k)
        for bd in range(15):
            lower = absk[:, :, band < bd].sum(-1)
            s = 2 * lower + neigh(lower)
            cls = np.minimum(np.floor(np.log2(1 + s)).astype(int), 5)
            ncls = 6
            if 'act' in mode:
                cls = cls * 4 + act; ncls = 24
            if 'luma' in mode and c:
                l = np.minimum(np.floor(np.log2(1 + np.abs(K[0]).sum((2, 3)))).astype(int), 2)
                cls = cls * 3 + l; ncls *= 3
            v = k[:, :, band == bd]
            bits += cost(v, np.broadcast_to(cls[..., None], v.shape), ncls)
    return bits, out @ Minv.T

rows = []
for f in tune:
    rgb = load(f); H, W = rgb.shape[:2]
    for q in (2, 3, 4, 6):
        data, _ = encode_array(w, rgb, q)
        base = decode_bytes(w, data)[..., :3].astype(np.float64)
        idx = encode_indices(w, rgb, q)
        lat = running_latent(w, idx.shape[1:])
        for s in range(q):
            lat.add(idx[s])
        a = lat.activity()
        edges = np.quantile(a, [0.25, 0.5, 0.75])  # probe only: per-image quartiles (would be stored / fixed)
        act = np.searchsorted(edges, a, side='right')
        res = rgb - base
        for step in (16, 22, 32, 45):
            for mode in ('c6', 'band', 'band+act', 'band+act+luma'):
                bits, rr = code(res, step, 1.25, 0.25, mode, act)
                rec = np.clip(np.round(base + rr), 0, 255)
                rows.append(dict(f=f, q=q, step=step, mode=mode, bpp=(len(data) * 8 + bits) / (H * W), psnr=psnr(rgb, rec)))
    print(f, flush=True)
json.dump(rows, open('experiments/probes/pixel_residual_contexts.json', 'w'))
import collections
agg = collections.defaultdict(list)
for r in rows:
    agg[r['mode']].append(r['bpp'])
base = np.array(agg['c6'])
for m, v in agg.items():
    print(m, 'bpp mean', np.mean(v), 'vs c6', np.mean(np.array(v) / base - 1) * 100, '%')
