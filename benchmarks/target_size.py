"""How closely ``--target-size`` and ``--target-bpp`` meet their budgets, and the RD of part-way stages.

One :class:`~vqz.codec.rate_control.QualityLadder` per image (a single encode at the best
quality), then for each budget the file :func:`~vqz.codec.rate_control.choose_for_size`
picks (the same code ``vqz encode --target-size`` runs), decoded to measure its PSNR. The
part-way check codes fractions of one stage and compares their PSNR with the straight line
between the two whole levels around them (positive: better than the line).

    python -m vqz.benchmarks.target_size [--images DIR] [--sizes 8000,12000,...] [--bpps 0.15,0.3,0.5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def _row(label: str, ratios: list[float], bpps: list[float], psnrs: list[float], unmet: int) -> str:
    return (f"| {label} | {min(ratios):.4f} / {statistics.median(ratios):.4f} / {max(ratios):.4f} | "
            f"{statistics.mean(bpps):.3f} | {statistics.mean(psnrs):.2f} | {unmet} |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=KODAK)
    parser.add_argument("--sizes", default="8000,12000,20000,32000", help="byte budgets (8 kB = 8000 bytes)")
    parser.add_argument("--bpps", default="0.15,0.3,0.5")
    parser.add_argument("--fractions", default="0.25,0.5,0.75")
    parser.add_argument("--rd-images", type=int, default=4, help="images for the part-way RD check")
    parser.add_argument("--limit", type=int, default=0)
    args = parser.parse_args(argv)

    from PIL import Image

    from vqz.codec.pipeline import decode_bytes
    from vqz.codec.rate_control import QualityLadder, budget_for_bpp, choose_for_bpp, choose_for_size, psnr
    from vqz.codec.registry import load_model

    weights = load_model()
    sizes = [int(x) for x in args.sizes.split(",")]
    bpps = [float(x) for x in args.bpps.split(",")]
    fractions = [float(x) for x in args.fractions.split(",")]
    paths = sorted(args.images.glob("*.png"))[: args.limit or None]
    size_rows: dict[int, list[tuple[float, float, float, bool]]] = defaultdict(list)
    bpp_rows: dict[float, list[tuple[float, float, float, bool]]] = defaultdict(list)
    rd: list[tuple[str, int, float, float]] = []
    for number, path in enumerate(paths):
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"))
        ladder = QualityLadder(weights, rgb)
        for budget in sizes:
            choice = choose_for_size(ladder, budget)
            quality = psnr(rgb, decode_bytes(weights, choice.data))
            size_rows[budget].append((len(choice.data) / budget, choice.bpp, quality, choice.met))
        for target in bpps:
            choice = choose_for_bpp(ladder, target)
            budget = budget_for_bpp(target, ladder.pixels)
            quality = psnr(rgb, decode_bytes(weights, choice.data))
            bpp_rows[target].append((len(choice.data) / budget, choice.bpp, quality, choice.met))
        if number < args.rd_images:
            for level in (2, len(ladder.levels) // 2 + 1):
                s0, s1 = len(ladder.file(level - 1)), len(ladder.file(level))
                p0, p1 = ladder.psnr(level - 1), ladder.psnr(level)
                for fraction in fractions:
                    data = ladder.partial_file(level, round(fraction * ladder.cells))
                    line = p0 + (len(data) - s0) / (s1 - s0) * (p1 - p0)
                    rd.append((path.stem, level, fraction, psnr(rgb, decode_bytes(weights, data)) - line))
        print(f"{path.name} done", file=sys.stderr, flush=True)

    print(f"{len(paths)} images, model {weights.model_id} ({weights.config.num_stages} stages)\n")
    print("| budget (bytes) | size / budget: min / median / max | mean bpp | mean PSNR (dB) | over budget (q1) |")
    print("|---|---|---|---|---|")
    for budget, rows in size_rows.items():
        print(_row(str(budget), *map(list, zip(*[r[:3] for r in rows])), sum(not r[3] for r in rows)))
    print("\n| target bpp | size / budget: min / median / max | mean bpp | mean PSNR (dB) | over budget (q1) |")
    print("|---|---|---|---|---|")
    for target, rows in bpp_rows.items():
        print(_row(f"{target:g}", *map(list, zip(*[r[:3] for r in rows])), sum(not r[3] for r in rows)))
    print("\nPart-way stage vs the straight line between whole levels (PSNR gain in dB, + is above the line)\n")
    print("| image | stage (level) | " + " | ".join(f"{f:.0%} of cells" for f in fractions) + " |")
    print("|---|---|" + "---|" * len(fractions))
    by_key: dict[tuple[str, int], list[float]] = defaultdict(list)
    for name, level, _, gain in rd:
        by_key[(name, level)].append(gain)
    for (name, level), gains in by_key.items():
        print(f"| {name} | {level} | " + " | ".join(f"{g:+.3f}" for g in gains) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
