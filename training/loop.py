"""What every trainer shares: the base config, the learning-rate schedules, checkpoints of modules and
their Adam state, the run's clock (checkpoint interval, time budget, validation schedule), precision,
the CSV progress log and the progress bar.

A checkpoint is one safetensors file of flat tensors: ``<module>.<name>`` for each module's state and
``<optimizer>.<i>.<key>`` for each optimizer's per-parameter state (Adam: ``step``, ``exp_avg``,
``exp_avg_sq``), the step in the metadata (``step``) beside the trainer's own entries (its config,
as JSON). The names are the trainer's: ``model`` / ``optim`` (``vqz train``), ``model`` / ``optim`` /
``aux_optim`` (the baselines), ``net`` / ``opt`` (the post-filter), ``g_s`` / ``g_s.opt``, ``disc`` /
``disc.opt`` and ``film`` / ``film.opt`` (the realistic synthesis). Writing goes through a temporary
file and a rename, so a run killed mid-write keeps its previous checkpoint.
"""

from __future__ import annotations

import csv
import math
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from vqz.errors import VqzError

__all__ = ["PRECISIONS", "CodeGridRunConfig", "CsvLog", "RunClock", "RunConfig", "apply_checkpoint", "autocast_enabled", "cosine_lr",
           "is_due", "learning_rate", "load_checkpoint", "native_bf16", "progress_bar", "read_checkpoint",
           "save_checkpoint", "warmup_factor"]

PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """The options every trainer has (each trainer's config adds its own and may change the defaults).
    Paths are relative to the working directory."""

    data: str = "../shared/data/train"  # folder of training photos (the held-out split is taken from it by name hash)
    out: str = "runs/default"  # the run folder: checkpoint, log.csv, the config
    steps: int = 4000
    batch: int = 16
    crop: int = 128  # pixels, square
    seed: int = 0
    threads: int = 0  # torch threads (0: torch's default)
    precision: str = "fp32"  # "bf16": bf16 autocast where the CPU runs it natively (:func:`autocast_enabled`)
    validation_fraction: float = 0.05  # share of the photos held out (by name hash, :func:`vqz.codec.photos.is_validation`)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise VqzError(f"`precision` must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in ("steps", "batch", "crop"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise VqzError(f"`{name}` must be a positive integer, got {value!r}")
        if not 0 <= self.validation_fraction < 1:
            raise VqzError(f"`validation_fraction` must be in [0, 1), got {self.validation_fraction}")

    @classmethod
    def from_dict(cls, values: dict):
        """The config of a TOML table: an unknown key is a ``ValueError`` naming it; lists become tuples (the
        configs' sequence options are tuples)."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown option(s) for {cls.__name__}: {', '.join(sorted(unknown))}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


@dataclass(frozen=True, kw_only=True)
class CodeGridRunConfig(RunConfig):
    """The base of the trainers on a model's code grid (realistic and light transforms, :mod:`vqz.training.codes`):
    crops are aligned to the 8-pixel cells, at least 32 pixels; one bf16 thread by default (the other core works)."""

    model: str | None = None  # installed model id (default: the default model)
    crop: int = 128  # pixels, a multiple of 8
    threads: int = 1
    precision: str = "bf16"
    images: int = 100000  # training photos to code (all of the split by default)
    max_pixels: int = 600_000  # each photo's centre cut, at most this many pixels
    cache: str | None = None  # folder of the coded photos (default <out>/codes); runs of one model can share it
    whole_photos: bool = False  # also each photo whole, scaled down to max_pixels (:func:`vqz.training.codes.cache_codes`)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.crop % 8 or self.crop < 32:
            raise VqzError(f"`crop` must be a multiple of 8 of at least 32, got {self.crop}")


def learning_rate(lr: float, step: int, steps: int, final_fraction: float = 0.1, ramp: int = 0,
                  time_fraction: float = 0.0) -> float:
    """The codec trainers' schedule at ``step`` of ``steps``: a linear ramp over ``ramp`` steps, constant,
    then a cosine decay to ``lr * final_fraction`` over the last 40% of steps. ``time_fraction`` (the
    share of a time budget spent) replaces the share of steps done when it is the larger one, so a run
    stopped by its time budget ends its decay too."""
    if step < ramp:
        return lr * min(1.0, (step + 1) / ramp)
    low = lr * final_fraction
    if time_fraction > step / steps:
        if time_fraction < 0.6:
            return lr
        progress = min(1.0, (time_fraction - 0.6) / 0.4)
        return low + (lr - low) * 0.5 * (1 + math.cos(math.pi * progress))
    start = int(steps * 0.6)
    if step < start:
        return lr
    progress = (step - start) / max(1, steps - start)
    return low + (lr - low) * 0.5 * (1 + math.cos(math.pi * progress))


def cosine_lr(base: float, step: int, total: int, warmup: int = 0, floor: float = 0.0) -> float:
    """Learning rate at ``step`` (0-based) of ``total``: a linear ramp over ``warmup`` steps, then
    cosine decay from ``base`` to ``floor`` at ``total``."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (base - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_factor(step: int, warmup: int) -> float:
    """A linear ramp from 0 to 1 over ``warmup`` steps (1 without one), to multiply a schedule by."""
    return min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0


def is_due(step: int, every: int, steps: int) -> bool:
    """Whether ``step`` (steps done) is one to validate / log / checkpoint at: every ``every`` and the last."""
    return step % every == 0 or step >= steps


class RunClock:
    """The wall clock of a run: whether a checkpoint is due (``checkpoint_minutes`` since the last one; 0:
    never by time) and the share of a time budget spent (``max_minutes``; 0: no budget)."""

    def __init__(self, checkpoint_minutes: float = 0.0, max_minutes: float = 0.0) -> None:
        self.checkpoint_minutes, self.max_minutes = checkpoint_minutes, max_minutes
        self.started = self._last = time.time()

    @property
    def seconds(self) -> float:
        return time.time() - self.started

    def checkpoint_due(self) -> bool:
        return self.checkpoint_minutes > 0 and time.time() - self._last > self.checkpoint_minutes * 60

    def checkpointed(self) -> None:
        self._last = time.time()

    def budget_fraction(self) -> float:
        return self.seconds / (self.max_minutes * 60) if self.max_minutes > 0 else 0.0


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 natively: CUDA, or a CPU where oneDNN reports bf16 support."""
    return device.type != "cpu" or bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast_enabled(precision: str, device: torch.device, announce: bool = True) -> bool:
    """Whether to run the transforms under bf16 autocast for ``precision`` on ``device``.

    bf16 pays only where the hardware has it: on a CPU without native bf16 (no AVX-512 BF16
    or AMX, e.g. an AVX2-only EPYC) oneDNN emulates it, and a training step of the default
    model took about 18 s against 2.2 s in fp32 (2 threads, session 7's AVX2 EPYC). There
    ``bf16`` falls back to fp32 with one line on stderr (when ``announce``: under torchrun only
    rank 0 says it); a run's numbers then match an fp32 run.
    """
    if precision != "bf16":
        return False
    if not native_bf16(device):
        if announce:
            print("vqz train: this CPU has no native bf16 (AVX-512 BF16 or AMX), which makes bf16 about 8x "
                  "slower than fp32 here: training in fp32", file=sys.stderr)
        return False
    return True


def save_checkpoint(path: Path, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
                    step: int, metadata: dict[str, str] | None = None) -> None:
    """Write ``modules`` and ``optimizers`` (name -> object), ``step`` and ``metadata`` to ``path`` atomically."""
    tensors: dict[str, Tensor] = {}
    for name, module in modules.items():
        for key, value in module.state_dict().items():
            tensors[f"{name}.{key}"] = value.detach().cpu().contiguous()
    for name, optimizer in optimizers.items():
        for index, state in optimizer.state_dict()["state"].items():
            for key, value in state.items():
                tensors[f"{name}.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={**(metadata or {}), "step": str(step)})
    tmp.replace(path)


def read_checkpoint(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """(tensors, metadata) of a checkpoint file; :class:`VqzError` if it is not a safetensors file."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
        return load_file(str(path)), metadata
    except Exception as exc:  # safetensors raises its own error types for a bad header
        raise VqzError(f"{path} is not a safetensors checkpoint: {exc}") from exc


def apply_checkpoint(tensors: dict[str, Tensor], metadata: dict[str, str], modules: dict[str, nn.Module],
                     optimizers: dict[str, torch.optim.Optimizer] | None = None) -> int:
    """Restore ``modules`` (every entry of each state dict must be there) and ``optimizers`` (their
    per-parameter state, where present) from a checkpoint's tensors; returns its step."""
    for name, module in modules.items():
        expected = module.state_dict()
        missing = [k for k in expected if f"{name}.{k}" not in tensors]
        if missing:
            raise VqzError(f"the checkpoint has no {name}.{missing[0]} (it was written for another network)")
        module.load_state_dict({k: tensors[f"{name}.{k}"] for k in expected})
    for name, optimizer in (optimizers or {}).items():
        state = optimizer.state_dict()
        for key, value in tensors.items():
            index, _, field = key[len(name) + 1:].partition(".")
            if key.startswith(name + ".") and index.isdigit() and field:
                # Adam keeps its step counter on the CPU (unless capturable); the moments follow the parameters
                state["state"].setdefault(int(index), {})[field] = value.reshape(()).cpu() if field == "step" else value
        optimizer.load_state_dict(state)
    if "step" in metadata:
        return int(metadata["step"])
    return int(tensors["step"].item())  # the post-filter's first checkpoints kept it as a tensor


def load_checkpoint(path: Path, modules: dict[str, nn.Module],
                    optimizers: dict[str, torch.optim.Optimizer] | None = None) -> int:
    """:func:`read_checkpoint` then :func:`apply_checkpoint`; returns the step."""
    tensors, metadata = read_checkpoint(path)
    return apply_checkpoint(tensors, metadata, modules, optimizers)


class CsvLog:
    """A CSV log with a fixed header; appends when resuming, starts afresh otherwise. One row per call;
    floats are written with 5 significant digits, strings as given."""

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

    def __enter__(self) -> "CsvLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fmt(value: object) -> str:
    return f"{value:.5g}" if isinstance(value, float) else str(value)


def progress_bar(title: str, enabled: bool):
    """A rich progress bar (steps done / total, a status text, elapsed and remaining time); a no-op display
    when not ``enabled``. Use as a context manager; add one task with ``status=""``."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = [TextColumn(f"[bold]{title}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn()]
    return Progress(*columns, disable=not enabled)
