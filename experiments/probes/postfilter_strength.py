"""Per-image post-filter strength search: PSNR gain of the best of a few strengths over the level's own."""
import sys, glob, numpy as np, vqz
from PIL import Image
sys.path.insert(0, 'tests')
from conftest import without_postfilter
from vqz.bitstream import unpack_file
from vqz.codec.postfilter import default_postfilter
from vqz.bitstream.container import PostFilterRef
pf = default_postfilter()
MULTS = (0.5, 0.7, 0.85, 1.0, 1.2, 1.45, 1.8)
NAMES = open('checkpoints/vqz-rvq16-f8/validation_files.txt').read().split()[1::2][::2]
files = [f'../shared/data/train/{n}' for n in NAMES]
m = vqz.load_model()
def psnr(a, b): return 10 * np.log10(255 ** 2 / np.mean((a.astype(float) - b) ** 2))
res = {}
for q in (2, 4, 6, 9, 12, 15):
    rows = []
    for f in files:
        img = np.asarray(Image.open(f).convert('RGB'))
        data = vqz.encode(img, quality=q, model=m)
        ref = unpack_file(data).header.postfilter
        base = vqz.decode_array(without_postfilter(data))
        if ref is None:
            continue
        s0 = ref.strength
        ps = [psnr(img, pf.apply(base, PostFilterRef.quantized(ref.filter_hash, s0 * k).strength)) for k in MULTS]
        rows.append([p - ps[MULTS.index(1.0)] for p in ps])
    r = np.array(rows)
    print(q, 'n', len(rows), 'mean dB per mult', ' '.join(f'{k}:{v:+.3f}' for k, v in zip(MULTS, r.mean(0))), '| best-of', f'{r.max(1).mean():+.3f}', flush=True)
