"""What every trainer shares: the learning-rate schedule, Adam state in a safetensors checkpoint,
the CSV progress log.

A checkpoint is one safetensors file of flat tensors: ``<prefix>.<name>`` for each module's state
and ``<prefix>.opt.<i>.<key>`` for each optimizer's per-parameter state (Adam: ``step``,
``exp_avg``, ``exp_avg_sq``), the step in the metadata (``step``) beside the trainer's own config
(``config``, JSON). Writing goes through a temporary file and a rename, so a run killed mid-write
keeps its previous checkpoint.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

__all__ = ["CsvLog", "cosine_lr", "load_checkpoint", "save_checkpoint"]


def cosine_lr(base: float, step: int, total: int, warmup: int = 0, floor: float = 0.0) -> float:
    """Learning rate at ``step`` (0-based) of ``total``: a linear ramp over ``warmup`` steps, then
    cosine decay from ``base`` to ``floor`` at ``total``."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (base - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def save_checkpoint(path: Path, parts: dict[str, tuple[nn.Module, torch.optim.Optimizer | None]], step: int,
                    config: dict) -> None:
    """Write ``parts`` (name -> (module, its optimizer or None)) and ``step`` to ``path`` atomically."""
    tensors: dict[str, torch.Tensor] = {}
    for name, (module, optimizer) in parts.items():
        for key, value in module.state_dict().items():
            tensors[f"{name}.{key}"] = value.detach().cpu().contiguous()
        if optimizer is not None:
            for index, state in optimizer.state_dict()["state"].items():
                for key, value in state.items():
                    tensors[f"{name}.opt.{index}.{key}"] = torch.as_tensor(value).detach().cpu().reshape(-1).contiguous() \
                        if key == "step" else value.detach().cpu().contiguous()
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"step": str(step), "config": json.dumps(config, sort_keys=True)})
    tmp.replace(path)


def load_checkpoint(path: Path, parts: dict[str, tuple[nn.Module, torch.optim.Optimizer | None]]) -> int:
    """Restore ``parts`` from ``path`` (written by :func:`save_checkpoint`); returns the step."""
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
    for name, (module, optimizer) in parts.items():
        own = {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")}
        module.load_state_dict({k: v for k, v in own.items() if not k.startswith("opt.")})
        if optimizer is not None:
            state = optimizer.state_dict()
            for key, value in own.items():
                if key.startswith("opt."):
                    _, index, field = key.split(".", 2)
                    state["state"].setdefault(int(index), {})[field] = value.reshape(()) if field == "step" else value
            optimizer.load_state_dict(state)
    return int(metadata["step"])


class CsvLog:
    """A CSV log with a fixed header; appends when resuming, starts afresh otherwise. One row per call."""

    def __init__(self, path: Path, columns: list[str], resume: bool) -> None:
        new = not (resume and path.exists())
        self._handle = open(path, "w" if new else "a", newline="")
        self._writer = csv.writer(self._handle)
        self.columns = columns
        if new:
            self._writer.writerow(columns)
            self._handle.flush()

    def row(self, **values: object) -> None:
        self._writer.writerow([_fmt(values.get(c, "")) for c in self.columns])
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def _fmt(value: object) -> str:
    return f"{value:.5g}" if isinstance(value, float) else str(value)
