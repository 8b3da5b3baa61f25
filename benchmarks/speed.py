"""Encode/decode time and peak memory of learned codecs on large synthetic images.

Each measurement runs in a fresh *probe* process that starts one *worker* process and, once
it has exited, reads ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``: the resident-set
high-water mark of that worker alone (the probe has no other children). The worker imports
the codec, builds the synthetic image, then encodes and decodes it ``repeats`` times.
A second worker run with ``--baseline`` does everything except coding (it imports the codec,
loads its model through ``Codec.prepare`` and builds the image), so ``peak - baseline`` is
the memory the encode+decode itself needed.

Sizes default to 3840x2160 (4K UHD) and 7680x4320 (8K UHD). Times are seconds of wall clock
(median over repeats); memory is MiB (2**20 bytes); threads are ``torch.get_num_threads()``
in the worker.

Run the worker by hand with ``python -m vqz.benchmarks.speed --help``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from vqz.benchmarks.adapter import setting_key
from vqz.benchmarks.errors import BenchmarkError

__all__ = ["DEFAULT_SIZES", "DEFAULT_SPEED_CODECS", "SpeedResult", "measure_speed", "parse_sizes",
           "run_speed", "speed_markdown", "synthetic_image"]

DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((3840, 2160), (7680, 4320))
"""(width, height) in pixels of the synthetic images."""

DEFAULT_SPEED_CODECS = "vqz,hyperprior-untrained"

_PROBE = r"""
import json, resource, subprocess, sys
proc = subprocess.run(sys.argv[1:])
print(json.dumps({"returncode": proc.returncode,
                  "maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def synthetic_image(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A deterministic ``(height, width, 3)`` uint8 test image with smooth areas, edges and noise.

    Built row band by row band so an 8K image needs no full-size float temporaries.
    """
    if width < 1 or height < 1:
        raise BenchmarkError(f"image size must be positive, got {width}x{height}")
    rng = np.random.default_rng(seed)
    out = np.empty((height, width, 3), dtype=np.uint8)
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)
    phases = np.array([0.0, 2.1, 4.2], dtype=np.float32)
    band = 256
    for top in range(0, height, band):
        y = np.linspace(top / height, min(top + band, height) / height, min(band, height - top),
                        endpoint=False, dtype=np.float32)[:, None]
        for c in range(3):
            smooth = 0.5 + 0.25 * np.sin(6.0 * x + 4.0 * y + phases[c]) + 0.15 * np.cos(23.0 * x * y + phases[c])
            edges = 0.2 * ((np.floor(x * 24) + np.floor(y * 14)) % 2)
            noise = rng.normal(0.0, 0.03, size=smooth.shape).astype(np.float32)
            out[top:top + band, :, c] = np.clip((smooth + edges + noise) * 200.0, 0, 255).astype(np.uint8)
    return out


@dataclass(frozen=True)
class SpeedResult:
    """One codec at one setting on one synthetic size (seconds, MiB; ``error`` if it failed)."""

    codec: str
    setting: str
    width: int
    height: int
    bytes: int | None
    bpp: float | None
    encode_s: float | None
    decode_s: float | None
    peak_rss_mib: float | None
    baseline_rss_mib: float | None
    coding_rss_mib: float | None
    threads: int | None
    error: str | None = None
    image: str = "synthetic"  # or "camera": the mosaic of real photos of camera_image


def parse_sizes(spec: str) -> list[tuple[int, int]]:
    """``"3840x2160,7680x4320"`` -> ``[(3840, 2160), (7680, 4320)]``."""
    sizes = []
    for token in spec.split(","):
        token = token.strip().lower()
        if not token:
            continue
        try:
            w, h = (int(v) for v in token.split("x"))
        except ValueError as exc:
            raise BenchmarkError(f"size {token!r} is not WIDTHxHEIGHT (e.g. 3840x2160)") from exc
        if w < 16 or h < 16:
            raise BenchmarkError(f"size {token!r}: width and height must be at least 16 pixels")
        sizes.append((w, h))
    if not sizes:
        raise BenchmarkError("no image size given (e.g. --sizes 3840x2160)")
    return sizes


def _probe(worker_args: list[str], timeout_s: float) -> tuple[int, float]:
    """Run one worker under a fresh probe; (worker return code, worker peak RSS in MiB)."""
    cmd = [sys.executable, "-c", _PROBE, sys.executable, "-m", "vqz.benchmarks.speed", *worker_args]
    # own session, so a timeout can stop the probe *and* its worker
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise BenchmarkError(f"timed out after {timeout_s:g} s") from exc
    try:
        report = json.loads(stdout.strip().splitlines()[-1])
    except (IndexError, ValueError) as exc:
        raise BenchmarkError(f"probe failed: {stderr.strip()[-300:]}") from exc
    return int(report["returncode"]), report["maxrss_kib"] / 1024.0


def measure_speed(codec: str, setting: str, width: int, height: int, repeats: int = 1,
                  timeout_s: float = 1800.0, camera: Path | None = None) -> SpeedResult:
    """Time and peak memory of ``codec`` at ``setting`` on a ``width`` x ``height`` synthetic image (or the
    :func:`camera_image` of the folder ``camera``)."""
    base = ["--codec", codec, "--setting", setting, "--width", str(width), "--height", str(height),
            "--repeats", str(repeats)] + (["--camera", str(camera)] if camera else [])
    empty = SpeedResult(codec, setting, width, height, None, None, None, None, None, None, None, None,
                        image="camera" if camera else "synthetic")
    with tempfile.TemporaryDirectory(prefix="vqz-speed-") as tmp:
        result_file = Path(tmp) / "result.json"
        try:
            rc, peak = _probe([*base, "--out", str(result_file)], timeout_s)
            if rc != 0 or not result_file.exists():
                why = "killed by a signal (out of memory?)" if rc < 0 else f"worker exit status {rc}"
                err = result_file.with_suffix(".err")
                detail = err.read_text().strip() if err.exists() else ""
                return _replace(empty, error=f"{why}{': ' + detail if detail else ''}", peak_rss_mib=peak)
            measured = json.loads(result_file.read_text())
            rc_base, baseline = _probe([*base, "--baseline", "--out", str(Path(tmp) / "baseline.json")], timeout_s)
        except BenchmarkError as exc:
            return _replace(empty, error=str(exc))
    return SpeedResult(
        codec=codec, setting=setting, width=width, height=height, bytes=measured["bytes"],
        bpp=measured["bytes"] * 8 / (width * height), encode_s=measured["encode_s"],
        decode_s=measured["decode_s"], peak_rss_mib=peak,
        baseline_rss_mib=baseline if rc_base == 0 else None,
        coding_rss_mib=peak - baseline if rc_base == 0 else None, threads=measured["threads"],
        image="camera" if camera else "synthetic",
    )


def _replace(result: SpeedResult, **changes: object) -> SpeedResult:
    return SpeedResult(**{**asdict(result), **changes})  # type: ignore[arg-type]


def run_speed(codec_names: Sequence[str], sizes: Sequence[tuple[int, int]], out_dir: Path, *,
              quality: int | None = None, repeats: int = 1, timeout_s: float = 1800.0,
              on_result: Callable[[SpeedResult], None] = lambda r: None,
              camera: Path | None = None) -> list[SpeedResult]:
    """Measure every codec on every size; write ``out_dir/speed.json`` and ``out_dir/speed.md``.

    ``quality`` picks the setting for all codecs (it must be one of each codec's settings);
    by default each codec runs at its middle setting.
    """
    from vqz.benchmarks.registry import get_codec

    if repeats < 1:
        raise BenchmarkError(f"`repeats` must be at least 1, got {repeats}")
    settings = {}
    for name in codec_names:
        codec = get_codec(name)  # raises CodecUnavailable with the reason
        choices = [setting_key(s) for s in codec.settings()]
        if quality is None:
            settings[name] = choices[len(choices) // 2]
        elif str(quality) in choices:
            settings[name] = str(quality)
        else:
            raise BenchmarkError(f"`quality` {quality} is not a setting of {name}; valid: {', '.join(choices)}")
    results = []
    rows = [(w, h, None) for w, h in sizes] + ([(*CAMERA_SIZE, camera)] if camera else [])
    for width, height, folder in rows:
        for name in codec_names:
            result = measure_speed(name, settings[name], width, height, repeats, timeout_s,
                                   **({"camera": folder} if folder else {}))
            results.append(result)
            on_result(result)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "speed.json").write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    (out_dir / "speed.md").write_text(speed_markdown(results))
    return results


def speed_markdown(results: Sequence[SpeedResult]) -> str:
    """A markdown table of speed results."""
    def f(v: float | None, fmt: str) -> str:
        return "–" if v is None else format(v, fmt)

    lines = ["| codec | setting | size | bpp | encode (s) | decode (s) | peak RSS (MiB) | "
             "coding RSS (MiB) | threads | error |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        lines.append(f"| {r.codec} | {r.setting} | {r.width}x{r.height}{' camera' if r.image == 'camera' else ''} | {f(r.bpp, '.4f')} | "
                     f"{f(r.encode_s, '.2f')} | {f(r.decode_s, '.2f')} | {f(r.peak_rss_mib, '.0f')} | "
                     f"{f(r.coding_rss_mib, '.0f')} | {r.threads if r.threads is not None else '–'} | "
                     f"{r.error or ''} |")
    lines.append("")
    lines.append("Peak RSS: high-water resident memory of the worker process "
                 "(getrusage RUSAGE_CHILDREN in a fresh probe); coding RSS: peak minus a run that "
                 "loads the codec and builds the image but does not code it. "
                 "hyperprior-untrained has random weights: its timings are the point, not its bpp. "
                 "A camera row codes a 13.4-megapixel mosaic of real training photos at their own scale "
                 "(benchmarks.speed.camera_image), the others a synthetic image.")
    return "\n".join(lines) + "\n"


#: (width, height) of the camera-size row: a 13.4-megapixel 4:3 photo, as phones and cameras write
CAMERA_SIZE = (4224, 3168)


def camera_image(folder: Path, width: int = CAMERA_SIZE[0], height: int = CAMERA_SIZE[1]) -> np.ndarray:
    """A ``(height, width, 3)`` uint8 mosaic of real photos at their own scale: the largest images of ``folder``
    (largest first, each used once, cut to the cells of a grid over the canvas). A stand-in for a camera photo
    made only from training photos (never a test set); deterministic for a given folder."""
    from vqz.codec.photos import list_images, load_rgb
    from PIL import Image

    sizes = []
    for path in list_images(folder):
        with Image.open(path) as im:
            sizes.append((im.width * im.height, path.name, path))
    sizes.sort(key=lambda s: (-s[0], s[1]))
    if not sizes:
        raise BenchmarkError(f"{folder} holds no images")
    images = [load_rgb(path) for _, _, path in sizes[:64]]
    cell_h = min(min(im.shape[0] for im in images), height)
    cell_w = min(min(im.shape[1] for im in images), width)
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    index = 0
    for top in range(0, height, cell_h):
        for left in range(0, width, cell_w):
            image = images[index % len(images)]
            index += 1
            h, w = min(cell_h, height - top), min(cell_w, width - left)
            y, x = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
            canvas[top : top + h, left : left + w] = image[y : y + h, x : x + w]
    return canvas


def _worker(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vqz.benchmarks.speed",
        description="Speed worker: encode+decode one synthetic image; write timings as JSON.")
    parser.add_argument("--codec", required=True)
    parser.add_argument("--setting", required=True)
    parser.add_argument("--width", type=int, required=True)
    parser.add_argument("--height", type=int, required=True)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--baseline", action="store_true", help="load and build only, do not code")
    parser.add_argument("--camera", type=Path, help="code the camera-size mosaic of this folder's photos instead")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        import torch
        from vqz.benchmarks.registry import get_codec

        codec = get_codec(args.codec)
        setting = {setting_key(s): s for s in codec.settings()}[args.setting]
        codec.prepare(setting)  # model weights count in the baseline, not as coding memory
        img = camera_image(args.camera, args.width, args.height) if args.camera else synthetic_image(args.width, args.height)
        result: dict[str, object] = {"threads": torch.get_num_threads()}
        if not args.baseline:
            enc, dec, size = [], [], 0
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                data = codec.encode(img, setting)
                t1 = time.perf_counter()
                decoded = codec.decode(data)
                t2 = time.perf_counter()
                if decoded.shape != img.shape:
                    raise BenchmarkError(f"decoded shape {decoded.shape} != {img.shape}")
                enc.append(t1 - t0)
                dec.append(t2 - t1)
                size = len(data)
                del data, decoded
            result.update(bytes=size, encode_s=statistics.median(enc), decode_s=statistics.median(dec))
        args.out.write_text(json.dumps(result))
    except Exception as exc:  # reported to the parent through a side file, one line
        args.out.with_suffix(".err").write_text(f"{type(exc).__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_worker())

