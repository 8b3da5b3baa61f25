"""The budget curve of issue 29: held-out PSNR at one rate against training pixels, for vqz's lineage and a
same-budget baseline run, from the trainers' own logs.

Both trainers validate the same way on the same photos: centre crops of ``min(256, H, W)`` pixels (rounded down
to the model's downsampling) of the 46 held-out photos of ``../shared/data/train`` (the split by name hash;
``validation_files.txt`` of each run), PSNR on the 8-bit-rounded output (``training/train.py: validate``,
``training/train_baseline.py: validate_baseline``). What the logs do not have is vqz's rate: its log gives PSNR
at fixed stage counts (``val_psnr_s1/s4/s8`` on the ``vqz-rvq8-f8`` line, ``s1/s8/s16`` on the rvq16 line it was
grown into). So the shipped model (the end of the lineage) is measured here once on those crops: the bits of each
stage prefix (payloads only, like the baseline's likelihood estimate) and its PSNR per stage count (no
post-filter, as the trainer). vqz's PSNR at the baseline's rate R at a logged step is then its 8-stage PSNR there
minus the shipped model's gap between 8 stages and R (interpolated in log-rate between the two stage counts that
bracket R): exact at the end of the lineage, an approximation earlier (checked against direct interpolation
between the 4- and 8-stage columns where the log has both).

Training pixels: steps x batch x crop^2 of each run's ``train_config.json``; the rvq16 line continues the rvq8
line after its 15000 steps. Usage::

    python -m vqz.benchmarks.budget_curve --baseline checkpoints/bmshj2018-hyperprior-0.0067 \\
        --out benchmarks/results/samebudget/budget_curve
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np

from vqz.benchmarks.aggregate import log_rate_interp as psnr_at  # PSNR at a rate: linear in log-rate

BASELINE_COLUMNS = ["step", "lr", "loss", "mse", "bpp", "aux_loss", "train_psnr", "elapsed_s", "val_psnr", "val_bpp"]
#: (log name, run folder, the installed model exported at the end of that line of the lineage)
LINEAGE = (("vqz-rvq8-f8", Path("checkpoints/vqz-rvq8-f8"), "vqz-rvq8-f8"),
           ("vqz-rvq16-f8", Path("checkpoints/vqz-rvq16-f8"), "vqz-rvq16b-f8"))
#: the step of the rvq16 line the shipped default `vqz-rvq16b-f8` was exported at (checkpoints/README.md)
SHIPPED_STEP = 10853


def _rows(path: Path, columns: list[str] | None = None) -> list[dict[str, str]]:
    """A log's rows (header read from the file unless ``columns``; a header-less file takes ``columns``), the last
    row of each step kept (a resumed run may log a step twice)."""
    with path.open(newline="") as handle:
        lines = list(csv.reader(handle))
    if lines and lines[0] and lines[0][0] == "step":
        header, lines = lines[0], lines[1:]
    else:
        header = columns or []
    by_step = {int(float(line[0])): dict(zip(header, line)) for line in lines if line and line[0]}
    return [by_step[s] for s in sorted(by_step)]


def _pixels_per_step(run: Path) -> int:
    config = json.loads((run / "train_config.json").read_text())
    return int(config["batch"]) * int(config["crop"]) ** 2


def shipped_curve(data: Path, files: list[str], model: str | None = None,
                  size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(rate, PSNR) per stage count 1..S of an installed model (default: the default model) on the trainers'
    validation crops: mean payload bpp and mean PSNR (dB, 8-bit output, no post-filter)."""
    from PIL import Image

    from vqz.api import load_model
    from vqz.benchmarks.metrics import psnr
    from vqz.codec.pipeline import encode_array_indices, render

    weights = load_model(model)
    stages = weights.config.num_stages
    rates, psnrs = [], []
    for name in files:
        with Image.open(data / name) as image:
            rgb = np.asarray(image.convert("RGB"))
        h, w = rgb.shape[:2]
        s = min(size, h, w) // 8 * 8
        y, x = (h - s) // 2, (w - s) // 2
        crop = np.ascontiguousarray(rgb[y : y + s, x : x + s])
        _, stats, indices, _ = encode_array_indices(weights, crop, 1, stages=stages)
        rates.append(np.cumsum(stats.payload_bits) / (s * s))
        psnrs.append([psnr(crop, render(weights, indices[:k], s, s)) for k in range(1, stages + 1)])
    return np.mean(rates, 0), np.mean(psnrs, 0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True, help="a baseline run folder (log.csv, train_config.json)")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/train"))
    parser.add_argument("--out", type=Path, required=True, help="output stem: <out>.md, <out>.png, <out>.json")
    args = parser.parse_args(argv)

    files = (LINEAGE[1][1] / "validation_files.txt").read_text().split()
    baseline_files = (args.baseline / "validation_files.txt").read_text().split()
    if sorted(files) != sorted(baseline_files):
        raise SystemExit("the baseline was validated on other photos than vqz's lineage")
    baseline = [r for r in _rows(args.baseline / "log.csv", BASELINE_COLUMNS) if r.get("val_psnr")]
    per_step = _pixels_per_step(args.baseline)
    target = float(baseline[-1]["val_bpp"])  # the rate compared at: the baseline's latest

    lineage, offset, methods, curves = [], 0, {}, {}
    for name, run, model in LINEAGE:
        rates, psnrs = curves[name] = shipped_curve(args.data, files, model)
        logged = sorted(int(c[len("val_psnr_s"):]) for c in _rows(run / "log.csv")[0] if c.startswith("val_psnr_s"))
        below = [k for k in logged if rates[k - 1] <= target]
        above = [k for k in logged if rates[k - 1] >= target]
        # both neighbours logged and at most 4 stages apart: interpolate the logged PSNRs in log-rate;
        # else: the nearest logged stage count above the rate, less the end model's gap from there to the rate
        direct = bool(below and above) and above[0] - below[-1] <= 4
        k_ref = above[0] if above else below[-1]
        gap = float(psnrs[k_ref - 1]) - psnr_at(target, rates, psnrs)
        methods[name] = (f"interpolated between its logged {below[-1]}- and {above[0]}-stage PSNRs at the rates "
                         f"of `{model}` ({rates[below[-1] - 1]:.3f} / {rates[above[0] - 1]:.3f} bpp)" if direct else
                         f"its logged {k_ref}-stage PSNR less `{model}`'s gap of {gap:.2f} dB between {k_ref} stages "
                         f"({rates[k_ref - 1]:.3f} bpp) and {target:.3f} bpp (exact at the end of the line)")
        pixels = _pixels_per_step(run)
        for row in _rows(run / "log.csv"):
            step = int(float(row["step"]))
            if name == "vqz-rvq16-f8" and step > SHIPPED_STEP:
                continue
            try:
                if direct:
                    lo, hi = below[-1], above[0]
                    value = psnr_at(target, rates[[lo - 1, hi - 1]],
                                    np.array([float(row[f"val_psnr_s{lo}"]), float(row[f"val_psnr_s{hi}"])]))
                else:
                    value = float(row[f"val_psnr_s{k_ref}"]) - gap
            except (KeyError, ValueError):
                continue
            if math.isfinite(value):
                lineage.append((offset + step * pixels, value, name))
        if name == "vqz-rvq8-f8":  # the rvq16 line was grown from this line's last step
            offset += int(json.loads((run / "train_config.json").read_text())["steps"]) * pixels
    points = [(int(float(r["step"])) * per_step, float(r["val_psnr"]), float(r["val_bpp"])) for r in baseline]
    family = json.loads((args.baseline / "train_config.json").read_text())

    args.out.parent.mkdir(parents=True, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for name in dict.fromkeys(n for _, _, n in lineage):
        xs = [p / 1e9 for p, _, n in lineage if n == name]
        ax.plot(xs, [v for _, v, n in lineage if n == name], label=f"vqz lineage: {name} (at {target:.3f} bpp)")
    ax.plot([p / 1e9 for p, _, _ in points], [v for _, v, _ in points], "o-", markersize=2,
            label=f"{family['family']} lmbda {family['lmbda']:g} (its own rate, {points[0][2]:.2f}-{points[-1][2]:.2f} bpp)")
    budget = 25900 * per_step / 1e9
    ax.axvline(budget, color="gray", linestyle=":", linewidth=1)
    for fraction in (1 / 8, 1 / 4, 1 / 2):
        ax.axvline(budget * fraction, color="lightgray", linestyle=":", linewidth=1)
    ax.set_xlabel("training pixels (billions; dotted: 1/8, 1/4, 1/2 and the whole budget)")
    ax.set_ylabel("held-out PSNR (dB), 46 photos, 256 px centre crops")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=120)

    def at_pixels(curve: list[tuple[float, float]], pixels: float) -> str:
        before = [(p, v) for p, v in curve if p <= pixels]
        if not before:
            return "–"
        p, v = before[-1]
        near = p >= pixels - 260 * per_step  # the validation row just before (every 250 steps)
        return f"{v:.2f}" if near else f"{v:.2f} (at {p / 1e9:.2f} G: the run is not there yet)"

    vqz_curve = [(p, v) for p, v, _ in lineage]
    base_curve = [(p, v) for p, v, _ in points]
    lines = [f"Held-out PSNR at {target:.3f} bpp against training pixels (`python -m vqz.benchmarks.budget_curve`).",
             "", "| budget | training pixels | vqz lineage | " + f"{family['family']} {family['lmbda']:g} |",
             "|---|---|---|---|"]
    for label, fraction in (("1/8", 1 / 8), ("1/4", 1 / 4), ("1/2", 1 / 2), ("whole", 1.0)):
        pixels = 25900 * per_step * fraction
        lines.append(f"| {label} | {pixels / 1e9:.2f} G | {at_pixels(vqz_curve, pixels)} | {at_pixels(base_curve, pixels)} |")
    lines += ["", f"Baseline: its validation row at or before each budget point (step {int(baseline[-1]['step'])} "
              f"logged so far), at its own rate ({points[0][2]:.3f}-{points[-1][2]:.3f} bpp over the run). vqz at "
              f"{target:.3f} bpp: " + "; ".join(f"on the {n} line {m}" for n, m in methods.items()) + "."]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps({
        "target_bpp": target, "curves": {n: {"bpp": r.tolist(), "psnr": q.tolist()} for n, (r, q) in curves.items()},
        "vqz": [[p, v, n] for p, v, n in lineage], "baseline": points}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
