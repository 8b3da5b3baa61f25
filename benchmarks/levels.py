"""Per-quality-level table of the vqz model alone, with what the entropy model saves.

    python -m vqz.benchmarks.levels DIR [--out FILE.json] [--model ID] [--effort N] [--fast] [--levels 1,2,4]

For every quality level, over every image of DIR: mean bpp from the file bytes (header
included), mean PSNR (8-bit RGB) and MS-SSIM, encode and decode seconds per image
(model loading excluded), the stages and residual step of the level (codec/levels.py), the bpp of
its residual layer, header bytes, and the stage payload bits actually written against the model's
own estimate and against fixed-length log2(K) bits per index. ``--effort 0`` encodes with the model's light
analysis, ``--fast`` decodes with its light synthesis (:mod:`vqz.codec.light`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from vqz.benchmarks.metrics import ms_ssim, psnr
from vqz.codec.photos import list_images
from vqz.codec.image import to_rgb_array
from vqz.bitstream import unpack_file
from vqz.codec.levels import level_plan
from vqz.codec.pipeline import decode_bytes, encode_array, quality_range
from vqz.codec.registry import load_model


def measure(folder: Path, model: str | None = None, effort: int = 1,
            levels: list[int] | None = None, fast: bool = False) -> list[dict[str, float]]:
    weights = load_model(model)
    images = [(p.name, to_rgb_array(p)) for p in list_images(folder)]
    rows = []
    for quality in levels or quality_range(weights):
        acc: dict[str, list[float]] = {k: [] for k in ("bpp", "psnr", "ms_ssim", "encode_s", "decode_s", "header_bytes",
                                                      "residual_bpp")}
        written = estimated = fixed = 0.0
        for _, rgb in images:
            start = time.perf_counter()
            data, stats = encode_array(weights, rgb, quality, effort=effort)
            encode_s = time.perf_counter() - start
            start = time.perf_counter()
            decoded = decode_bytes(weights, data, fast=fast)
            decode_s = time.perf_counter() - start
            pixels = rgb.shape[0] * rgb.shape[1]
            acc["bpp"].append(8 * len(data) / pixels)
            acc["psnr"].append(psnr(rgb, decoded))
            acc["ms_ssim"].append(ms_ssim(rgb, decoded))
            acc["encode_s"].append(encode_s)
            acc["decode_s"].append(decode_s)
            residual = unpack_file(data).residual or b""
            acc["residual_bpp"].append(8 * len(residual) / pixels)
            acc["header_bytes"].append(len(data) - sum(stats.payload_bits) / 8 - len(residual))
            written += sum(stats.payload_bits)
            estimated += sum(stats.estimated_bits)
            fixed += sum(stats.fixed_length_bits)
        plan = level_plan(weights, quality)
        row = {"quality": quality, "stages": plan.stages, "residual_step": plan.residual_step,
               **{k: statistics.fmean(v) for k, v in acc.items()}}
        row.update(encode_s_median=statistics.median(acc["encode_s"]), decode_s_median=statistics.median(acc["decode_s"]),
                   coded_over_fixed=written / fixed, coded_over_estimate=written / estimated)
        rows.append(row)
    return rows


def to_markdown(rows: list[dict[str, float]]) -> str:
    lines = ["| q | stages + residual step | bpp | residual bpp | PSNR (dB) | MS-SSIM | encode s | decode s | header B | "
             "coded / fixed bits | coded / estimate |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        plan = f"{r['stages']}" + ("" if r["residual_step"] is None else f" + {r['residual_step']:g}")
        lines.append(f"| {r['quality']} | {plan} | {r['bpp']:.4f} | {r['residual_bpp']:.4f} | {r['psnr']:.2f} | {r['ms_ssim']:.4f} | "
                     f"{r['encode_s_median']:.2f} | {r['decode_s_median']:.2f} | {r['header_bytes']:.0f} | "
                     f"{r['coded_over_fixed']:.3f} | {r['coded_over_estimate']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--out", type=Path, help="a .json file for the rows, or a folder: vqz_levels.json and "
                        "vqz_levels.md written there")
    parser.add_argument("--model")
    parser.add_argument("--effort", type=int, default=1, help="encoder effort (vqz encode --effort)")
    parser.add_argument("--levels", help="comma-separated quality levels (default: all)")
    parser.add_argument("--fast", action="store_true", help="decode with the light synthesis (vqz decode --fast)")
    args = parser.parse_args()
    levels = [int(v) for v in args.levels.split(",")] if args.levels else None
    rows = measure(args.folder, args.model, args.effort, levels, args.fast)
    table = to_markdown(rows)
    print(f"threads: {torch.get_num_threads()}, effort {args.effort}, fast {args.fast}\n\n{table}")
    if args.out:
        out = args.out / "vqz_levels.json" if args.out.is_dir() else args.out
        out.write_text(json.dumps({"threads": torch.get_num_threads(), "effort": args.effort, "fast": args.fast,
                                   "rows": rows}, indent=2))
        if args.out.is_dir():
            (args.out / "vqz_levels.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
