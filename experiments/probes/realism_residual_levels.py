"""What realism could mean on a residual level (5-16): the faithful decode (what ships: R is ignored there)
against the realistic synthesis under the residual layer (the layer added to the realistic base, the
post-filter at weight 1 - R), on held-out photos. Prints PSNR (dB) and fine-detail energy kept per level.

    VQZ_MODEL_PATH=... python experiments/probes/realism_residual_levels.py [--images 12] [--levels 5,6,8,12]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import vqz
from vqz.benchmarks.metrics import detail_ratio, psnr
from vqz.bitstream import unpack_file
from vqz.codec import pipeline
from vqz.codec.photos import load_rgb
from vqz.codec.postfilter import postfilter_for_ref
from vqz.codec.realism import blend_postfilter, realistic_for
from vqz.codec.registry import load_model

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--levels", default="5,6,8,12")
    parser.add_argument("--realism", type=float, default=1.0)
    args = parser.parse_args()
    weights = load_model()
    real = realistic_for(weights)
    names = (ROOT / "checkpoints/vqz-rvq16-f8/validation_files.txt").read_text().split()[: args.images]
    print(f"realistic synthesis {real.realism_id}, R = {args.realism}, {len(names)} held-out photos")
    print("| level | faithful PSNR | realistic base PSNR | faithful detail | realistic base detail |")
    print("|---|---|---|---|---|")
    synthesis = real.synthesis(weights, args.realism)
    for level in (int(v) for v in args.levels.split(",")):
        rows = []
        for name in names:
            rgb = load_rgb(ROOT.parent / "shared/data/train" / name)
            data = vqz.encode(rgb, quality=level)
            faithful = vqz.decode_array(data)
            parsed = unpack_file(data)
            header = parsed.header
            indices = pipeline.decode_indices(weights, header, parsed.payloads)
            base = pipeline.render(weights, indices, header.height, header.width, synthesis)
            image = pipeline._add_residual(weights, header, parsed.residual, indices, base)
            if header.postfilter is not None:
                filtered = postfilter_for_ref(header.postfilter).apply(image, header.postfilter.strength)
                image = blend_postfilter(image, filtered, args.realism)
            rows.append((psnr(rgb, faithful), psnr(rgb, image), detail_ratio(rgb, faithful), detail_ratio(rgb, image)))
        m = np.mean(rows, axis=0)
        print(f"| {level} | {m[0]:.2f} | {m[1]:.2f} | {m[2]:.3f} | {m[3]:.3f} |")


if __name__ == "__main__":
    main()
