"""Whole commands on a camera-size photo: vqz encode / decode against AVIF, WebP and JPEG (Pillow), one run.

Each command runs in its own process under ``/usr/bin/time``: wall seconds, CPU seconds (user + system)
and peak resident memory. vqz runs as a user runs it (``vqz encode photo.png -q Q -o x.vqz``,
``vqz decode x.vqz -o x.png``); the classic codecs as the equivalent Pillow one-liners (encode the PNG at
``--classic-quality``; decode to PNG with Pillow at zlib level 1, and again with vqz's own PNG writer). The photo is
:func:`vqz.benchmarks.speed.camera_image` of a folder (a mosaic of real photos, never a test set) or a
given file. ``--vqz`` names another ``vqz`` executable to time beside (e.g. an older version's). The rows
"vqz fast" time the light transforms (``--effort 0`` to encode, ``--fast`` to decode); the decode rows give
the PSNR of the decoded PNG against the photo.

    python -m vqz.benchmarks.camera --folder ../shared/data/train --out benchmarks/results/camera
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENCODE = "from PIL import Image; Image.open({src!r}).save({dst!r}, {fmt!r}, quality={q}{extra})"
DECODE = "from PIL import Image; Image.open({src!r}).convert('RGB').save({dst!r}, compress_level={level})"
#: the same decode written by vqz's own PNG writer (what `vqz decode` uses at --png-level 1): the codecs' decoders
#: compared without the difference between the two PNG writers
DECODE_FAST_PNG = ("import numpy as np; from PIL import Image; from vqz.codec.png_writer import png_bytes; "
                   "open({dst!r}, 'wb').write(png_bytes(np.asarray(Image.open({src!r}).convert('RGB'))))")
EXTRA = {"AVIF": ", speed=6, subsampling='4:2:0'", "WEBP": ", method=4", "JPEG": ""}


def timed(command: list[str]) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MiB) of one command."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        subprocess.run(["/usr/bin/time", "-o", report.name, "-f", "%e %U %S %M", *command], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wall, user, system, kib = report.read().split()[-4:]
    return float(wall), float(user) + float(system), int(kib) / 1024


def transform_rates(photo: Path, small: Path, quality: int, repeats: int = 3) -> str:
    """Markdown: microseconds per pixel of the analysis and of the synthesis (the level's stages) on ``photo`` and
    on ``small``, model loaded, best of ``repeats``, in one process."""
    import numpy as np
    from PIL import Image

    from vqz.codec import pipeline
    from vqz.codec.levels import PURE_LEVELS, level_plan
    from vqz.codec.registry import load_model

    from vqz.codec.light import light_for

    weights = load_model()
    stages = level_plan(weights, quality).stages
    light = light_for(weights) if stages <= PURE_LEVELS else None  # --fast applies to the stage-only levels
    light_rates: list[tuple[float, float]] = []
    lines = ["| image | pixels | analysis (µs/pixel) | synthesis (µs/pixel) |", "|---|---|---|---|"]
    rates = []
    for path in (small, photo):
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        pixels = rgb.shape[0] * rgb.shape[1]
        best_a = best_s = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            latent = pipeline.encode_latent(weights, rgb)
            t1 = time.perf_counter()
            indices = pipeline.quantize_latent(weights, latent, stages)
            t2 = time.perf_counter()
            pipeline.render(weights, indices, *rgb.shape[:2])
            t3 = time.perf_counter()
            best_a, best_s = min(best_a, t1 - t0), min(best_s, t3 - t2)
        rates.append((best_a / pixels * 1e6, best_s / pixels * 1e6))
        lines.append(f"| {path.name} | {pixels} | {rates[-1][0]:.3f} | {rates[-1][1]:.3f} |")
        if light is not None:
            best_a = best_s = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                latent = pipeline.encode_latent(weights, rgb, light=True)
                t1 = time.perf_counter()
                indices = pipeline.quantize_latent(weights, latent, stages)
                t2 = time.perf_counter()
                pipeline.render(weights, indices, *rgb.shape[:2], light.synthesis(weights))
                t3 = time.perf_counter()
                best_a, best_s = min(best_a, t1 - t0), min(best_s, t3 - t2)
            light_rates.append((best_a / pixels * 1e6, best_s / pixels * 1e6))
            lines.append(f"| {path.name}, light transforms | {pixels} | {light_rates[-1][0]:.3f} | {light_rates[-1][1]:.3f} |")
    lines.append(f"| ratio large / small | | {rates[1][0] / rates[0][0]:.2f} | {rates[1][1] / rates[0][1]:.2f} |")
    if light_rates:
        lines.append(f"| ratio large / small, light transforms | | {light_rates[1][0] / light_rates[0][0]:.2f} | "
                     f"{light_rates[1][1] / light_rates[0][1]:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, help="make the photo from this folder (camera_image)")
    parser.add_argument("--photo", type=Path, help="or time this photo")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quality", type=int, default=4, help="vqz level")
    parser.add_argument("--classic-quality", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--vqz", action="append", default=[], help="label=path of another vqz executable to time")
    parser.add_argument("--no-fast", dest="fast", action="store_false",
                        help="leave out the rows of the light transforms (vqz encode --effort 0, vqz decode --fast)")
    parser.add_argument("--small", type=Path, help="a small image (e.g. a Kodak image) for the per-pixel comparison of "
                                                  "the transforms (analysis, synthesis; model loaded, same process)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="vqz-camera-"))
    photo = args.photo
    if photo is None:
        import numpy as np
        from PIL import Image

        from vqz.benchmarks.speed import camera_image

        photo = work / "camera.png"
        Image.fromarray(np.ascontiguousarray(camera_image(args.folder))).save(photo)
    main_exe = str(Path(sys.executable).with_name("vqz"))
    executables = [("vqz", main_exe, [], [])]
    if args.fast:  # the light transforms: encode at effort 0, decode --fast
        executables.append(("vqz fast", main_exe, ["--effort", "0"], ["--fast"]))
    executables += [(label, exe, [], []) for label, exe in (v.split("=", 1) for v in args.vqz)]
    rows = []
    for label, exe, encode_flags, decode_flags in executables:
        coded = work / f"{label.replace(' ', '-')}.vqz"
        decoded = work / f"{label.replace(' ', '-')}.png"
        for step, command in (("encode", [exe, "encode", str(photo), "-q", str(args.quality), *encode_flags,
                                          "-o", str(coded), "--force"]),
                              ("decode", [exe, "decode", str(coded), *decode_flags, "-o", str(decoded), "--force"])):
            runs = [timed(command) for _ in range(args.repeats)]
            rows.append((label, step, runs, coded.stat().st_size, decoded))
    for fmt in ("AVIF", "WEBP", "JPEG"):
        coded = work / f"x.{fmt.lower()}"
        decoded = work / f"{fmt}.png"
        enc = ENCODE.format(src=str(photo), dst=str(coded), fmt=fmt, q=args.classic_quality, extra=EXTRA[fmt])
        dec = DECODE.format(src=str(coded), dst=str(decoded), level=1)
        dec_fast = DECODE_FAST_PNG.format(src=str(coded), dst=str(decoded))
        for label, step, code in ((fmt, "encode", enc), (fmt, "decode", dec), (f"{fmt}, vqz's PNG writer", "decode", dec_fast)):
            runs = [timed([sys.executable, "-c", code]) for _ in range(args.repeats)]
            rows.append((label, step, runs, coded.stat().st_size, decoded))
    import numpy as np
    from PIL import Image

    from vqz.benchmarks.metrics import psnr

    with Image.open(photo) as im:
        size = f"{im.width}x{im.height}"
        pixels = im.width * im.height
        original = np.asarray(im.convert("RGB"))
    lines = [f"Whole commands on a {size} photo ({pixels / 1e6:.1f} MP), {os.cpu_count()} CPUs, median of {args.repeats}:",
             "", "| codec | command | wall (s) | CPU (s) | CPU / wall | peak RSS (MiB) | file bytes | bpp | PSNR (dB) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label, step, runs, nbytes, decoded in rows:
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        rss = max(r[2] for r in runs)
        quality = ""
        if step == "decode":
            with Image.open(decoded) as im:
                quality = f"{psnr(original, np.asarray(im.convert('RGB'))):.2f}"
        lines.append(f"| {label} | {step} | {wall:.2f} | {cpu:.2f} | {cpu / wall:.2f} | {rss:.0f} | {nbytes} | "
                     f"{nbytes * 8 / pixels:.3f} | {quality} |")
    lines += ["", f"vqz at -q {args.quality}" + ("; 'vqz fast' encodes with --effort 0 (the light analysis) and decodes "
                                                  "with --fast (the light synthesis)" if args.fast else "")
              + f"; AVIF (speed 6, 4:2:0), WebP (method 4) and JPEG at quality "
              f"{args.classic_quality} through Pillow; vqz decodes write PNG with its default writer (--png-level 1: "
              "Sub filter, ISA-L deflate), the classic codecs' with Pillow's at zlib level 1 and, in the rows "
              "\"vqz's PNG writer\", with vqz's."]
    if args.small:
        lines += ["", transform_rates(photo, args.small, args.quality)]
    (args.out / "camera.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
