"""Probe (session 10): would a post-filter help the stage-only levels 1-4 too?

Codes N training images and 12 held-out images (the models' hash split; centre crops of at most
400 000 pixels) at 1..4 stages of the default model, trains a `PostFilterNet(32, 4)` on the training
decodings (strength 60 + 15 (4 - stages), 3000 steps of 16 x 128^2 crops, as `vqz train-postfilter`),
and prints its held-out PSNR gain per stage count. Session 10 (130 images): +0.187 / +0.106 / +0.095 /
+0.084 dB at 1 / 2 / 3 / 4 stages, every image positive (min +0.02). Not shipped: see the model card
of vqz-pf1. Usage (repository root): python experiments/probes/postfilter_stage_only.py [N] [STEPS]
"""
import math, sys
from pathlib import Path

import numpy as np
import torch

from vqz.codec import pipeline
from vqz.codec.photos import is_validation, list_images, load_rgb
from vqz.training.postfilter_net import PostFilterNet
from vqz.codec.registry import load_model
from vqz.training.train_postfilter import _batch, _centre_crop

N = int(sys.argv[1]) if len(sys.argv) > 1 else 130
STEPS = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
torch.set_num_threads(2)
torch.manual_seed(0)
weights = load_model(None)


def strength(stages: int) -> float:
    return 60.0 + 15.0 * (4 - stages)


def decodings(held: bool, count: int) -> list[dict]:
    files = [p for p in list_images(Path("../shared/data/train")) if is_validation(p.name, 0.05) == held]
    files = [files[i] for i in np.random.default_rng(11).permutation(len(files))][:count]
    out = []
    for path in files:
        rgb = _centre_crop(load_rgb(path), 400_000)
        indices = pipeline.encode_indices(weights, rgb, 4)
        decoded = [pipeline.render(weights, indices[:s], *rgb.shape[:2]) for s in range(1, 5)]
        out.append({"rgb": rgb, "decoded": np.stack(decoded), "steps": np.array([strength(s) for s in range(1, 5)], np.float32)})
    return out


train, held = decodings(False, N), decodings(True, 12)
net = PostFilterNet(32, 4)
opt = torch.optim.Adam(net.parameters(), 2e-3)
rng = np.random.default_rng(0)
for it in range(STEPS):
    for group in opt.param_groups:
        group["lr"] = 2e-3 * 0.5 * (1 + math.cos(math.pi * it / STEPS))
    x, y, s = _batch(train, 16, 128, rng)
    loss = torch.nn.functional.mse_loss(net(x, s), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
net.eval()
with torch.no_grad():
    for k in range(4):
        gains = []
        for pair in held:
            rgb = pair["rgb"].astype(np.float64)
            height, width = rgb.shape[:2]
            decoded = pair["decoded"][k]
            x = torch.nn.functional.pad(torch.from_numpy(decoded).permute(2, 0, 1)[None].float() / 255,
                                        (0, width % 2, 0, height % 2), mode="replicate")
            out = (net(x, torch.tensor([strength(k + 1)]))[0, :, :height, :width].clamp(0, 1) * 255).round()
            out = out.permute(1, 2, 0).numpy()
            gains.append(10 * math.log10(np.mean((decoded - rgb) ** 2) / np.mean((out - rgb) ** 2)))
        print(f"{k + 1} stages: held-out gain {np.mean(gains):+.3f} dB (min {np.min(gains):+.3f})")
