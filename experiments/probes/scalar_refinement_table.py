import json, numpy as np, collections
rows = json.load(open('experiments/probes/scalar_refinement.json'))
files = sorted({r['f'] for r in rows})
def rvq_at(f, bpp):
    pts = sorted((r['bpp'], r['psnr']) for r in rows if r['f'] == f and r['kind'] == 'rvq')
    b, p = np.array(pts).T
    return np.interp(np.log(bpp), np.log(b), p, left=np.nan, right=np.nan)
agg = collections.defaultdict(list)
for r in rows:
    if r['kind'] == 'rvq': agg[('rvq', r['q'], 0)].append((r['bpp'], r['psnr'], 0))
    if r['kind'] == 'sq': agg[('sq', r['q'], r['D'])].append((r['bpp'], r['psnr'], r['psnr'] - rvq_at(r['f'], r['bpp'])))
    if r['kind'] == 'unq': agg[('unq', 0, 0)].append((0, r['psnr'], 0))
print(len(files), 'images')
for k in sorted(agg):
    a = np.array(agg[k], dtype=float)
    print(k, 'bpp %.3f psnr %.2f dB-vs-rvq-at-equal-rate %+.2f (n=%d, nan %d)' % (a[:,0].mean(), a[:,1].mean(), np.nanmean(a[:,2]), len(a), np.isnan(a[:,2]).sum()))
