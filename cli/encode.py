"""``vqz encode``: images -> .vqz files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vqz.api import DEFAULT_QUALITY
from vqz.cli.files import plan_outputs, write_atomic
from vqz.cli.report import error
from vqz.codec.image import DEFAULT_MAX_PIXELS, to_rgb_array
from vqz.codec.pipeline import encode_array, quality_range
from vqz.codec.registry import load_model
from vqz.errors import VqzError


def encode(
    inputs: Annotated[list[Path], typer.Argument(help="Images to compress (PNG, JPEG, TIFF, BMP, WebP, ...).", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Output file (one input) or existing directory.")] = None,
    quality: Annotated[int, typer.Option("-q", "--quality", help="Quality level: 1 = smallest file, higher = better.")] = DEFAULT_QUALITY,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing outputs.")] = False,
    model: Annotated[Optional[str], typer.Option("--model", help="Model id or weights file (default: the bundled model).")] = None,
    max_pixels: Annotated[int, typer.Option("--max-pixels", help="Refuse larger images (decompression-bomb guard).")] = DEFAULT_MAX_PIXELS,
) -> None:
    """Compress images to .vqz files (img.png -> img.vqz).

    Example: vqz encode photo.png -q 6 -o photo.vqz
    """
    try:
        weights = load_model(model)
    except VqzError as exc:
        error(None, str(exc))
        raise typer.Exit(1)
    levels = quality_range(weights)
    if quality not in levels:
        raise typer.BadParameter(f"{quality} is not a valid level; choose {levels.start}..{levels.stop - 1}", param_hint="'-q' / '--quality'")
    try:
        outputs = plan_outputs(inputs, output, ".vqz")
    except VqzError as exc:
        error(None, str(exc))
        raise typer.Exit(1)
    failed = 0
    for source, target in zip(inputs, outputs):
        try:
            if target.exists() and not force:
                raise VqzError(f"output {target} already exists (use --force to overwrite)")
            data, _ = encode_array(weights, to_rgb_array(source, max_pixels), quality)
            write_atomic(target, data, force)
        except VqzError as exc:
            error(source, str(exc))
            failed += 1
    if failed:
        raise typer.Exit(1)
