"""In-loop filter probe: code the residual layer against the post-filtered stage image instead of the raw one."""
import numpy as np, vqz, json, sys
from pathlib import Path
from vqz.codec import pipeline
from vqz.codec.photos import load_rgb
from vqz.codec.levels import PURE_LEVELS, RESIDUAL_LADDER, LevelPlan, postfilter_strength
from vqz.codec.padding import compute_padding
from vqz.codec.registry import load_model
from vqz.codec.residual import ResidualParams, encode_levels, quantize_residual, render_residual
from vqz.codec.levels import RESIDUAL_CHROMA, RESIDUAL_OFFSET, RESIDUAL_TILT, RESIDUAL_ROUNDING
from vqz.codec.pipeline import whole_stage_activity
from vqz.codec.postfilter import default_postfilter, stage_postfilter
from vqz.benchmarks.metrics import ms_ssim_db
from vqz.benchmarks import metrics
from vqz.training.train_postfilter import _centre_crop
w = load_model(None); pf = default_postfilter()
names = open('checkpoints/vqz-rvq16-f8/validation_files.txt').read().split()[1::2][::2]
s4 = postfilter_strength(LevelPlan(PURE_LEVELS))
def psnr(a, b): return 10 * np.log10(255 ** 2 / np.mean((a.astype(float) - b.astype(float)) ** 2))
res = {'ship': {}, 'loop': {}}
for n in names:
    rgb = _centre_crop(load_rgb(Path('../shared/data/train') / n), 512 * 768)
    h, wd = rgb.shape[:2]
    idx = pipeline.encode_indices(w, rgb, PURE_LEVELS)
    stage_bytes = len(vqz.encode(rgb, quality=PURE_LEVELS, model=w))
    base = pipeline.render(w, idx, h, wd)
    fbase = pf.apply(base, s4)
    act = whole_stage_activity(w, idx, PURE_LEVELS)
    (left, _, top, _), _ = compute_padding(h, wd, min_div=8)
    for q, (_, step) in enumerate(RESIDUAL_LADDER, start=PURE_LEVELS + 1):
        params = ResidualParams(step, RESIDUAL_CHROMA, RESIDUAL_OFFSET, tilt=RESIDUAL_TILT)
        for arm, b in (('ship', base), ('loop', fbase)):
            lv = quantize_residual(rgb, b, top, left, idx.shape[1:], params, RESIDUAL_ROUNDING)
            payload = encode_levels(lv, params, act)
            dec = render_residual(b.copy(), lv, params, top, left)
            out = pf.apply(dec, step)
            if psnr(out, rgb) < psnr(dec, rgb):
                out = dec
            bpp = (stage_bytes + len(payload)) * 8 / (h * wd)
            res[arm].setdefault(q, []).append((bpp, psnr(out, rgb), metrics.ms_ssim(rgb, out) if hasattr(metrics, 'ms_ssim') else float('nan')))
    print(n, flush=True)
json.dump({a: {q: v for q, v in d.items()} for a, d in res.items()}, open('experiments/probes/postfilter_in_loop.json', 'w'))
for q in sorted(res['ship']):
    a = np.mean(res['ship'][q], 0); b = np.mean(res['loop'][q], 0)
    print(q, 'ship', np.round(a, 4), 'loop', np.round(b, 4))
