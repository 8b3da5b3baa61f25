"""Commands of the training world say in one line when its packages are missing.

``pip install vqz`` installs the coding runtime only (numpy, Pillow, constriction, ONNX
Runtime); training, export and the benchmarks against CompressAI need torch and compressai
(``pip install 'vqz[train]'``, or ``'vqz[bench]'``). The check looks the packages up without
importing them, so it costs nothing when they are there.
"""

from __future__ import annotations

import importlib.util
import sys

import typer

#: extra -> the modules it provides that the commands need
EXTRAS = {"train": ("torch", "compressai", "onnx"), "bench": ("torch", "compressai", "pytorch_msssim")}
LABELS = {"train": "the training extra", "bench": "the benchmark extra"}


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that are not installed."""
    return [name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None]


def require(command: str, extra: str = "train") -> None:
    """Exit 1 with ``vqz COMMAND: needs the training extra: pip install 'vqz[train]'`` when
    a module of ``extra`` is missing."""
    if missing(extra):
        print(f"vqz {command}: needs {LABELS[extra]}: pip install 'vqz[{extra}]'", file=sys.stderr)
        raise typer.Exit(1)
