"""Encode time per ``--effort`` level, side by side (the model loaded, whole ``encode_array``).

    python experiments/effort_speed.py DIR [--levels 2,4,8,16] [--efforts 1,2,3,4] [--repeat 1]

For every image of DIR and every level, the efforts are timed one after the other (interleaved,
so a busy machine slows them alike); prints the median seconds per image and the mean bpp.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from vqz.codec.photos import list_images
from vqz.codec.image import to_rgb_array
from vqz.codec.pipeline import encode_array
from vqz.codec.registry import load_model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python experiments/effort_speed.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--levels", default="2,4,8,16")
    parser.add_argument("--efforts", default="1,2,3,4")
    parser.add_argument("--model")
    args = parser.parse_args(argv)
    levels = [int(v) for v in args.levels.split(",")]
    efforts = [int(v) for v in args.efforts.split(",")]
    weights = load_model(args.model)
    images = [to_rgb_array(p) for p in list_images(args.folder)]
    encode_array(weights, images[0][:64, :64], 1)  # create the session outside the timings
    seconds = {(q, e): [] for q in levels for e in efforts}
    bpp = {(q, e): [] for q in levels for e in efforts}
    for rgb in images:
        for q in levels:
            for e in efforts:
                start = time.perf_counter()
                data, _ = encode_array(weights, rgb, q, effort=e)
                seconds[q, e].append(time.perf_counter() - start)
                bpp[q, e].append(8 * len(data) / (rgb.shape[0] * rgb.shape[1]))
    head = " | ".join(f"effort {e} s" for e in efforts)
    print(f"{len(images)} images, median encode seconds per image\n\n| q | {head} | "
          + " | ".join(f"effort {e} bpp" for e in efforts) + " |")
    print("|---" * (1 + 2 * len(efforts)) + "|")
    for q in levels:
        print(f"| {q} | " + " | ".join(f"{statistics.median(seconds[q, e]):.2f}" for e in efforts) + " | "
              + " | ".join(f"{statistics.fmean(bpp[q, e]):.4f}" for e in efforts) + " |")


if __name__ == "__main__":
    main()
