"""Does a neighbour prediction of the residual carry information about stage-s indices?
logits(c) = log p_ctx(c) + beta * (<c, rho> - ||c||^2 / 2),  rho = mean_4nbrs(L_s) - L_s(p).
Fit beta on 40 training images, report bits/index on the 46 held-out ones."""
import numpy as np
from PIL import Image
from vqz.codec.registry import load_model
from vqz.codec.pipeline import encode_latent
from vqz.codec.vq import quantize
w = load_model(None); cb = w.codebooks.astype(np.float64); S = cb.shape[0]
ent = w.entropy; rowsP = ent._stage_probabilities
val = open('checkpoints/vqz-rvq16-f8/validation_files.txt').read().split()
import os
allf = sorted(os.listdir('../shared/data/train')); trainf = [f for f in allf if f not in val and f.endswith(('.jpg','.png'))][::20][:40]
def planes(f):
    rgb = np.asarray(Image.open('../shared/data/train/' + f).convert('RGB'))[:512, :512]
    return quantize(encode_latent(w, rgb), w.codebooks, S)
BETAS = [0.0, 0.25, 0.5, 1.0, 2.0, 4.0]
def stats(files):
    acc = np.zeros((S, len(BETAS))); n = 0
    for f in files:
        idx = planes(f); H, W = idx.shape[1:]; n += H * W
        L = np.zeros((H, W, cb.shape[2]))
        for s in range(1, S):
            L += cb[s - 1][idx[s - 1]]
            P = np.pad(L, ((1, 1), (1, 1), (0, 0)), mode='edge')
            m = (P[:-2, 1:-1] + P[2:, 1:-1] + P[1:-1, :-2] + P[1:-1, 2:]) / 4
            rho = (m - L).reshape(-1, cb.shape[2])
            ctx = ent.stages.contexts(idx[:s], s).ravel()
            logp0 = np.log(rowsP[s][ctx])  # (P, K)
            score = rho @ cb[s].T - 0.5 * (cb[s] ** 2).sum(1)[None]
            sym = idx[s].ravel()
            for j, b in enumerate(BETAS):
                lg = logp0 + b * score
                lg -= lg.max(1, keepdims=True)
                lse = np.log(np.exp(lg).sum(1))
                acc[s, j] += -(lg[np.arange(len(sym)), sym] - lse).sum() / np.log(2)
    return acc / n
tr = stats(trainf); va = stats(val)
for s in range(1, S):
    print(s, ' '.join('%.3f' % x for x in tr[s]), '|', ' '.join('%.3f' % x for x in va[s]))
print('mean', ' '.join('%.3f' % x for x in tr[1:].mean(0)), '|', ' '.join('%.3f' % x for x in va[1:].mean(0)))
