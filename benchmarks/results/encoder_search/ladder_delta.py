"""Effort curves against effort 1 on the shipped ladder (``python -m vqz.benchmarks.levels FOLDER --effort N
--out X.json`` rows): dB at equal rate per level (PCHIP of the effort-1 PSNR in log bpp) and BD-rates.

    python benchmarks/results/encoder_search/ladder_delta.py EFFORT1.json EFFORT_N.json ...
"""
import json
import sys

import numpy as np
from scipy.interpolate import PchipInterpolator

from vqz.benchmarks.metrics import bd_rate, ms_ssim_db


def load(path):
    return json.load(open(path))["rows"]


def curve(rows, levels):
    rows = [r for r in rows if r["quality"] in levels]
    return (np.array([r["bpp"] for r in rows]), np.array([r["psnr"] for r in rows]),
            np.array([ms_ssim_db(r["ms_ssim"]) for r in rows]))


base = load(sys.argv[1])
x = np.log([r["bpp"] for r in base])
at = PchipInterpolator(x, [r["psnr"] for r in base])
for path in sys.argv[2:]:
    rows = load(path)
    deltas = [(r["quality"], r["psnr"] - float(at(np.log(r["bpp"]))) if x[0] <= np.log(r["bpp"]) <= x[-1] else float("nan"))
              for r in rows]
    print(path)
    print("  dB at equal rate:", " ".join(f"q{q}:{d:+.3f}" for q, d in deltas),
          f"| mean q2-16 {np.nanmean([d for q, d in deltas if q >= 2]):+.3f}")
    for name, levels in (("q1-16", range(1, 17)), ("q1-4", range(1, 5)), ("q5-16", range(5, 17))):
        b, o = curve(base, levels), curve(rows, levels)
        print(f"  BD-rate {name}: PSNR {bd_rate(b[0], b[1], o[0], o[1]).percent:+.2f}%,"
              f" MS-SSIM {bd_rate(b[0], b[2], o[0], o[2]).percent:+.2f}%")
    print("  encode s (median per image):", [round(r["encode_s_median"], 3) for r in rows])
