"""A/B: does the post-filter gain from seeing the stage image (base) beside the decoded residual-level image?
A: pf4 architecture, warm-started from vqz-pf4, decoded only. B: the same plus the packed (decoded - base)
through a zero-initialised 3x3 conv added to the first layer (so B starts equal to A). Same data, steps, seed.
C and D (postfilter_architecture.txt): from scratch, the vqz-pf4 architecture against one with a quarter-resolution branch.

    python experiments/probes/postfilter_base_input.py pairs      # code the pairs into scratch/pf_base (git-ignored)
    python experiments/probes/postfilter_base_input.py A 3000 5e-4 & python experiments/probes/postfilter_base_input.py B 3000 5e-4
    python experiments/probes/postfilter_base_input.py C 3000 2e-3 & python experiments/probes/postfilter_base_input.py D 3000 2e-3
"""
import math, sys, time, json
from pathlib import Path
import numpy as np

OUT = Path('scratch/pf_base')

def code_pairs(paths, folder, steps, per_image, seed):
    from vqz.codec import pipeline
    from vqz.codec.photos import load_rgb
    from vqz.codec.levels import PURE_LEVELS
    from vqz.codec.padding import compute_padding
    from vqz.codec.registry import load_model
    from vqz.codec.residual import decode_residual
    from vqz.training.train_postfilter import _centre_crop
    weights = load_model(None)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for path in paths:
        target = folder / f'{path.name}.npz'
        picks = list(steps) if per_image is None else [steps[i] for i in rng.choice(len(steps), per_image, replace=False)]
        if target.exists():
            continue
        rgb = _centre_crop(load_rgb(path), 400_000)
        h, w = rgb.shape[:2]
        idx = pipeline.encode_indices(weights, rgb, PURE_LEVELS)
        base = pipeline.render(weights, idx, h, w)
        act = pipeline.whole_stage_activity(weights, idx, PURE_LEVELS)
        (left, _, top, _), _ = compute_padding(h, w, min_div=8)
        dec = [decode_residual(pipeline.residual_layer(weights, rgb, idx, s, base), base, top, left, idx.shape[1:], act) for s in picks]
        np.savez(target, rgb=rgb, base=base, decoded=np.stack(dec), steps=np.array(picks, np.float32))

def split():
    from vqz.codec.photos import is_validation, list_images
    files = list_images(Path('../shared/data/train'))
    train = [p for p in files if not is_validation(p.name, 0.05)]
    held = [p for p in files if is_validation(p.name, 0.05)]
    rng = np.random.default_rng(0)
    train = [train[i] for i in rng.permutation(len(train))[:150]]
    held = [held[i] for i in np.linspace(0, len(held) - 1, 12).astype(int)]
    return train, held

def load(folder):
    return [dict(np.load(p)) for p in sorted(folder.glob('*.npz'))]

def make_net(kind):
    import torch, torch.nn.functional as F
    from torch import nn
    from vqz.training.postfilter_net import PostFilterNet, load_shipped_filter, BLOCK, STRENGTH_SCALE
    class WithBase(PostFilterNet):
        def __init__(self):
            super().__init__(48, 4)
            self.inp_base = nn.Conv2d(12, 48, 3, padding=1, bias=False)
            nn.init.zeros_(self.inp_base.weight)
        def forward(self, x, strength, base):
            packed = F.pixel_unshuffle(x - 0.5, BLOCK)
            plane = torch.ones_like(packed[:, :1]) * (strength.reshape(-1, 1, 1, 1) / STRENGTH_SCALE)
            h = self.inp(torch.cat([packed, plane], 1)) + self.inp_base(F.pixel_unshuffle(x - base, BLOCK) * 8)
            h = F.leaky_relu(h, 0.1)
            for conv in self.mid:
                h = F.leaky_relu(conv(h), 0.1)
            return x + F.pixel_shuffle(self.out(h), BLOCK)
    class MultiScale(nn.Module):
        def __init__(self, c=48, cq=96):
            super().__init__()
            self.inp = nn.Conv2d(13, c, 3, padding=1)
            self.down = nn.Conv2d(c, cq, 3, stride=2, padding=1)
            self.midq = nn.Conv2d(cq, cq, 3, padding=1)
            self.up = nn.Conv2d(cq, 4 * c, 1)
            self.mid = nn.Conv2d(c, c, 3, padding=1)
            self.out = nn.Conv2d(c, 12, 3, padding=1)
            nn.init.zeros_(self.out.weight); nn.init.zeros_(self.out.bias)
        def forward(self, x, strength):
            packed = F.pixel_unshuffle(x - 0.5, BLOCK)
            plane = torch.ones_like(packed[:, :1]) * (strength.reshape(-1, 1, 1, 1) / STRENGTH_SCALE)
            h = F.leaky_relu(self.inp(torch.cat([packed, plane], 1)), 0.1)
            H, W = h.shape[2:]
            q = F.leaky_relu(self.down(F.pad(h, (0, W % 2, 0, H % 2), mode='replicate')), 0.1)
            q = F.leaky_relu(self.midq(q), 0.1)
            h = h + F.pixel_shuffle(self.up(q), 2)[:, :, :H, :W]
            h = F.leaky_relu(self.mid(h), 0.1)
            return x + F.pixel_shuffle(self.out(h), BLOCK)
    if kind == 'C':
        return PostFilterNet(48, 4).train()
    if kind == 'D':
        return MultiScale().train()
    warm = load_shipped_filter(Path('codec/weights/vqz-pf4.safetensors'))
    if kind == 'A':
        return warm.train()
    net = WithBase()
    net.load_state_dict(warm.state_dict(), strict=False)
    return net.train()

def run(net, kind, x, s, b):
    return net(x, s, b) if kind == 'B' else net(x, s)

def gain(net, kind, pairs):
    import torch
    out = []
    net.eval()
    with torch.no_grad():
        for p in pairs:
            rgb = p['rgb'].astype(np.float64); h, w = rgb.shape[:2]
            t = lambda a: torch.nn.functional.pad(torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255, (0, w % 2, 0, h % 2), mode='replicate')
            b = t(p['base'])
            for d, s in zip(p['decoded'], p['steps']):
                y = run(net, kind, t(d), torch.tensor([float(s)]), b)[0, :, :h, :w]
                f = (y.clamp(0, 1) * 255).round().permute(1, 2, 0).numpy()
                out.append(10 * math.log10(np.mean((d - rgb) ** 2) / np.mean((f - rgb) ** 2)))
    net.train()
    return float(np.mean(out))

def train(kind, steps, lr):
    import torch
    torch.set_num_threads(1); torch.manual_seed(0)
    tr, he = load(OUT / 'pairs'), load(OUT / 'pairs-heldout')
    net = make_net(kind)
    errs = {}
    for p in tr:
        for d, s in zip(p['decoded'], p['steps']):
            errs.setdefault(float(s), []).append(np.mean((d / 255.0 - p['rgb'] / 255.0) ** 2))
    errs = {k: float(np.mean(v)) for k, v in errs.items()}
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    rng = np.random.default_rng(0)
    log = open(OUT / f'log_{kind}.txt', 'w')
    print(f'start gain {gain(net, kind, he):.4f}', file=log, flush=True)
    t0 = time.time()
    for step in range(steps):
        cur = lr * 0.5 * (1 + math.cos(math.pi * step / steps)) * min(1, (step + 1) / 100)
        for g in opt.param_groups: g['lr'] = cur
        xs, ys, bs, ss = [], [], [], []
        for _ in range(16):
            p = tr[rng.integers(len(tr))]; k = rng.integers(len(p['steps']))
            H, W = p['rgb'].shape[:2]; size = min(128, H // 2 * 2, W // 2 * 2)
            top = 2 * rng.integers((H - size) // 2 + 1); left = 2 * rng.integers((W - size) // 2 + 1)
            sl = (slice(top, top + size), slice(left, left + size))
            xs.append(p['decoded'][k][sl]); ys.append(p['rgb'][sl]); bs.append(p['base'][sl]); ss.append(p['steps'][k])
        side = min(min(a.shape[:2]) for a in xs) // 2 * 2
        T = lambda L: torch.from_numpy(np.stack([a[:side, :side] for a in L])).permute(0, 3, 1, 2).float() / 255
        x, y, b = T(xs), T(ys), T(bs); s = torch.tensor(np.array(ss, np.float32))
        with torch.autocast('cpu', dtype=torch.bfloat16):
            f = run(net, kind, x, s, b)
        wgt = torch.tensor([1.0 / errs[float(v)] for v in ss])
        loss = ((f.float() - y).square().mean((1, 2, 3)) * wgt).mean()
        opt.zero_grad(); loss.backward(); opt.step()
        if (step + 1) % 500 == 0:
            print(f'step {step + 1} gain {gain(net, kind, he):.4f} min {(time.time() - t0) / 60:.1f}', file=log, flush=True)

if __name__ == '__main__':
    if sys.argv[1] == 'pairs':
        from vqz.codec.levels import RESIDUAL_LADDER
        steps = [s for _, s in RESIDUAL_LADDER]
        tr, he = split()
        t = time.time()
        code_pairs(he, OUT / 'pairs-heldout', steps[::2], None, 0)
        code_pairs(tr, OUT / 'pairs', steps, 3, 0)
        print('coded in', time.time() - t)
    else:
        train(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
