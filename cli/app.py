"""The ``vqz`` command line: one typer app, one module per command.

Command modules import the model (ONNX Runtime, never torch) only inside the commands, so ``vqz --help``
and shell completion (``vqz --install-completion``) answer without loading them.
"""

from __future__ import annotations

import os
import sys

import typer

from vqz.cli.decode import decode
from vqz.cli.encode import encode
from vqz.cli.info import info
from vqz.cli.models import models
from vqz.cli.train import export_model, train

app = typer.Typer(
    name="vqz",
    help="vqz: a learned image codec. Example: vqz encode photo.png && vqz decode photo.vqz -o out.png",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)
app.command("encode")(encode)
app.command("decode")(decode)
app.command("info")(info)
app.command("models")(models)
app.command("train")(train)
app.command("export-model")(export_model)

try:  # the benchmark suite registers `vqz bench` when its dependencies are installed
    from vqz.benchmarks.cli import register as _register_bench
except ImportError:  # pragma: no cover - optional extra
    _register_bench = None
if _register_bench is not None:
    _register_bench(app)


def main() -> None:
    """Console-script entry point: never lets a traceback reach the user."""
    try:
        app()
    except KeyboardInterrupt:
        print("vqz: interrupted", file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise
    except BrokenPipeError:  # e.g. `vqz decode x.vqz -o - | head -c 10`: the reader left
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout at exit
        sys.exit(1)
    except Exception as exc:  # last line of defence: one line, exit 1
        print(f"vqz: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
