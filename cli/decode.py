"""``vqz decode``: .vqz files -> images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vqz.api import decode_array
from vqz.cli.files import plan_outputs, read_input, write_atomic
from vqz.cli.report import error
from vqz.codec.image import WRITE_FORMATS, encode_image_bytes
from vqz.errors import VqzError


def decode(
    inputs: Annotated[list[Path], typer.Argument(help=".vqz files to decode.", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Output image (.png, .ppm, .tif, .bmp) or existing directory.")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing outputs.")] = False,
    stages: Annotated[Optional[int], typer.Option("--stages", min=1, help="Decode only the first N stages (a coarser image).")] = None,
) -> None:
    """Decode .vqz files to images (img.vqz -> img.png).

    Example: vqz decode photo.vqz -o photo.png
    """
    try:
        outputs = plan_outputs(inputs, output, ".png")
    except VqzError as exc:
        error(None, str(exc))
        raise typer.Exit(1)
    failed = 0
    for source, target in zip(inputs, outputs):
        try:
            fmt = WRITE_FORMATS.get(target.suffix.lower())
            if fmt is None:
                raise VqzError(f"cannot write {target}: use one of {', '.join(sorted(WRITE_FORMATS))}")
            if target.exists() and not force:
                raise VqzError(f"output {target} already exists (use --force to overwrite)")
            pixels = decode_array(read_input(source), stages)
            write_atomic(target, encode_image_bytes(pixels, fmt), force)
        except VqzError as exc:
            error(source, str(exc))
            failed += 1
    if failed:
        raise typer.Exit(1)
