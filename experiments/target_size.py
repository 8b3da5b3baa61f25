"""How closely ``--target-size`` and ``--target-bpp`` meet their budgets, and the RD of part-way stages.

One :class:`~vqz.codec.rate_control.QualityLadder` per image (a single encode at the best
quality), then for each budget the file :func:`~vqz.codec.rate_control.choose_for_size`
picks (the same code ``vqz encode --target-size`` runs) and its PSNR. The part-way check takes
budgets 25/50/75% of the way (in bytes) from one whole level's size to the next (level 2 and
the middle level) and compares the PSNR of the file chosen for each with the straight line
(chord) between the two whole levels (positive: better than the line), for each way of picking
the part-way stage's cells: the priority order alone (``order``, what earlier encoders wrote),
the block mask alone (``mask``), the encoder's file (``chosen``: the mask, the order only where
no block fits) and, for reference, two ways of choosing between order and mask it does not
use: by the larger total latent gain of the coded cells (``gain pick``, free) and by decoded
PSNR (``best``: one synthesis per candidate). The cost is timed side by side: ``choose_for_size``
with the priority order only (the encoder before block masks) and as the encoder now runs it,
caches emptied before each.

    python experiments/target_size.py [--images DIR] [--sizes 8000,12000,...] [--bpps 0.15,0.3,0.5]
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
COLUMNS = ("order", "mask", "chosen", "gain pick", "best")


def partial_gain(ladder, quality: int, coded: int | bytes) -> float:
    """Total latent-domain gain of the cells ``ladder.partial_file`` codes (the proxy ``block_scores`` ranks
    blocks by; a measured, rejected way to choose between a mask and the priority order)."""
    scores = ladder.block_scores(quality)
    coded_cells = ladder.partial_indices(quality, coded)[quality - 1].ravel() >= 0
    return float(scores.cell_gain.ravel()[coded_cells].sum())


def _row(label: str, rows: list[tuple[float, float, float, bool, float]]) -> str:
    ratios, bpps, psnrs, met, order_psnrs = (list(column) for column in zip(*rows))
    return (f"| {label} | {min(ratios):.4f} / {statistics.median(ratios):.4f} / {max(ratios):.4f} | "
            f"{sum(r >= 0.9 for r in ratios)} / {len(ratios)} | {statistics.mean(bpps):.3f} | "
            f"{statistics.mean(psnrs):.3f} | {statistics.mean(order_psnrs):.3f} | {sum(not m for m in met)} |")


_HEAD = ("size / budget: min / median / max | files ≥ 90% of it | mean bpp | mean PSNR (dB) | "
         "mean PSNR, priority order only (dB) | over budget (q1) |")


def _mse(psnr_db: float) -> float:
    return 255.0**2 * 10 ** (-psnr_db / 10)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=KODAK)
    parser.add_argument("--sizes", default="8000,12000,20000,32000", help="byte budgets (8 kB = 8000 bytes)")
    parser.add_argument("--bpps", default="0.15,0.3,0.5")
    parser.add_argument("--fractions", default="0.25,0.5,0.75",
                        help="budgets this far (in bytes) from one whole level's size to the next")
    parser.add_argument("--rd-images", type=int, default=0, help="images for the part-way RD check (0: all)")
    parser.add_argument("--time-budget", type=int, default=20000, help="byte budget of the timing of the choice")
    parser.add_argument("--limit", type=int, default=0)
    args = parser.parse_args(argv)

    from PIL import Image

    from vqz.codec.pipeline import decode_bytes
    from vqz.codec.rate_control import QualityLadder, RateChoice, budget_for_bpp, choose_for_bpp, choose_for_size, psnr
    from vqz.codec.registry import load_model

    weights = load_model()
    sizes = [int(x) for x in args.sizes.split(",")]
    bpps = [float(x) for x in args.bpps.split(",")]
    fractions = [float(x) for x in args.fractions.split(",")]
    paths = sorted(args.images.glob("*.png"))[: args.limit or None]
    size_rows: dict[int, list[tuple[float, float, float, bool, float]]] = defaultdict(list)
    bpp_rows: dict[float, list[tuple[float, float, float, bool, float]]] = defaultdict(list)
    masks_chosen = {"sizes": 0, "bpps": 0}
    # (image, level, fraction) -> column -> (PSNR gain over the chord in dB, MSE below the MSE chord in %)
    rd: dict[tuple[str, int, float], dict[str, tuple[float, float]]] = {}
    timings: list[tuple[float, float, float]] = []  # (encode, choose: order only, choose: now)
    checked: set[str] = set()

    def measured(ladder: QualityLadder, choice: RateChoice) -> float:
        """PSNR of the chosen file, from the ladder's caches (once per kind checked against a real decode)."""
        if choice.coded_cells is None:
            return ladder.psnr(choice.quality)
        coded = choice.coded_cells if choice.mask is None else choice.mask
        value = ladder.partial_psnr(choice.quality, coded)
        kind = "order" if choice.mask is None else "mask"
        if kind not in checked:
            assert value == psnr(ladder.rgb, decode_bytes(weights, choice.data)), "cached PSNR differs from a decode"
            checked.add(kind)
        return value

    def fresh(ladder: QualityLadder) -> None:
        ladder._partial.clear()
        ladder._partial_psnr.clear()
        ladder._blocks.clear()

    for number, path in enumerate(paths):
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"))
        start = time.perf_counter()
        ladder = QualityLadder(weights, rgb)
        encode_s = time.perf_counter() - start
        times = []
        for kinds in (("order",), None):
            fresh(ladder)
            start = time.perf_counter()
            choose_for_size(ladder, args.time_budget) if kinds is None else choose_for_size(ladder, args.time_budget,
                                                                                            kinds)
            times.append(time.perf_counter() - start)
        timings.append((encode_s, *times))
        for budget in sizes:
            choice = choose_for_size(ladder, budget)
            masks_chosen["sizes"] += choice.mask is not None
            order = measured(ladder, choose_for_size(ladder, budget, ("order",)))
            size_rows[budget].append((len(choice.data) / budget, choice.bpp, measured(ladder, choice), choice.met,
                                      order))
        for target in bpps:
            choice = choose_for_bpp(ladder, target)
            masks_chosen["bpps"] += choice.mask is not None
            budget = budget_for_bpp(target, ladder.pixels)
            order = measured(ladder, choose_for_bpp(ladder, target, ("order",)))
            bpp_rows[target].append((len(choice.data) / budget, choice.bpp, measured(ladder, choice), choice.met,
                                     order))
        if not args.rd_images or number < args.rd_images:
            for level in (2, len(ladder.levels) // 2 + 1):
                s0, s1 = len(ladder.file(level - 1)), len(ladder.file(level))
                p0, p1 = ladder.psnr(level - 1), ladder.psnr(level)

                def gains(size: int, value: float) -> tuple[float, float]:
                    t = (size - s0) / (s1 - s0)
                    line_mse = _mse(p0) + t * (_mse(p1) - _mse(p0))
                    return value - (p0 + t * (p1 - p0)), 100 * (line_mse - _mse(value)) / line_mse

                for fraction in fractions:
                    budget = round(s0 + fraction * (s1 - s0))
                    points: dict = {}
                    selections: dict = {}
                    for name, kinds in (("order", ("order",)), ("mask", ("mask",)), ("chosen", None)):
                        choice = choose_for_size(ladder, budget) if kinds is None else choose_for_size(ladder, budget,
                                                                                                       kinds)
                        assert choice.quality == level and choice.coded_cells, (path.name, level, fraction, name)
                        points[name] = gains(len(choice.data), measured(ladder, choice))
                        selections[name] = choice.selection
                        if name == "chosen":
                            points["kind"] = "mask" if choice.mask is not None else "order"
                    points["best"] = max(points["order"], points["mask"])
                    by_gain = max(("order", "mask"), key=lambda k: partial_gain(ladder, level, selections[k]))
                    points["gain pick"] = points[by_gain]
                    rd[(path.stem, level, fraction)] = points
        print(f"{path.name} done", file=sys.stderr, flush=True)

    print(f"{len(paths)} images, model {weights.model_id} ({weights.config.num_stages} stages)\n")
    print("| budget (bytes) | " + _HEAD)
    print("|---|---|---|---|---|---|---|")
    for budget, rows in size_rows.items():
        print(_row(str(budget), rows))
    print("\n| target bpp | " + _HEAD)
    print("|---|---|---|---|---|---|---|")
    for target, rows in bpp_rows.items():
        print(_row(f"{target:g}", rows))
    print(f"\nA block mask was chosen for {masks_chosen['sizes']} of {len(paths) * len(sizes)} byte "
          f"budgets and {masks_chosen['bpps']} of {len(paths) * len(bpps)} bpp targets (the priority order for the "
          "rest that stop part-way).")

    print(f"\nTime for --target-size {args.time_budget} (seconds per image, median / max; the encode at"
          " the best quality, common to both, apart):\n")
    print("| | encode (ladder) | choose: order only (before) | choose: mask or order (now) | total: before | "
          "total: now |")
    print("|---|---|---|---|---|---|")
    for label, pick in (("median", statistics.median), ("max", max)):
        encode, before, after = (list(column) for column in zip(*timings))
        print(f"| {label} | {pick(encode):.2f} | {pick(before):.2f} | {pick(after):.2f} | "
              f"{pick([e + b for e, b in zip(encode, before)]):.2f} | {pick([e + a for e, a in zip(encode, after)]):.2f} |")

    if rd:
        print(f"\nPart-way stage vs the chord between whole levels: summary over {len(rd)} points "
              "(image x level x budget)\n")
        print("| cells | below the PSNR chord | worst (dB) | mean (dB) | below the MSE chord | worst (% MSE) |")
        print("|---|---|---|---|---|---|")
        for column in COLUMNS:
            values = [p[column][0] for p in rd.values()]
            mse = [p[column][1] for p in rd.values()]
            print(f"| {column} | {sum(v < 0 for v in values)} | {min(values):+.3f} | {statistics.mean(values):+.3f} | "
                  f"{sum(v < 0 for v in mse)} | {min(mse):+.2f} |")
        masks = sum(p["kind"] == "mask" for p in rd.values())
        print(f"\nThe encoder wrote a mask at {masks} of {len(rd)} points (the priority order at the rest).")
        for column in ("mask", "gain pick"):
            agree = sum(p[column] == p["best"] for p in rd.values())
            lost = [p["best"][0] - p[column][0] for p in rd.values()]
            print(f"`{column}` is the file with the better PSNR at {agree} of {len(rd)} points and loses "
                  f"{max(lost):.3f} dB at most to it (mean {statistics.mean(lost):.4f} dB).")
        for level in sorted({key[1] for key in rd}):
            keys = [key for key in rd if key[1] == level]
            print(f"\nLevel {level} (budgets between levels {level - 1} and {level}): PSNR gain over the chord (dB), "
                  "order / mask (`*` marks the file the encoder writes)\n")
            print("| image | " + " | ".join(f"{f:.0%} of the way" for f in fractions) + " |")
            print("|---|" + "---|" * len(fractions))
            for name in dict.fromkeys(key[0] for key in keys):
                cells = []
                for fraction in fractions:
                    p = rd[(name, level, fraction)]
                    cells.append(" / ".join(f"{p[c][0]:+.3f}" + ("*" if p["kind"] == c else "")
                                            for c in ("order", "mask")))
                print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
