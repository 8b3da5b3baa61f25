"""How closely ``--target-size`` and ``--target-bpp`` meet their budgets, and the RD of part-way stages.

One :class:`~vqz.codec.rate_control.QualityLadder` per image (a single encode at the best
quality), then for each budget the file :func:`~vqz.codec.rate_control.choose_for_size`
picks (the same code ``vqz encode --target-size`` runs) and its PSNR. The part-way check codes
fractions of one stage (stage 2 and the middle stage) in each cell order and compares their
PSNR with the straight line (chord) between the two whole levels around them (positive: better
than the line): the descending order, the ascending (reversed) order at the same number of
cells, and the encoder's choice for a budget of the descending file's size. The cost of
choosing is timed side by side: ``choose_for_size`` with the descending order only (what the
encoder did before there were two orders) and with both, caches emptied before each.

    python -m vqz.benchmarks.target_size [--images DIR] [--sizes 8000,12000,...] [--bpps 0.15,0.3,0.5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"
COLUMNS = ("descending", "ascending", "chosen")


def _row(label: str, ratios: list[float], bpps: list[float], psnrs: list[float], unmet: int) -> str:
    return (f"| {label} | {min(ratios):.4f} / {statistics.median(ratios):.4f} / {max(ratios):.4f} | "
            f"{statistics.mean(bpps):.3f} | {statistics.mean(psnrs):.2f} | {unmet} |")


def _mse(psnr_db: float) -> float:
    return 255.0**2 * 10 ** (-psnr_db / 10)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=KODAK)
    parser.add_argument("--sizes", default="8000,12000,20000,32000", help="byte budgets (8 kB = 8000 bytes)")
    parser.add_argument("--bpps", default="0.15,0.3,0.5")
    parser.add_argument("--fractions", default="0.25,0.5,0.75")
    parser.add_argument("--rd-images", type=int, default=0, help="images for the part-way RD check (0: all)")
    parser.add_argument("--time-budget", type=int, default=20000, help="byte budget of the timing of the choice")
    parser.add_argument("--limit", type=int, default=0)
    args = parser.parse_args(argv)

    from PIL import Image

    from vqz.codec.pipeline import decode_bytes
    from vqz.codec.rate_control import QualityLadder, RateChoice, budget_for_bpp, choose_for_bpp, choose_for_size, psnr
    from vqz.codec.registry import load_model
    from vqz.codec.stage_context import ORDER_ASCENDING, ORDER_DESCENDING

    weights = load_model()
    sizes = [int(x) for x in args.sizes.split(",")]
    bpps = [float(x) for x in args.bpps.split(",")]
    fractions = [float(x) for x in args.fractions.split(",")]
    paths = sorted(args.images.glob("*.png"))[: args.limit or None]
    size_rows: dict[int, list[tuple[float, float, float, bool]]] = defaultdict(list)
    bpp_rows: dict[float, list[tuple[float, float, float, bool]]] = defaultdict(list)
    ascending_chosen = {"sizes": 0, "bpps": 0}
    # (image, level, fraction) -> column -> (PSNR gain over the chord in dB, MSE below the MSE chord in %)
    rd: dict[tuple[str, int, float], dict[str, tuple[float, float]]] = {}
    timings: list[tuple[float, float, float]] = []

    def measured(ladder: QualityLadder, choice: RateChoice) -> float:
        """PSNR of the chosen file, from the ladder's caches (each checked once against a real decode)."""
        value = (ladder.psnr(choice.quality) if choice.coded_cells is None
                 else ladder.partial_psnr(choice.quality, choice.coded_cells, choice.cell_order))
        if not measured.checked:  # type: ignore[attr-defined]
            assert value == psnr(ladder.rgb, decode_bytes(weights, choice.data)), "cached PSNR differs from a decode"
            measured.checked = choice.coded_cells is not None  # type: ignore[attr-defined]
        return value

    measured.checked = False  # type: ignore[attr-defined]
    for number, path in enumerate(paths):
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"))
        start = time.perf_counter()
        ladder = QualityLadder(weights, rgb)
        encode_s = time.perf_counter() - start
        for orders in ((ORDER_DESCENDING,), (ORDER_DESCENDING, ORDER_ASCENDING)):
            ladder._partial.clear()
            ladder._partial_psnr.clear()
            start = time.perf_counter()
            choose_for_size(ladder, args.time_budget, orders)
            timings.append((encode_s, len(orders), time.perf_counter() - start))
        for budget in sizes:
            choice = choose_for_size(ladder, budget)
            ascending_chosen["sizes"] += choice.coded_cells is not None and choice.cell_order == ORDER_ASCENDING
            size_rows[budget].append((len(choice.data) / budget, choice.bpp, measured(ladder, choice), choice.met))
        for target in bpps:
            choice = choose_for_bpp(ladder, target)
            ascending_chosen["bpps"] += choice.coded_cells is not None and choice.cell_order == ORDER_ASCENDING
            budget = budget_for_bpp(target, ladder.pixels)
            bpp_rows[target].append((len(choice.data) / budget, choice.bpp, measured(ladder, choice), choice.met))
        if not args.rd_images or number < args.rd_images:
            for level in (2, len(ladder.levels) // 2 + 1):
                s0, s1 = len(ladder.file(level - 1)), len(ladder.file(level))
                p0, p1 = ladder.psnr(level - 1), ladder.psnr(level)

                def gains(size: int, value: float) -> tuple[float, float]:
                    t = (size - s0) / (s1 - s0)
                    line_mse = _mse(p0) + t * (_mse(p1) - _mse(p0))
                    return value - (p0 + t * (p1 - p0)), 100 * (line_mse - _mse(value)) / line_mse

                for fraction in fractions:
                    coded = round(fraction * ladder.cells)
                    points = {}
                    for name, order in (("descending", ORDER_DESCENDING), ("ascending", ORDER_ASCENDING)):
                        size = len(ladder.partial_file(level, coded, order))
                        points[name] = gains(size, ladder.partial_psnr(level, coded, order))
                    choice = choose_for_size(ladder, len(ladder.partial_file(level, coded)))
                    assert choice.quality == level and choice.coded_cells, (path.name, level, fraction)
                    points["chosen"] = gains(len(choice.data), measured(ladder, choice))
                    points["order"] = choice.cell_order  # type: ignore[assignment]
                    rd[(path.stem, level, fraction)] = points
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
    print(f"\nThe ascending order was chosen for {ascending_chosen['sizes']} of {len(paths) * len(sizes)} byte "
          f"budgets and {ascending_chosen['bpps']} of {len(paths) * len(bpps)} bpp targets.")

    print(f"\nTime to choose for --target-size {args.time_budget} (seconds per image, median / max; the encode at"
          " the best quality, common to both, apart):\n")
    print("| | encode (ladder) | choose: descending only | choose: both orders | total: before | total: after |")
    print("|---|---|---|---|---|---|")
    encode = [t[0] for t in timings if t[1] == 1]
    before = [t[2] for t in timings if t[1] == 1]
    after = [t[2] for t in timings if t[1] == 2]
    for label, pick in (("median", statistics.median), ("max", max)):
        print(f"| {label} | {pick(encode):.2f} | {pick(before):.2f} | {pick(after):.2f} | "
              f"{pick([e + b for e, b in zip(encode, before)]):.2f} | {pick([e + a for e, a in zip(encode, after)]):.2f} |")

    if rd:
        print("\nPart-way stage vs the chord between whole levels: summary over "
              f"{len(rd)} points (image x level x fraction)\n")
        print("| order | below the PSNR chord | worst (dB) | mean (dB) | below the MSE chord | worst (% MSE) |")
        print("|---|---|---|---|---|---|")
        for column in COLUMNS:
            values = [p[column][0] for p in rd.values()]
            mse = [p[column][1] for p in rd.values()]
            print(f"| {column} | {sum(v < 0 for v in values)} | {min(values):+.3f} | {statistics.mean(values):+.3f} | "
                  f"{sum(v < 0 for v in mse)} | {min(mse):+.2f} |")
        chosen_ascending = sum(p["order"] == ORDER_ASCENDING for p in rd.values())
        print(f"\nThe encoder chose the ascending order at {chosen_ascending} of {len(rd)} points.")
        levels = sorted({key[1] for key in rd})
        for level in levels:
            keys = [key for key in rd if key[1] == level]
            print(f"\nStage at level {level}: PSNR gain over the chord (dB), descending / ascending / chosen "
                  "(`A` marks a choice of the ascending order)\n")
            print("| image | " + " | ".join(f"{f:.0%} of cells" for f in fractions) + " |")
            print("|---|" + "---|" * len(fractions))
            for name in dict.fromkeys(key[0] for key in keys):
                cells = []
                for fraction in fractions:
                    p = rd[(name, level, fraction)]
                    mark = " A" if p["order"] == ORDER_ASCENDING else ""
                    cells.append(" / ".join(f"{p[c][0]:+.3f}" for c in COLUMNS) + mark)
                print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
