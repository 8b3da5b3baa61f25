"""``vqz train`` and ``vqz export-model``: the project's own training entry points.

Both serve the vqz model and, for configs with a ``family`` key, the same-budget CompressAI
baselines (:mod:`vqz.training.train_baseline`).
"""

from __future__ import annotations

import json
import re
import time
import tomllib
from pathlib import Path
from typing import Annotated, Optional

import typer

from vqz.cli.extras import require
from vqz.cli.report import error, warning
from vqz.errors import VqzError

MODEL_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,32}")  # printable ASCII for the header, safe as a file name


def train(
    config: Annotated[Path, typer.Argument(help="TOML training configuration (see configs/default.toml; configs/baseline-*.toml train CompressAI baselines).", show_default=False)],
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the run folder's last checkpoint.")] = False,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Override the number of steps.")] = None,
    out: Annotated[Optional[str], typer.Option("--out", help="Override the run folder.")] = None,
    data: Annotated[Optional[str], typer.Option("--data", help="Override the training image folder.")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Override the peak learning rate (e.g. lower it to continue a finished run).")] = None,
    lmbda: Annotated[Optional[float], typer.Option("--lmbda", help="Baseline configs only: override the rate-distortion trade-off.")] = None,
    branch_from: Annotated[Optional[str], typer.Option("--branch-from", help="Baseline configs only: go on from this checkpoint of another lmbda's run (same family, N, M) with its step, weights and optimizer state.")] = None,
    precision: Annotated[Optional[str], typer.Option("--precision", help="Override the precision of the transforms: bf16 (autocast; the quantizer stays float32) or fp32.")] = None,
    max_minutes: Annotated[Optional[float], typer.Option("--max-minutes", help="Stop cleanly (checkpoint + log row) after this many minutes of training; the LR decay then follows the time spent.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Train a model (CPU by default, CUDA when present); checkpoints and log.csv go to the run folder.

    A config with a `family` key (bmshj2018-factorized, bmshj2018-hyperprior) trains that CompressAI baseline instead (configs/baseline-*.toml).

    Several processes (GPUs or CPU workers): torchrun --nproc_per_node N -m vqz train CONFIG; `batch` is then the global batch, split over the processes, and rank 0 writes the run folder.

    Example: vqz train configs/default.toml --resume
    """
    require("train")
    overrides = {k: v for k, v in {"steps": steps, "out": out, "data": data, "lr": lr, "precision": precision,
                                   "max_minutes": max_minutes}.items() if v is not None}
    try:
        family = _family(config)
        if family is not None:
            from vqz.training.train_baseline import BaselineTrainConfig, train_baseline

            if lmbda is not None:
                overrides["lmbda"] = lmbda
            if branch_from is not None:
                overrides["branch_from"] = branch_from
            for name, flag in (("precision", "--precision"), ("max_minutes", "--max-minutes")):
                if overrides.pop(name, None) is not None:
                    raise typer.BadParameter("applies only to vqz configs (without a `family` key)", param_hint=flag)
            from vqz.training.distributed import environment

            if environment()[1] > 1:
                raise VqzError("baseline configs train on one process (run `vqz train` without torchrun)")
            baseline = BaselineTrainConfig.from_toml(config, overrides)
            checkpoint = train_baseline(baseline, resume=resume, progress=not quiet)
        else:
            for value, flag in ((lmbda, "--lmbda"), (branch_from, "--branch-from")):
                if value is not None:
                    raise typer.BadParameter("applies only to baseline configs (with a `family` key)", param_hint=flag)
            from vqz.training.train import TrainConfig
            from vqz.training.train import train as run_training

            cfg = TrainConfig.from_toml(config, overrides)
            checkpoint = run_training(cfg, resume=resume, progress=not quiet)
    except (VqzError, OSError) as exc:
        if _is_main_process():  # under torchrun, one line from rank 0, not one per process
            error(config, str(exc))
        raise typer.Exit(1)
    if _is_main_process():
        typer.echo(f"checkpoint: {checkpoint}")


def _is_main_process() -> bool:
    from vqz.training.distributed import environment

    try:
        return environment()[0] == 0
    except VqzError:
        return True


def _family(config: Path) -> str | None:
    """The TOML's `family` key (a baseline config), or None (the vqz model)."""
    try:
        settings = tomllib.loads(config.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise VqzError(f"not a valid TOML file: {exc}") from exc
    family = settings.get("family")
    if family is not None and not isinstance(family, str):
        raise VqzError(f"`family` must be a string, got {family!r}")
    return family


def _refuse_installed_id(model_id: str) -> None:
    """New weights never take the id of an installed model: its files name that id and its weights hash,
    and the registry finds one model per id, so they would stop decoding (or the new weights would be shadowed)."""
    from vqz.codec.registry import available_models

    for entry in available_models():
        if entry.model_id == model_id:
            raise typer.BadParameter(f"model {model_id!r} is already installed ({entry.path}); the files it wrote need "
                                     "those weights: export under a new id", param_hint="--model-id")


def export_model(
    run: Annotated[Path, typer.Argument(help="Run folder of a finished training (holds checkpoint.safetensors), "
                                              "or a weights file (.safetensors) whose graphs to (re)write.", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Weights file to write (.safetensors); not with a weights file.")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Count indices on at most N training images.")] = None,
    model_id: Annotated[Optional[str], typer.Option("--model-id", help="Ship the weights under this id instead of the "
                                                    "run's (a retrained model whose predecessor stays installed needs a new id).")] = None,
) -> None:
    """Freeze the entropy tables into shippable weights and export the transforms the runtime runs.

    From a run folder: writes the weights (-o) with the entropy tables (index counts over the training split), then
    the ONNX graphs of the analysis and synthesis transforms beside them (<stem>.analysis.onnx, <stem>.synthesis.onnx;
    they hold no weights, see docs/RUNTIME.md). Given a weights file instead, writes only its graphs (the weights
    file, and so the model's identity, is left as it is).

    A baseline run (config with `family`) gets CompressAI's CDF tables built and is written where the benchmark reads it: -o benchmarks/baselines/<family>-<lmbda>.safetensors.

    Example: vqz export-model runs/default -o codec/weights/vqz-rvq8-f8.safetensors

    Example: vqz export-model codec/weights/vqz-rvq8-f8.safetensors
    """
    require("export-model")
    started = time.time()
    try:
        if run.suffix == ".safetensors":
            if output is not None or limit is not None or model_id is not None:
                raise typer.BadParameter("-o, --limit and --model-id apply to a run folder, not to a weights file", param_hint="RUN")
            weights = run
        else:
            if output is None:
                raise typer.BadParameter("a run folder needs the weights file to write", param_hint="'-o' / '--output'")
            settings = json.loads((run / "train_config.json").read_text())
            if "family" in settings:
                if limit is not None or model_id is not None:
                    raise typer.BadParameter("does not apply to baseline runs", param_hint="--limit / --model-id")
                from vqz.training.train_baseline import export_baseline

                info = export_baseline(run, output)
                if info.steps < info.config_steps:
                    warning(run, f"the run stopped at step {info.steps} of {info.config_steps}: exported anyway")
                typer.echo(f"wrote {output} in {time.time() - started:.0f} s")
                return
            from vqz.training.finalize import finalize

            if model_id is not None and not MODEL_ID_PATTERN.fullmatch(model_id):
                raise typer.BadParameter(f"{model_id!r}: a model id is 1 to 32 letters, digits, '.', '_' or '-'", param_hint="--model-id")
            _refuse_installed_id(model_id or settings.get("model_id", ""))
            finalize(run / "checkpoint.safetensors", output, Path(settings["data"]), settings["validation_fraction"], limit=limit,
                     model_id=model_id)
            weights = output
        from vqz.training.export import export_graphs

        graphs = export_graphs(weights)
    except (VqzError, OSError, KeyError, ValueError) as exc:
        error(run, str(exc))
        raise typer.Exit(1)
    typer.echo(f"wrote {', '.join(str(p) for p in ([] if weights == run else [weights]) + graphs)} "
               f"in {time.time() - started:.0f} s")


def train_postfilter(
    out: Annotated[str, typer.Option("--out", help="Run folder (checkpoint, log.csv, cached decoded pairs).")] = "runs/postfilter",
    data: Annotated[str, typer.Option("--data", help="Training image folder (the held-out split is kept apart by name hash).")] = "../shared/data/train",
    model: Annotated[Optional[str], typer.Option("--model", help="Installed model whose decoded images the filter learns from (default: the default model).")] = None,
    steps: Annotated[int, typer.Option("--steps", help="Training steps (the cosine decay spans them).")] = 6000,
    images: Annotated[int, typer.Option("--images", help="Training images to code.")] = 400,
    channels: Annotated[int, typer.Option("--channels", help="Convolution channels.")] = 32,
    layers: Annotated[int, typer.Option("--layers", help="Convolutions.")] = 4,
    quarter_channels: Annotated[int, typer.Option("--quarter-channels", help="Channels of a quarter-resolution branch in place of one layer (0: none).")] = 0,
    threads: Annotated[int, typer.Option("--threads", help="Torch threads.")] = 2,
    stage_pairs: Annotated[int, typer.Option("--stage-pairs", help="Also learn the stage-only levels: decodings of random stage-only levels per image (0: residual levels only).")] = 0,
    precision: Annotated[str, typer.Option("--precision", help="fp32 or bf16 (autocast; pays only on CPUs with native bf16 or on CUDA).")] = "fp32",
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the run folder's checkpoint.")] = False,
    init_from: Annotated[Optional[str], typer.Option("--init-from", help="Start from a shipped filter's weights file (same channels and layers).")] = None,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (cosine decay to 0).")] = 2e-3,
    warmup: Annotated[int, typer.Option("--warmup", help="Steps of linear learning-rate ramp at the start.")] = 0,
) -> None:
    """Train the decoder's post-filter on images the installed model decodes (CPU).

    Then ship it with `vqz export-postfilter RUN/postfilter.safetensors -o codec/weights/ID.safetensors`.

    Example: vqz train-postfilter --out runs/pf1 --steps 8000
    (a filter for a new model: --init-from codec/weights/vqz-pf4.safetensors --lr 5e-4 --warmup 200)
    """
    require("train")
    from vqz.training.train_postfilter import PostFilterTrainConfig
    from vqz.training.train_postfilter import train_postfilter as run

    cfg = PostFilterTrainConfig(data=data, out=out, model=model, steps=steps, images=images, channels=channels,
                                layers=layers, quarter_channels=quarter_channels, threads=threads, precision=precision,
                                stage_pairs_per_image=stage_pairs, init_from=init_from, lr=lr, lr_warmup_steps=warmup)
    try:
        checkpoint = run(cfg, resume=resume, log=typer.echo)
    except (VqzError, OSError) as exc:
        error(Path(out), str(exc))
        raise typer.Exit(1)
    typer.echo(f"checkpoint: {checkpoint}")


def export_postfilter(
    source: Annotated[Path, typer.Argument(help="A post-filter training checkpoint (RUN/postfilter.safetensors), or a "
                                                "shipped post-filter weights file (rewrites only its graph).", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Weights file to write (.safetensors); the graph goes beside it.")] = None,
    filter_id: Annotated[str, typer.Option("--id", help="The filter's name (the encoder uses vqz-pf4 on every level: codec/postfilter.py).")] = "vqz-pf1",
) -> None:
    """Ship a trained post-filter: its weights (safetensors) and ONNX graph for the coding runtime.

    A file records the filter's weights hash, so a shipped filter must stay installed for the files that use it;
    given a shipped weights file, only its graph is rewritten (the weights, and so the hash, stay).

    Example: vqz export-postfilter runs/pf1/postfilter.safetensors -o codec/weights/vqz-pf1.safetensors
    """
    require("train")
    from vqz.training.export import export_postfilter as run
    from vqz.training.export import export_postfilter_graph

    if not MODEL_ID_PATTERN.fullmatch(filter_id):
        raise typer.BadParameter(f"{filter_id!r}: an id is 1 to 32 letters, digits, '.', '_' or '-'", param_hint="--id")
    try:
        paths = run(source, output, filter_id) if output is not None else [export_postfilter_graph(source)]
        for path in paths:
            typer.echo(f"wrote {path}")
    except (VqzError, OSError, KeyError, RuntimeError) as exc:
        error(source, f"cannot export a post-filter from it ({exc})")
        raise typer.Exit(1)


def train_realism(
    config: Annotated[Optional[Path], typer.Argument(help="TOML options of the run (see configs/realism.toml); defaults otherwise.", show_default=False)] = None,
    out: Annotated[Optional[str], typer.Option("--out", help="Run folder (checkpoint, log.csv, config.json; coded images unless `cache` is set).")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Override the number of steps (the cosine decay spans them).")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help="Override the torch threads (default 1: one core trains, the other works).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the run folder's checkpoint.")] = False,
) -> None:
    """Train a realistic synthesis (adversarial fine-tune on the installed model's frozen codes, CPU).

    Then ship it with `vqz export-realism RUN/realism.safetensors -o codec/weights/ID.safetensors`.

    Example: vqz train-realism configs/realism.toml --out runs/real1   (later: the same with --resume)
    """
    require("train")
    from vqz.training.realism import RealismTrainConfig
    from vqz.training.realism import train_realism as run

    _run_decoder_training(RealismTrainConfig, run, config, {"out": out, "steps": steps, "threads": threads}, resume)


def _run_decoder_training(config_class, run, config: Optional[Path], overrides: dict, resume: bool) -> None:
    """Read a decoder trainer's TOML ``config`` (defaults without one), apply the command line's ``overrides``
    (None: not given) and run it; one line on stderr and exit 1 on a failure."""
    values: dict = {}
    if config is not None:
        try:
            values = tomllib.loads(config.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise typer.BadParameter(f"cannot read {config}: {exc}", param_hint="CONFIG")
    values |= {k: v for k, v in overrides.items() if v is not None}
    try:
        cfg = config_class.from_dict(values)
    except (TypeError, ValueError, VqzError) as exc:
        raise typer.BadParameter(str(exc), param_hint="CONFIG")
    try:
        checkpoint = run(cfg, resume=resume, log=typer.echo)
    except (VqzError, OSError, ValueError) as exc:
        error(Path(cfg.out), str(exc))
        raise typer.Exit(1)
    typer.echo(f"checkpoint: {checkpoint}")


def export_realism(
    source: Annotated[Path, typer.Argument(help="A realistic synthesis training checkpoint (RUN/realism.safetensors).", show_default=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="Weights file to write (.safetensors); its graphs go beside it.")],
    realism_id: Annotated[str, typer.Option("--id", help="The realistic synthesis' name (a new one for new weights: e.g. vqz-real3).", show_default=False)],
    model: Annotated[Optional[str], typer.Option("--model", help="The installed model it was trained for (default: the one in the checkpoint's config).")] = None,
    strength: Annotated[Optional[str], typer.Option("--strength", help="Per-level strengths of R = 1, comma-separated (e.g. 1.4,1.1,0.9,0.8), or 'detail[=T]': chosen on the run's held-out photos so that R = 1 keeps T (default 1.0) times the original's fine detail.")] = None,
) -> None:
    """Ship a trained realistic synthesis: its weights (safetensors, g_s tensors) and ONNX graphs for the runtime.

    The file names its model by weights hash; `vqz decode --realism R` finds it by that hash.

    Example: vqz export-realism runs/realism/realism.safetensors -o codec/weights/vqz-real3.safetensors --id vqz-real3 --strength detail=0.9
    """
    require("train")
    from vqz.training.export import export_realism as run

    if not MODEL_ID_PATTERN.fullmatch(realism_id):
        raise typer.BadParameter(f"{realism_id!r}: an id is 1 to 32 letters, digits, '.', '_' or '-'", param_hint="--id")
    strengths, target = None, None
    try:
        if strength is not None and strength.startswith("detail"):
            target = float(strength.partition("=")[2] or 1.0)
        elif strength is not None:
            strengths = [float(v) for v in strength.split(",")]
    except ValueError:
        raise typer.BadParameter(f"{strength!r}: numbers separated by commas, or detail[=T]", param_hint="--strength")
    try:
        if target is not None:
            from vqz.training.realism import calibrate_strength

            strengths = calibrate_strength(source, target, log=typer.echo)
        for path in run(source, output, realism_id, model, strengths):
            typer.echo(f"wrote {path}")
    except (VqzError, OSError, KeyError, RuntimeError, ValueError) as exc:
        error(source, f"cannot export a realistic synthesis from it ({exc})")
        raise typer.Exit(1)


def train_light(
    config: Annotated[Optional[Path], typer.Argument(help="TOML options of the run (see configs/light.toml); defaults otherwise.", show_default=False)] = None,
    out: Annotated[Optional[str], typer.Option("--out", help="Run folder (checkpoint, log.csv, config.json).")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Override the number of steps (the cosine decay spans them).")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help="Override the torch threads (default 1: one core trains, the other works).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the run folder's checkpoint.")] = False,
) -> None:
    """Train a light synthesis (a cheaper decoder of the installed model's frozen codes, for `vqz decode --fast`; CPU).

    Then ship it with `vqz export-light RUN/light.safetensors -o codec/weights/ID.safetensors --id ID`.

    Example: vqz train-light configs/light.toml   (later: the same with --resume)
    """
    require("train")
    from vqz.training.light import LightTrainConfig
    from vqz.training.light import train_light as run

    _run_decoder_training(LightTrainConfig, run, config, {"out": out, "steps": steps, "threads": threads}, resume)


def train_light_analysis(
    config: Annotated[Optional[Path], typer.Argument(help="TOML options of the run (see configs/light-analysis.toml); defaults otherwise.", show_default=False)] = None,
    out: Annotated[Optional[str], typer.Option("--out", help="Run folder (checkpoint, log.csv, config.json, cached latents).")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Override the number of steps (the cosine decay spans them).")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help="Override the torch threads (default 1).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the run folder's checkpoint.")] = False,
) -> None:
    """Train a light analysis head (distilled from the installed model's analysis, for `vqz encode --fast`; CPU).

    Then ship it with `vqz export-light RUN/light.safetensors -o codec/weights/ID.safetensors --id ID`.

    Example: vqz train-light-analysis configs/light-analysis.toml   (later: the same with --resume)
    """
    require("train")
    from vqz.training.light import LightAnalysisTrainConfig, train_light_analysis as run

    _run_decoder_training(LightAnalysisTrainConfig, run, config, {"out": out, "steps": steps, "threads": threads}, resume)


def export_light(
    source: Annotated[Path, typer.Argument(help="A light synthesis training checkpoint (RUN/light.safetensors).", show_default=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="Weights file to write (.safetensors); its graphs go beside it.")],
    light_id: Annotated[str, typer.Option("--id", help="The light synthesis' name (a new one for new weights: e.g. vqz-light1).", show_default=False)],
) -> None:
    """Ship a trained light synthesis: its weights (safetensors, g_s tensors) and ONNX graphs for the runtime.

    The file names its model by weights hash; `vqz decode --fast` finds it by that hash.

    Example: vqz export-light runs/light/light.safetensors -o codec/weights/vqz-light1.safetensors --id vqz-light1
    """
    require("train")
    from vqz.training.export import export_light as run

    if not MODEL_ID_PATTERN.fullmatch(light_id):
        raise typer.BadParameter(f"{light_id!r}: an id is 1 to 32 letters, digits, '.', '_' or '-'", param_hint="--id")
    try:
        for path in run(source, output, light_id):
            typer.echo(f"wrote {path}")
    except (VqzError, OSError, KeyError, RuntimeError, ValueError) as exc:
        error(source, f"cannot export a light synthesis from it ({exc})")
        raise typer.Exit(1)
