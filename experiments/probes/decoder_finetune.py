"""Probe: the default model's synthesis fine-tuned alone on its frozen codes (experiments/probes/decoder_finetune.toml)
against the shipped synthesis, through the whole decode (the file's post-filter included), on held-out photos.

For each held-out photo (the model's held-out split, never Kodak; centre crop of at most 768 x 768) and level 1-4:
the file vqz writes, decoded (a) by the runtime (the shipped synthesis, then the post-filter the file names),
(b) by the fine-tuned synthesis (PyTorch) then the same post-filter, (c) the fine-tuned synthesis alone.
Prints mean PSNR per level. Usage: python experiments/probes/decoder_finetune.py runs/decoder-finetune/realism.safetensors
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import vqz
from vqz.api import load_model
from vqz.benchmarks.metrics import psnr
from vqz.bitstream import unpack_file
from vqz.codec.pipeline import decode_indices
from vqz.codec.padding import compute_padding
from vqz.codec.postfilter import postfilter_for_ref
from vqz.codec.tiling import to_uint8
from vqz.codec.vq import dequantize
from vqz.training.data import split_paths
from vqz.training.loop import load_checkpoint
from vqz.training.model import torch_model


def main(checkpoint: str, crop: int = 768, every: int = 1) -> None:
    torch.set_num_threads(2)
    weights = load_model()
    faithful = torch_model(weights).g_s.eval()
    tuned = copy.deepcopy(faithful).eval()
    load_checkpoint(Path(checkpoint), {"g_s": tuned})
    _, held = split_paths(Path("../shared/data/train"), 0.05, 100000, 1000, 0)
    rows = {q: [] for q in (1, 2, 3, 4)}
    held = held[:: int(every)]
    for path in held:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        h, w = rgb.shape[:2]
        y, x = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
        rgb = np.ascontiguousarray(rgb[y : y + crop, x : x + crop])
        for q in rows:
            data = vqz.encode(rgb, quality=q)
            shipped = vqz.decode_array(data)
            parsed = unpack_file(data)
            indices = decode_indices(weights, parsed.header, parsed.payloads)
            latent = dequantize(indices, weights.codebooks).transpose(2, 0, 1)[None]
            (left, _, top, _), _ = compute_padding(*rgb.shape[:2], min_div=8)
            with torch.no_grad():
                alone, base = (np.ascontiguousarray(to_uint8(net(torch.from_numpy(np.ascontiguousarray(latent))).float()
                               .numpy())[top : top + rgb.shape[0], left : left + rgb.shape[1]]) for net in (tuned, faithful))
            ref = parsed.header.postfilter
            filtered = alone if ref is None else postfilter_for_ref(ref).apply(alone, ref.strength)
            rows[q].append((psnr(rgb, shipped), psnr(rgb, filtered), psnr(rgb, alone), len(data) * 8 / rgb[..., 0].size,
                            psnr(rgb, base)))
    print(f"{len(held)} held-out photos, centre crops of at most {crop} px; mean PSNR (dB)")
    print("| level | bpp | shipped decode | fine-tuned synthesis + the file's post-filter | shipped synthesis alone | fine-tuned synthesis alone |")
    print("|---|---|---|---|---|---|")
    for q, values in rows.items():
        a = np.array(values).mean(0)
        print(f"| {q} | {a[3]:.3f} | {a[0]:.2f} | {a[1]:.2f} ({a[1] - a[0]:+.2f}) | {a[4]:.2f} | {a[2]:.2f} ({a[2] - a[4]:+.2f}) |")


if __name__ == "__main__":
    main(sys.argv[1], *(int(v) for v in sys.argv[2:]))
