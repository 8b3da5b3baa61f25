"""The light transforms' cost: per-level tables and BD-rates from `python -m vqz.benchmarks.levels` runs.

    python benchmarks/results/light/summarize.py benchmarks/results/light/kodak > benchmarks/results/light/kodak/summary.md

Reads, in the folder: `default.json` (effort 1, the model's decoder: the shipped ladder), `fast.json` (effort 1,
decoded with --fast; levels 1-4), `effort0.json` (effort 0, the model's decoder) and `effort0_fast.json` (effort 0,
decoded with --fast; levels 1-4). BD-rates on PSNR and on MS-SSIM in dB against the default over the levels both
have (levels 1-4 alone, and 1-16 where the run has them).
"""

import json
import math
import sys
from pathlib import Path

from vqz.benchmarks.metrics import bd_rate

folder = Path(sys.argv[1])
runs = {name: {r["quality"]: r for r in json.loads((folder / f"{name}.json").read_text())["rows"]}
        for name in ("default", "fast", "effort0", "effort0_fast") if (folder / f"{name}.json").exists()}
base = runs["default"]
labels = {"fast": "decode --fast", "effort0": "encode --effort 0", "effort0_fast": "--effort 0 and --fast"}


def msssim_db(v: float) -> float:
    return -10 * math.log10(1 - v)


print("| level | default bpp / PSNR / MS-SSIM | " + " | ".join(f"{labels[n]} bpp / PSNR / MS-SSIM" for n in runs if n != "default")
      + " |")
print("|---|---|" + "---|" * (len(runs) - 1))
for q in sorted(base):
    cells = [f"{base[q]['bpp']:.4f} / {base[q]['psnr']:.2f} / {base[q]['ms_ssim']:.4f}"]
    for name, rows in runs.items():
        if name == "default":
            continue
        r = rows.get(q)
        cells.append("" if r is None else f"{r['bpp']:.4f} / {r['psnr']:.2f} ({r['psnr'] - base[q]['psnr']:+.2f}) / "
                     f"{r['ms_ssim']:.4f}")
    print(f"| {q} | " + " | ".join(cells) + " |")
print()
print("| against the default | levels | BD-rate (PSNR) | BD-rate (MS-SSIM dB) |")
print("|---|---|---|---|")
for name, rows in runs.items():
    if name == "default":
        continue
    spans = [range(1, 5)] + ([range(1, 17)] if all(q in rows for q in range(1, 17)) else [])
    for span in spans:
        qs = [q for q in span if q in rows and q in base]
        a = [base[q] for q in qs]
        b = [rows[q] for q in qs]
        psnr = bd_rate([r["bpp"] for r in a], [r["psnr"] for r in a], [r["bpp"] for r in b], [r["psnr"] for r in b])
        ssim = bd_rate([r["bpp"] for r in a], [msssim_db(r["ms_ssim"]) for r in a],
                       [r["bpp"] for r in b], [msssim_db(r["ms_ssim"]) for r in b])
        print(f"| {labels[name]} | {qs[0]}-{qs[-1]} | {psnr.percent:+.1f} % | {ssim.percent:+.1f} % |")
