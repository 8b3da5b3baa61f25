"""BD-rates of the Kodak effort curves (q 1 plus levels 2,4,5,6,8,10,12,14,16) against the committed bench run's JPEG,
WebP and AVIF, the bench's method (mean curves; MS-SSIM dB of the mean MS-SSIM). Run from the repository root."""
import csv, json, numpy as np
from collections import defaultdict
from vqz.benchmarks.metrics import bd_rate, ms_ssim_db
rows = list(csv.DictReader(open('benchmarks/results/kodak/results.csv')))
def anchor(c):
    d = defaultdict(list)
    for r in rows:
        if r['codec'] == c: d[r['setting']].append((float(r['bpp']), float(r['psnr_rgb']), float(r['ms_ssim_rgb'])))
    m = np.array(sorted([np.mean(v, 0) for v in d.values()], key=lambda t: t[0])); return m[:, 0], m[:, 1], ms_ssim_db(m[:, 2])
def mine(path, add_q1=None):
    rs = json.load(open(path))['rows']
    if add_q1: rs = [add_q1] + [r for r in rs if r['quality'] != 1]
    return np.array([r['bpp'] for r in rs]), np.array([r['psnr'] for r in rs]), np.array([ms_ssim_db(r['ms_ssim']) for r in rs])
e1rows = json.load(open('benchmarks/results/kodak/vqz_levels.json'))['rows']
q1 = e1rows[0]
curves = {'effort 1 (all 16)': mine('benchmarks/results/kodak/vqz_levels.json'),
          'effort 1 (q1 + the 9 levels)': (lambda rs: (np.array([r['bpp'] for r in rs]), np.array([r['psnr'] for r in rs]), np.array([ms_ssim_db(r['ms_ssim']) for r in rs])))([r for r in e1rows if r['quality'] in (1,2,4,5,6,8,10,12,14,16)]),
          'effort 2': mine('benchmarks/results/kodak/vqz_levels_effort2.json', q1), 'effort 3': mine('benchmarks/results/kodak/vqz_levels_effort3.json', q1)}
for a in ('jpeg', 'webp', 'avif'):
    A = anchor(a)
    for name, c in curves.items():
        print(a, name, f"PSNR {bd_rate(A[0], A[1], c[0], c[1]).percent:+.1f}%  MS-SSIM {bd_rate(A[0], A[2], c[0], c[2]).percent:+.1f}%")
