"""Runtime (ONNX Runtime + numpy) vs the PyTorch path on a folder of images (training world).

    python -m vqz.benchmarks.runtime_parity ../shared/data/kodak --levels 2,4,8

Per level: index planes equal (count of differing indices, images with any), max decoded
pixel difference (each path synthesising the runtime's indices), PSNR of each path's own
file decoded by the runtime, and that every runtime file decodes to the right size with the
PyTorch synthesis too. Prints a markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from vqz.training.model import torch_model
import torch
from PIL import Image

from vqz.codec.padding import compute_padding, pad_rgb, to_input
from vqz.codec.pipeline import CODING_THREADS, encode_indices, synthesize
from vqz.codec.rate_control import psnr
from vqz.codec.registry import load_model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m vqz.benchmarks.runtime_parity")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--levels", default="2,4,8")
    parser.add_argument("--model", default=None)
    args = parser.parse_args(argv)
    levels = [int(v) for v in args.levels.split(",")]
    weights = load_model(args.model)
    net = torch_model(weights)
    torch.set_num_threads(CODING_THREADS)
    d, top = weights.config.downsampling, max(levels)
    rows = {q: {"indices": 0, "differ": 0, "images_differ": 0, "max_pixel": 0, "psnr_runtime": [], "psnr_torch": []}
            for q in levels}
    for path in sorted(args.folder.glob("*.png")):
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB")).copy()
        (left, _, upper, _), _ = compute_padding(rgb.shape[0], rgb.shape[1], min_div=d)
        crop = (slice(upper, upper + rgb.shape[0]), slice(left, left + rgb.shape[1]))
        runtime = encode_indices(weights, rgb, top)
        reference = net.encode_indices(torch.from_numpy(to_input(pad_rgb(rgb, d))), top)[:, 0].numpy()
        for q in levels:
            row = rows[q]
            differ = int((runtime[:q] != reference[:q]).sum())
            row["indices"] += runtime[:q].size
            row["differ"] += differ
            row["images_differ"] += differ > 0
            ours = synthesize(weights, runtime[:q])[crop]
            with torch.no_grad():
                theirs = net.decode_indices_uint8(torch.from_numpy(runtime[:q])[:, None]).numpy()[crop]
            row["max_pixel"] = max(row["max_pixel"], int(np.abs(ours.astype(int) - theirs.astype(int)).max()))
            row["psnr_runtime"].append(psnr(rgb, ours))
            row["psnr_torch"].append(psnr(rgb, synthesize(weights, reference[:q])[crop]))
    print("| q | indices | differing | images with a difference | max pixel diff | PSNR runtime files (dB) | "
          "PSNR PyTorch files (dB) | max per-image PSNR diff (dB) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for q, row in rows.items():
        a, b = np.array(row["psnr_runtime"]), np.array(row["psnr_torch"])
        print(f"| {q} | {row['indices']} | {row['differ']} | {row['images_differ']} of {len(a)} | {row['max_pixel']} | "
              f"{a.mean():.4f} | {b.mean():.4f} | {np.abs(a - b).max():.4f} |")


if __name__ == "__main__":
    main()
