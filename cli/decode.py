"""``vqz decode``: .vqz files -> images (all stages, or a coarser prefix with --stages)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional, Union

import typer

from vqz.cli.files import (
    check_target,
    expand_inputs,
    is_stdio,
    is_vqz,
    plan_jobs,
    read_input,
    read_stdin,
    refuse_terminal_output,
    write_output,
)
from vqz.cli.report import error, run_batch, warning
from vqz.codec.image import DEFAULT_PNG_LEVEL, WRITE_FORMATS
from vqz.errors import VqzError


@dataclass(frozen=True)
class DecodeTask:
    """Everything a worker process needs to decode one file (picklable)."""

    source: Union[Path, bytes]  # a path, or the bytes read from stdin
    stages: Optional[int]
    format_name: str  # a Pillow format name, e.g. "PNG"
    realism: float = 0.0
    png_level: int = DEFAULT_PNG_LEVEL
    fast: bool = False


def decode_one(task: DecodeTask) -> tuple[bytes, tuple[str, ...]]:
    """Decode one file to the bytes of an image file carrying the file's EXIF, XMP and ICC
    profile, and the warnings to report (runs in a worker when --workers > 1)."""
    from vqz.api import decode_file
    from vqz.codec.image import encode_image_bytes

    data = task.source if isinstance(task.source, bytes) else read_input(task.source)
    decoded = decode_file(data, task.stages, task.realism, task.fast)  # the file is parsed once
    notes = []
    if task.realism > 0 and decoded.realism == 0:
        notes.append("decoded at realism 0: realism applies to stage-only levels (1-4) of a model with a "
                     "realistic synthesis (`vqz models` lists them)")
    if task.fast and not decoded.fast:
        notes.append("decoded with the full synthesis: --fast applies to stage-only levels (1-4) of a model with a "
                     "light synthesis (`vqz models` lists them)")
    with warnings.catch_warnings(record=True) as caught:  # e.g. BMP cannot carry the ICC profile
        warnings.simplefilter("always")
        image_bytes = encode_image_bytes(decoded.pixels, task.format_name, decoded.metadata, task.png_level)
    return image_bytes, tuple(dict.fromkeys([*notes, *(str(w.message) for w in caught)]))


def decode(
    inputs: Annotated[list[Path], typer.Argument(
        help=".vqz files, directories (their *.vqz, not recursive), glob patterns, or - for standard input.", metavar="INPUT",
        show_default=False)],
    output: Annotated[Optional[Path], typer.Option(
        "-o", "--output", help="Output image (.png, .jpg, .tif, .webp, .ppm, .bmp), existing directory, or - for PNG "
                              "on standard output. PNG, JPEG (quality 95), TIFF and WebP (lossless) outputs carry the "
                              "file's EXIF, XMP and ICC profile.")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing outputs.")] = False,
    stages: Annotated[Optional[int], typer.Option(
        "--stages", min=1, help="Progressive decode: only the first N stages, the image the file would give at "
                                "quality N (coarser, from the same file).")] = None,
    workers: Annotated[int, typer.Option("--workers", "-j", min=1, help="Decode this many files in parallel processes.")] = 1,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    realism: Annotated[float, typer.Option(
        "--realism", "-r", min=0.0, max=1.0, help="0 (default): the faithful decoder; 1: the realistic one (real texture "
        "instead of blur, lower PSNR); between: a mix. Changes levels 1-4 of models with a realistic synthesis.")] = 0.0,
    png_level: Annotated[int, typer.Option(
        "--png-level", min=0, max=9, help="PNG output: 1 (default) the fast writer (ISA-L deflate, one row "
                                          "filter); 0 and 2-9 Pillow's at that zlib level, 9 the smallest file "
                                          "(several times slower on large images).")] = DEFAULT_PNG_LEVEL,
    fast: Annotated[bool, typer.Option(
        "--fast", help="The model's light synthesis: about a quarter of the synthesis' time, 0.1-1.0 dB lower PSNR "
                       "(no post-filter; Kodak, levels 1-4). Changes levels 1-4 of models with a light synthesis.")] = False,
) -> None:
    """Decode .vqz files to images (img.vqz -> img.png).

    Example: vqz decode photo.vqz -o photo.png

    Example: vqz decode photo.vqz --realism 1 -o photo.png

    Example: vqz decode photo.vqz --stages 2 -o preview.png

    Example: vqz decode big.vqz --fast -o big.png

    Example: vqz decode out/ -o decoded/ --workers 4
    """
    if fast and realism > 0:
        raise typer.BadParameter("--fast runs the light synthesis: use it without --realism", param_hint="--fast")
    files, problems = expand_inputs(inputs, is_vqz, ".vqz files")
    try:
        jobs, clashes = plan_jobs(files, output, ".png")
    except VqzError as exc:
        error(None, str(exc))
        raise typer.Exit(1)
    refuse_terminal_output(jobs)
    for label, message in problems + clashes:
        error(label, message)
    failed = len(problems) + len(clashes)

    runnable, tasks = [], []
    for job in jobs:
        try:
            format_name = "PNG" if is_stdio(job.target) else WRITE_FORMATS.get(job.target.suffix.lower())
            if format_name is None:
                raise VqzError(f"cannot write {job.target}: use one of {', '.join(sorted(WRITE_FORMATS))}")
            check_target(job.target, force)
            source = read_stdin() if is_stdio(job.source) else job.source
        except VqzError as exc:
            error(job.label, str(exc))
            failed += 1
            continue
        runnable.append(job)
        tasks.append(DecodeTask(source, stages, format_name, realism, png_level, fast))

    def finish(index: int, result: tuple[bytes, tuple[str, ...]]) -> None:
        image_bytes, notes = result
        write_output(runnable[index].target, image_bytes, force)
        for message in notes:
            warning(runnable[index].label, message)

    failed += run_batch(decode_one, tasks, [job.label for job in runnable], finish,
                        workers=workers, quiet=quiet, description="decoding",
                        preload=["vqz.api", "vqz.codec.pipeline", "vqz.codec.registry"])
    if failed:
        raise typer.Exit(1)
