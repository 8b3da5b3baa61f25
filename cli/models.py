"""``vqz models``: the installed models (bundled, plus folders in ``VQZ_MODEL_PATH``)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from vqz.cli.report import error


def models(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON list of objects.")] = False,
) -> None:
    """List the installed models: id, weights hash, quality levels, size in bytes, path; then the post-filters
    and the realistic syntheses (`vqz decode --realism`).

    The default model and the post-filters the encoder uses are marked with *. Folders listed in VQZ_MODEL_PATH are searched before
    the bundled weights; pass an id or a path to vqz encode --model.

    Example: vqz models --json
    """
    from vqz.codec.pipeline import quality_range
    from vqz.codec.registry import DEFAULT_MODEL_ID, available_models, load_model
    from vqz.errors import VqzError

    rows, failed = [], False
    for entry in available_models():
        try:
            weights = load_model(entry.path)
        except VqzError as exc:
            error(entry.path, str(exc))
            failed = True
            continue
        rows.append({
            "id": entry.model_id,
            "hash": weights.weights_hash.hex(),
            "levels": len(quality_range(weights)),
            "size_bytes": weights.size_bytes,
            "path": str(entry.path),
            "default": entry.model_id == DEFAULT_MODEL_ID,
        })
    if as_json:
        typer.echo(json.dumps(rows))
    else:
        header = {"id": "id", "hash": "hash", "levels": "levels", "size_bytes": "bytes", "path": "path"}
        table = [header] + rows
        width = {key: max(len(str(row[key])) for row in table) for key in ("id", "hash", "levels", "size_bytes")}
        for row in table:
            mark = "*" if row.get("default") else " "
            typer.echo(f"{mark} {row['id']:<{width['id']}}  {row['hash']:<{width['hash']}}  "
                       f"{row['levels']:>{width['levels']}}  {row['size_bytes']:>{width['size_bytes']}}  {row['path']}")
        from vqz.codec.postfilter import default_postfilter, installed_postfilters, stage_postfilter

        used = {default_postfilter(): "residual levels", stage_postfilter(): "stage-only levels"}
        for pf in installed_postfilters():  # the decoder's post-filters: files name them by hash
            role = used.get(pf)
            mark = "*" if role else " "
            typer.echo(f"{mark} post-filter {pf.filter_id}  {pf.filter_hash.hex()}  {pf.path}"
                       + (f"  (encoder: {role})" if role else ""))
        from vqz.codec.realism import installed_realistic

        for real in installed_realistic():  # what `vqz decode --realism R` runs for the model it names
            levels = ("  strength per stage count " + " / ".join(f"{v:g}" for v in real.strength)) if real.levels else ""
            typer.echo(f"  realistic synthesis {real.realism_id}  for {real.base_model_id} "
                       f"({real.base_model_hash.hex()})  {real.path}{levels}")
        from vqz.codec.light import installed_light

        for light in installed_light():  # what `vqz decode --fast` / `vqz encode --effort 0` run for the model it names
            typer.echo(f"  light {light.role} {light.light_id}  for {light.base_model_id} "
                       f"({light.base_model_hash.hex()})  {light.path}")
    if failed:
        raise typer.Exit(1)
