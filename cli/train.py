"""``vqz train`` and ``vqz export-model``: the project's own training entry points."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from vqz.cli.report import error
from vqz.errors import VqzError


def train(
    config: Annotated[Path, typer.Argument(help="TOML training configuration (see configs/default.toml).", show_default=False)],
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the run folder's last checkpoint.")] = False,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Override the number of steps.")] = None,
    out: Annotated[Optional[str], typer.Option("--out", help="Override the run folder.")] = None,
    data: Annotated[Optional[str], typer.Option("--data", help="Override the training image folder.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Train a model (CPU by default, CUDA when present); checkpoints and log.csv go to the run folder.

    Example: vqz train configs/default.toml --resume
    """
    from vqz.codec.train import TrainConfig
    from vqz.codec.train import train as run_training

    overrides = {k: v for k, v in {"steps": steps, "out": out, "data": data}.items() if v is not None}
    try:
        cfg = TrainConfig.from_toml(config, overrides)
        checkpoint = run_training(cfg, resume=resume, progress=not quiet)
    except (VqzError, OSError) as exc:
        error(config, str(exc))
        raise typer.Exit(1)
    typer.echo(f"checkpoint: {checkpoint}")


def export_model(
    run: Annotated[Path, typer.Argument(help="Run folder of a finished training (holds checkpoint.safetensors).", show_default=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="Weights file to write (.safetensors).")],
    limit: Annotated[Optional[int], typer.Option("--limit", help="Count indices on at most N training images.")] = None,
) -> None:
    """Freeze the entropy tables (index counts over the training split) into shippable weights.

    Example: vqz export-model runs/default -o codec/weights/vqz-rvq8-f8.safetensors
    """
    from vqz.codec.finalize import finalize

    try:
        settings = json.loads((run / "train_config.json").read_text())
        started = time.time()
        finalize(run / "checkpoint.safetensors", output, Path(settings["data"]), settings["validation_fraction"], limit=limit)
    except (VqzError, OSError, KeyError, ValueError) as exc:
        error(run, str(exc))
        raise typer.Exit(1)
    typer.echo(f"wrote {output} in {time.time() - started:.0f} s")
