"""The realistic decoder at matched bytes: vqz at several realism values against WebP and AVIF.

For each image and vqz level, the vqz file is made once; each realism value decodes it; WebP
(method 6) and AVIF (speed 6, 4:2:0) are coded at the largest quality whose whole file fits in the
vqz file's bytes (the smallest quality when none fits: its bytes are reported). Every decoded image
is scored against the original: bpp (file bytes), PSNR, MS-SSIM, ColorVideoVDP JOD
(``standard_fhd``), butteraugli 3-norm and the fine-detail energy ratio
(:mod:`vqz.benchmarks.perceptual`). The perceptual metrics are offline ones and not comparable
with published FID / LPIPS figures.

Outputs in ``--out``: ``rows.csv`` (one row per image, level and variant), ``summary.md`` (means
per level and variant), and with ``--crop-sheet`` a ``crop_sheet.html`` page (original, each
realism, WebP and AVIF side by side at 1:1, crops in ``crops/``; the crop is the 192 x 192 window
with the most fine detail in the original).

    python -m vqz.benchmarks.realism --images ../shared/data/kodak --out benchmarks/results/realism/kodak \\
        --levels 1,2,3,4 --realism 0,1 --crop-sheet kodim01,kodim05,kodim13,kodim14,kodim19,kodim23
    python -m vqz.benchmarks.realism --files checkpoints/vqz-rvq16-f8/validation_files.txt \\
        --images ../shared/data/train --out benchmarks/results/realism/heldout --realism 0,0.5,1
"""

from __future__ import annotations

import argparse
import csv
import html
import io
import statistics
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from vqz.benchmarks.metrics import detail_energy, detail_ratio, ms_ssim, psnr
from vqz.benchmarks.perceptual import butteraugli_3norm, cvvdp_jod

COLUMNS = ["image", "level", "variant", "bytes", "bpp", "psnr", "ms_ssim", "jod", "butteraugli", "detail", "setting"]
METRICS = ["bpp", "psnr", "ms_ssim", "jod", "butteraugli", "detail"]
CROP = 192


def _pillow_bytes(img: np.ndarray, fmt: str, quality: int) -> bytes:
    buffer = io.BytesIO()
    options = {"WEBP": {"method": 6, "lossless": False}, "AVIF": {"speed": 6, "subsampling": "4:2:0"}}[fmt]
    Image.fromarray(img).save(buffer, fmt, quality=quality, **options)
    return buffer.getvalue()


def fit_bytes(img: np.ndarray, fmt: str, budget: int) -> tuple[int, bytes]:
    """(quality, file) of ``fmt`` at the largest quality 0..100 whose file fits ``budget`` bytes (bisection on
    quality, then the neighbours checked, as sizes are nearly but not exactly monotone); quality 0 when none fits."""
    lo, hi = 0, 100
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(_pillow_bytes(img, fmt, mid)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    for q in (lo + 2, lo + 1):
        if q <= 100 and len(data := _pillow_bytes(img, fmt, q)) <= budget:
            return q, data
    return lo, _pillow_bytes(img, fmt, lo)


def _decode_pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _scores(ref: np.ndarray, dec: np.ndarray, size: int) -> dict[str, float]:
    return {"bytes": size, "bpp": size * 8 / (ref.shape[0] * ref.shape[1]), "psnr": psnr(ref, dec),
            "ms_ssim": ms_ssim(ref, dec), "jod": cvvdp_jod(ref, dec), "butteraugli": butteraugli_3norm(ref, dec),
            "detail": detail_ratio(ref, dec)}


def detail_window(img: np.ndarray, size: int = CROP, step: int = 32) -> tuple[int, int]:
    """(top, left) of the ``size`` x ``size`` window (on a ``step`` grid) with the most fine detail."""
    best, where = -1.0, (0, 0)
    for top in range(0, img.shape[0] - size + 1, step):
        for left in range(0, img.shape[1] - size + 1, step):
            energy = detail_energy(np.ascontiguousarray(img[top : top + size, left : left + size]))
            if energy > best:
                best, where = energy, (top, left)
    return where


def run(paths: list[Path], levels: list[int], realisms: list[float], out: Path, sheet: set[str],
        sheet_levels: set[int], log=print, pixel_blend: bool = False, anchors: bool = True) -> list[dict]:
    """Measure every image of ``paths`` at each level (see the module docstring). ``pixel_blend``: also, for each
    realism strictly between 0 and 1, the simpler alternative to network interpolation: the R = 0 and R = 1
    images mixed pixel by pixel (two syntheses per decode), as variant ``pixel mix R=...``. ``anchors``: also WebP
    and AVIF at matched bytes (off to re-measure only vqz's variants, e.g. a new realistic synthesis)."""
    import vqz

    out.mkdir(parents=True, exist_ok=True)
    rows, crops = [], []
    for number, path in enumerate(paths):
        with Image.open(path) as im:
            ref = np.asarray(im.convert("RGB"))
        stem = path.stem
        window = detail_window(ref) if stem in sheet else None
        for level in levels:
            data = vqz.encode(ref, quality=level)
            variants = [(f"vqz R={r:g}", vqz.decode_array(data, realism=r), len(data), level) for r in realisms]
            if pixel_blend:  # the two ends decoded above when asked for, else decoded here
                done = {r: image for r, (_, image, _, _) in zip(realisms, variants)}
                ends = {r: (done[r] if r in done else vqz.decode_array(data, realism=r)).astype(np.float32)
                        for r in (0.0, 1.0)}
                variants += [(f"pixel mix R={r:g}", np.rint(ends[0.0] + r * (ends[1.0] - ends[0.0])).astype(np.uint8),
                              len(data), level) for r in realisms if 0 < r < 1]
            for fmt in ("WEBP", "AVIF") if anchors else ():
                q, coded = fit_bytes(ref, fmt, len(data))
                variants.append((fmt.lower().replace("webp", "WebP").replace("avif", "AVIF"), _decode_pillow(coded),
                                 len(coded), q))
            for name, dec, size, setting in variants:
                rows.append({"image": stem, "level": level, "variant": name, "setting": setting,
                             **_scores(ref, dec, size)})
            if window is not None and level in sheet_levels:
                crops.append((stem, level, window, ref, [(n, d, s) for n, d, _, s in variants],
                              {v: rows[-len(variants) + i] for i, (v, *_) in enumerate(variants)}))
        log(f"{number + 1}/{len(paths)} {stem}")
    with open(out / "rows.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: f"{v:.5f}" if isinstance(v, float) else v for k, v in row.items()})
    table = summary(rows, len(paths))
    (out / "summary.md").write_text(table)
    if crops:
        write_crop_sheet(out, crops, table)
    return rows


def summary(rows: list[dict], images: int) -> str:
    """Markdown: for each level, the mean of each metric per variant."""
    groups: dict[tuple[int, str], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["level"], row["variant"])].append(row)
    lines = [f"Means over {images} images, at matched bytes (WebP / AVIF: the largest quality that fits vqz's file). "
             "JOD: ColorVideoVDP, standard_fhd (higher is better); butteraugli: 3-norm (lower is better); detail: fine-"
             "detail energy kept (1.0 = all). Offline metrics, not comparable with published FID / LPIPS.", "",
             "| level | variant | bpp | PSNR (dB) | MS-SSIM | JOD | butteraugli | detail |", "|---|---|---|---|---|---|---|---|"]
    for (level, variant), group in sorted(groups.items(), key=lambda kv: (kv[0][0], _order(kv[0][1]))):
        means = [statistics.fmean(float(r[m]) for r in group) for m in METRICS]
        lines.append(f"| {level} | {variant} | {means[0]:.4f} | {means[1]:.2f} | {means[2]:.4f} | {means[3]:.3f} | "
                     f"{means[4]:.3f} | {means[5]:.3f} |")
    return "\n".join(lines) + "\n"


def _order(variant: str) -> tuple[int, str]:
    return (0 if variant.startswith("vqz") else 1 if variant.startswith("pixel") else 2, variant)


def summary_html(markdown: str) -> str:
    """The table of :func:`summary` as HTML (the crop sheet's header)."""
    rows = [line.strip("|").split("|") for line in markdown.splitlines() if line.startswith("|") and "---" not in line]
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(c.strip())}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in r) + "</tr>" for r in rows[1:])
    return f"<table class='summary'><tr>{head}</tr>{body}</table>"


_SHEET_BODY = "<p>Each crop is the"


def _sheet_head(table: str) -> list[str]:
    return ["<!doctype html><meta charset='utf-8'><title>vqz crop sheet</title>",
            "<style>body{font:14px sans-serif;background:#222;color:#ddd}td,th{padding:4px;vertical-align:top}"
            ".summary td,.summary th{border-bottom:1px solid #555;text-align:right}"
            "img{image-rendering:pixelated;display:block}</style>",
            "<h1>Crop sheet: vqz at each realism, WebP and AVIF at matched bytes, 1:1</h1>",
            summary_html(table), "<p>" + html.escape(table.split("\n")[0]) + "</p>" if table else ""]


def refresh_crop_sheet(out: Path, table: str) -> None:
    """Put ``table`` (e.g. the summary of merged shards) at the top of ``out/crop_sheet.html``, if there is one."""
    sheet = out / "crop_sheet.html"
    if sheet.exists():
        body = sheet.read_text()
        sheet.write_text("\n".join(_sheet_head(table)) + "\n" + body[body.index(_SHEET_BODY):])


def write_crop_sheet(out: Path, crops: list, table: str = "") -> None:
    """``crop_sheet.html`` and its PNG crops in ``out/crops``: one row per image and level, 1:1, below the
    summary ``table`` (markdown of :func:`summary`) when given."""
    folder = out / "crops"
    folder.mkdir(exist_ok=True)
    parts = _sheet_head(table) + [
        f"{_SHEET_BODY} {CROP}x{CROP} window with the most fine detail in the original. Under each: bytes of "
        "the whole file, PSNR (dB), ColorVideoVDP JOD, fine-detail energy kept.</p><table>"]
    for stem, level, (top, left), ref, variants, scores in crops:
        cells = []
        for name, image, _ in [("original", ref, None)] + variants:
            crop = np.ascontiguousarray(image[top : top + CROP, left : left + CROP])
            file = f"{stem}-q{level}-{name.replace(' ', '').replace('=', '')}.png"
            Image.fromarray(crop).save(folder / file, optimize=True)
            caption = html.escape(name)
            if name in scores:
                s = scores[name]
                caption += f"<br>{s['bytes']} B, {s['psnr']:.2f} dB, JOD {s['jod']:.2f}, detail {s['detail']:.2f}"
            cells.append(f"<td><img src='crops/{file}' width={CROP} height={CROP}>{caption}</td>")
        parts.append(f"<tr><td>{html.escape(stem)}<br>level {level}</td>{''.join(cells)}</tr>")
    parts.append("</table>")
    (out / "crop_sheet.html").write_text("\n".join(parts))


def decode_times(path: Path, levels: list[int], realisms: list[float], repeats: int, folder: Path) -> dict:
    """Median whole-command ``vqz decode`` seconds per (level, realism), interleaved in one run."""
    import subprocess
    import sys

    import vqz

    with Image.open(path) as im:
        ref = np.asarray(im.convert("RGB"))
    folder.mkdir(parents=True, exist_ok=True)
    times: dict[tuple[int, float], list[float]] = defaultdict(list)
    for level in levels:
        source = folder / f"q{level}.vqz"
        source.write_bytes(vqz.encode(ref, quality=level))
        for _ in range(repeats):
            for r in realisms:
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "vqz", "decode", str(source), "-o", str(folder / "out.png"),
                                "--force", "--realism", str(r)], check=True, capture_output=True)
                times[(level, r)].append(time.perf_counter() - start)
    return {key: statistics.median(values) for key, values in times.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, required=True, help="folder of the original images")
    parser.add_argument("--files", type=Path, help="a text file naming the images of --images to use (one per line)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--levels", default="1,2,3,4")
    parser.add_argument("--realism", default="0,1", help="realism values to decode vqz files at")
    parser.add_argument("--limit", type=int, default=0, help="at most this many images (0: all)")
    parser.add_argument("--shard", default="0/1", help="I/N: every N-th image from the I-th (parallel runs into "
                                                     "separate --out folders; merge their rows.csv with --merge)")
    parser.add_argument("--merge", nargs="*", type=Path, default=[], help="rows.csv files to merge into --out "
                                                                          "(summary, and the crop sheet's table if "
                                                                          "--out has one; nothing is measured)")
    parser.add_argument("--crop-sheet", default="", help="comma-separated image stems for the crop sheet")
    parser.add_argument("--sheet-levels", default="1,2")
    parser.add_argument("--pixel-blend", action="store_true", help="also the pixel mix of R = 0 and 1 for each R between")
    parser.add_argument("--no-anchors", action="store_true", help="measure vqz's variants only (no WebP / AVIF)")
    parser.add_argument("--timing", type=int, default=0, help="also time whole-command decodes of the first image, "
                                                             "this many repeats")
    args = parser.parse_args(argv)
    if args.merge:
        rows = [dict(r) for path in args.merge for r in csv.DictReader(open(path))]
        for row in rows:
            row["level"] = int(row["level"])
        args.out.mkdir(parents=True, exist_ok=True)
        with open(args.out / "rows.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, COLUMNS)
            writer.writeheader()
            writer.writerows(sorted(rows, key=lambda r: (r["image"], r["level"], _order(r["variant"]))))
        table = summary(rows, len({r["image"] for r in rows}))
        (args.out / "summary.md").write_text(table)
        refresh_crop_sheet(args.out, table)
        return
    import torch

    torch.set_num_threads(1)
    if args.files:
        names = [n.strip() for n in args.files.read_text().splitlines() if n.strip()]
        paths = [args.images / n for n in names]
    else:
        paths = sorted(p for p in args.images.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    if args.limit:
        paths = paths[: args.limit]
    index, count = (int(v) for v in args.shard.split("/"))
    paths = paths[index::count]
    levels = [int(v) for v in args.levels.split(",")]
    realisms = [float(v) for v in args.realism.split(",")]
    run(paths, levels, realisms, args.out, set(filter(None, args.crop_sheet.split(","))),
        {int(v) for v in args.sheet_levels.split(",")}, pixel_blend=args.pixel_blend, anchors=not args.no_anchors)
    if args.timing:
        times = decode_times(paths[0], levels, realisms, args.timing, args.out / "timing")
        lines = [f"Whole-command `vqz decode` of {paths[0].name} to PNG, median of {args.timing} interleaved runs (s):",
                 "", "| level | " + " | ".join(f"R={r:g}" for r in realisms) + " | ratio R=max / R=0 |",
                 "|---" * (len(realisms) + 2) + "|"]
        for level in levels:
            values = [times[(level, r)] for r in realisms]
            lines.append(f"| {level} | " + " | ".join(f"{v:.3f}" for v in values) + f" | {values[-1] / values[0]:.2f} |")
        (args.out / "timing.md").write_text("\n".join(lines) + "\n")
        for path in (args.out / "timing").iterdir():
            path.unlink()
        (args.out / "timing").rmdir()


if __name__ == "__main__":
    main()
