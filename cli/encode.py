"""``vqz encode``: images -> .vqz files (a fixed quality, or rate control to a target)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional, Union

import typer

from vqz.cli.files import (
    STDIN_LABEL,
    check_target,
    expand_inputs,
    image_suffixes,
    is_stdio,
    plan_jobs,
    read_stdin,
    refuse_terminal_output,
    write_output,
)
from vqz.options import DEFAULT_QUALITY, EncodeOptions, OptionError
from vqz.cli.report import error, note, run_batch, warning
from vqz.codec.image import DEFAULT_MAX_PIXELS
from vqz.errors import VqzError


@dataclass(frozen=True)
class EncodeTask:
    """Everything a worker process needs to encode one image (picklable)."""

    source: Union[Path, bytes]  # a path, or the bytes read from stdin
    model: Optional[str]
    options: EncodeOptions
    max_pixels: int


@dataclass(frozen=True)
class EncodeResult:
    data: bytes
    quality: int
    bpp: float
    psnr: Optional[float]  # dB, measured by --target-psnr only
    met: bool  # False when no level met the target
    warnings: tuple[str, ...] = ()  # Python warnings raised while reading the image, e.g. 16 -> 8 bits
    level: Optional[float] = None  # the quality as a fraction when the last stage stops part-way
    size: int = 0  # bytes


def encode_one(task: EncodeTask) -> EncodeResult:
    """Encode one image (runs in a worker process when --workers > 1)."""
    from vqz.api import encode_loaded
    from vqz.codec.image import read_image
    from vqz.codec.registry import load_model

    weights = load_model(task.model)
    with warnings.catch_warnings(record=True) as caught:  # reported as one `vqz: warning:` line each
        warnings.simplefilter("always")
        loaded = read_image(task.source, task.max_pixels, srgb=task.options.srgb)
        choice = encode_loaded(weights, loaded.rgb, loaded.alpha, loaded.metadata, task.options)
    notes = tuple(dict.fromkeys(str(w.message) for w in caught))
    level = choice.level if choice.coded_cells is not None else None
    return EncodeResult(choice.data, choice.quality, choice.bpp, choice.psnr, choice.met, notes, level,
                        len(choice.data))


def _describe(result: EncodeResult) -> str:
    text = f"quality {result.quality if result.level is None else f'{result.level:.2f}'}, {result.bpp:.3f} bpp"
    text += f", {result.size} bytes" if result.size else ""
    return text + (f", PSNR {result.psnr:.2f} dB" if result.psnr is not None else "")


def encode(
    inputs: Annotated[list[Path], typer.Argument(
        help="Images (PNG, JPEG, TIFF, BMP, WebP, ...), directories (their images, not recursive), "
             "glob patterns, or - for standard input.", show_default=False, metavar="INPUT")],
    output: Annotated[Optional[Path], typer.Option(
        "-o", "--output", help="Output file (one input), existing directory, or - for standard output.")] = None,
    quality: Annotated[Optional[int], typer.Option(
        "-q", "--quality", help=f"Quality level: 1 = smallest file, higher = better (default {DEFAULT_QUALITY}).",
        show_default=False)] = None,
    target_bpp: Annotated[Optional[float], typer.Option(
        "--target-bpp",
        help="Rate control: the largest file of at most this many bits per pixel, as --target-size "
             "(quality 1 and a warning if even that is larger).")] = None,
    target_size: Annotated[Optional[int], typer.Option(
        "--target-size", metavar="BYTES",
        help="Rate control: the largest file of at most this many bytes, metadata included (the last stage "
             "stops part-way to fill the budget closely). Too small a budget gives the smallest file "
             "(quality 1) and a warning.", show_default=False)] = None,
    target_psnr: Annotated[Optional[float], typer.Option(
        "--target-psnr",
        help="Rate control: the smallest file whose decoded image reaches this PSNR in dB "
             "(the best quality and a warning if none does).")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing outputs.")] = False,
    model: Annotated[Optional[str], typer.Option("--model", help="Model id or weights file (default: the bundled model; see vqz models).")] = None,
    max_pixels: Annotated[int, typer.Option("--max-pixels", min=1, help="Refuse larger images (decompression-bomb guard).")] = DEFAULT_MAX_PIXELS,
    workers: Annotated[int, typer.Option("--workers", "-j", min=1, help="Encode this many files in parallel processes.")] = 1,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar and no rate-control notes (errors and warnings stay).")] = False,
    strip: Annotated[Optional[list[str]], typer.Option(
        "--strip", metavar="all|exif|xmp|icc|gps",
        help="Drop metadata (repeatable): all, exif, xmp, icc (the colour profile), or gps (only the GPS "
             "block of the EXIF). By default EXIF, XMP and the ICC profile are kept.", show_default=False)] = None,
    srgb: Annotated[bool, typer.Option(
        "--srgb", help="Convert colour-managed images to sRGB first (no profile is stored). By default the "
                       "pixels are coded in the image's own colour space and its ICC profile is kept.")] = False,
    effort: Annotated[int, typer.Option(
        "--effort", metavar="N",
        help="Encoder effort with -q: 1 = the default (greedy quantizer), 0 = fastest (the model's light analysis: "
             "about half the analysis' time, 0.3-0.8 dB lower PSNR at levels 1-4 on Kodak), 2-4 = slower searches for "
             "better indices (same decoder; see docs/CLI.md). Rate control (--target-*) always uses effort 1.")] = 1,
) -> None:
    """Compress images to .vqz files (img.png -> img.vqz). EXIF (orientation applied, then set to 1),
    XMP and the ICC profile are kept unless --strip says otherwise.

    Example: vqz encode photo.png -q 6 -o photo.vqz

    Example: vqz encode photos/ --target-bpp 0.5 -o out/ --workers 4

    Example: vqz encode photo.jpg --target-size 20000 -o photo.vqz

    Example: vqz encode photo.png -q 8 --effort 3 -o photo.vqz

    Example: cat photo.png | vqz encode - -o - > photo.vqz
    """
    try:  # every option checked once, as the API and the Pillow plugin check them
        options = EncodeOptions(quality, target_bpp, target_psnr, target_size, effort, tuple(strip or ()), srgb)
    except OptionError as exc:
        raise typer.BadParameter(str(exc), param_hint=f"'{exc.option}'") from None
    files, problems = expand_inputs(inputs, lambda path: path.suffix.lower() in image_suffixes(), "image files")
    try:
        jobs, clashes = plan_jobs(files, output, ".vqz")
    except VqzError as exc:
        error(None, str(exc))
        raise typer.Exit(1)
    refuse_terminal_output(jobs)
    from vqz.codec.pipeline import quality_range
    from vqz.codec.registry import load_model

    try:
        weights = load_model(model)
    except VqzError as exc:
        error(None, str(exc))
        raise typer.Exit(1)
    try:
        options.check_quality(quality_range(weights))
    except OptionError as exc:
        raise typer.BadParameter(str(exc), param_hint="'-q' / '--quality'") from None
    for label, message in problems + clashes:
        error(label, message)
    failed = len(problems) + len(clashes)

    runnable = []
    for job in jobs:
        try:
            check_target(job.target, force)
            runnable.append(job)
        except VqzError as exc:
            error(job.label, str(exc))
            failed += 1

    def finish(index: int, result: EncodeResult) -> None:
        job = runnable[index]
        write_output(job.target, result.data, force)
        for message in result.warnings:
            warning(job.label, message)
        if target_bpp is not None and not result.met:
            warning(job.label, f"no quality level is at most {target_bpp:g} bpp; used {_describe(result)}")
        elif target_size is not None and not result.met:
            warning(job.label, f"no file fits in {target_size} bytes; used the smallest, {_describe(result)}")
        elif target_psnr is not None and not result.met:
            warning(job.label, f"no quality level reaches {target_psnr:g} dB PSNR; used {_describe(result)}")
        elif options.fixed_quality is None and not quiet:
            note(job.label, _describe(result))

    try:
        sources = [read_stdin() if is_stdio(job.source) else job.source for job in runnable]
    except VqzError as exc:
        error(STDIN_LABEL, str(exc))
        raise typer.Exit(1)
    tasks = [EncodeTask(source, model, options, max_pixels) for source in sources]
    failed += run_batch(encode_one, tasks, [job.label for job in runnable], finish,
                        workers=workers, quiet=quiet, description="encoding",
                        preload=["vqz.codec.pipeline", "vqz.codec.rate_control", "vqz.codec.registry"])
    if failed:
        raise typer.Exit(1)
