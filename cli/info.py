"""``vqz info``: what a .vqz file holds, without decoding it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from vqz.fileinfo import read_info  # not vqz.api: no numpy, no model
from vqz.cli.files import STDIN_LABEL, is_stdio, read_input
from vqz.cli.report import error
from vqz.errors import VqzError


def info(
    file: Annotated[Path, typer.Argument(help="A .vqz file, or - for standard input.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show format version, model, size, quality, payload sizes, header bytes, bpp and the metadata
    the file carries (EXIF, XMP, ICC sizes; camera, date, GPS) without decoding or loading a model.

    The quality is the level the file was made at; with --target-bpp / --target-psnr, the level chosen.

    Example: vqz info photo.vqz --json
    """
    try:
        details = read_info(read_input(file))
    except VqzError as exc:
        error(STDIN_LABEL if is_stdio(file) else file, str(exc))
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(details.to_dict()))
        return
    rows = [
        ("format version", details.format_version),
        ("model", f"{details.model_id} ({details.model_hash})"),
        ("size", f"{details.width}x{details.height}"),
        ("quality", details.quality),
        ("stages", details.stages if details.coded_cells is None else
         f"{details.stages} (the last part-way: {details.coded_cells} of {details.grid_height * details.grid_width}"
         f" cells, {_partway(details)}, level {details.level:.2f})"),
        ("latent grid", f"{details.grid_height}x{details.grid_width}"),
        ("payload bytes", " + ".join(map(str, details.payload_bytes)) or "0"),
        ("residual layer", f"{details.residual_bytes} bytes, step {details.residual_step:g} "
         f"(chroma x{details.residual_chroma:g})" if details.residual_bytes else "none"),
        ("post-filter", f"{details.postfilter_hash}, strength {details.postfilter_strength:g}"
         if details.postfilter_hash else "none"),
        ("alpha bytes", details.alpha_bytes),
        ("header bytes", details.header_bytes),
        ("total bytes", details.total_bytes),
        ("bpp", f"{details.bpp:.4f}"),
        ("metadata", ", ".join(f"{name.upper()} {size} B" for name, size in details.metadata_bytes.items()) or "none"),
    ]
    if "exif" in details.metadata_bytes:
        camera = " ".join(part for part in (details.camera_make, details.camera_model) if part)
        rows += [("camera", camera or "-"), ("date", details.date or "-"), ("GPS", "yes" if details.gps else "no")]
    for name, value in rows:
        typer.echo(f"{name:>15}: {value}")


def _partway(details) -> str:
    """How a part-way last stage picks its cells, for the `stages` row."""
    if details.partway == "mask":
        return f"block mask of {details.mask_blocks} of {details.grid_blocks} blocks"
    return "in priority order"
