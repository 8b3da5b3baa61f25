"""Run codecs x settings x images and record one CSV row per combination.

Columns (exactly, in this order): see :data:`COLUMNS`. Units: ``bytes`` of the whole file,
``bpp = bytes * 8 / (width * height)``, ``psnr_rgb`` and ``ms_ssim_db`` in dB, ``ms_ssim_rgb``
unitless, ``encode_s``/``decode_s`` in seconds of wall-clock time (``time.perf_counter``),
the median of ``repeats`` runs. Timings are taken with ``torch.get_num_threads()`` threads in
the process doing the work (recorded in ``meta.json``); with ``workers > 1`` each worker gets
``cpu_count // workers`` threads and the timings are contended, so measure speed with one
worker.

Resuming: rows already in the CSV (same codec, setting and image name) are not run again;
new rows are appended as soon as each (image, codec) task finishes.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, fields
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from vqz.benchmarks.adapter import Codec, Setting, benchmark_threads, setting_key
from vqz.benchmarks.datasets import load_rgb
from vqz.benchmarks.errors import BenchmarkError
from vqz.benchmarks.metrics import ms_ssim, ms_ssim_db, psnr
from vqz.benchmarks.registry import available, get_codec

__all__ = ["COLUMNS", "RunResult", "Row", "measure", "read_rows", "run_benchmark"]

COLUMNS: tuple[str, ...] = ("codec", "setting", "image", "width", "height", "bytes", "bpp",
                            "psnr_rgb", "ms_ssim_rgb", "ms_ssim_db", "encode_s", "decode_s")
"""The CSV header, in order."""


@dataclass(frozen=True)
class Row:
    """One codec at one setting on one image (units in the module docstring)."""

    codec: str
    setting: str
    image: str
    width: int
    height: int
    bytes: int
    bpp: float
    psnr_rgb: float
    ms_ssim_rgb: float
    ms_ssim_db: float
    encode_s: float
    decode_s: float

    @property
    def key(self) -> tuple[str, str, str]:
        """``(codec, setting, image)``: what identifies a row for resuming."""
        return self.codec, self.setting, self.image

    @classmethod
    def from_csv(cls, record: dict[str, str]) -> Row:
        """Parse one ``csv.DictReader`` record."""
        try:
            kwargs: dict[str, object] = {}
            for f in fields(cls):
                raw = record[f.name]
                kwargs[f.name] = int(raw) if f.type == "int" else float(raw) if f.type == "float" else raw
            return cls(**kwargs)  # type: ignore[arg-type]
        except (KeyError, ValueError, TypeError) as exc:
            raise BenchmarkError(f"malformed result row {record!r}: {exc}") from exc


def read_rows(csv_path: Path) -> list[Row]:
    """All rows of a results CSV (empty list if the file does not exist)."""
    if not csv_path.exists():
        return []
    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise BenchmarkError(
                f"{csv_path} has columns {reader.fieldnames}, expected {list(COLUMNS)}; "
                "use another --out folder"
            )
        return [Row.from_csv(r) for r in reader]


def _append_rows(csv_path: Path, rows: Iterable[Row]) -> None:
    new = not csv_path.exists() or csv_path.stat().st_size == 0
    with csv_path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        for row in rows:
            writer.writerow(asdict(row))


def measure(codec: Codec, img: np.ndarray, setting: Setting, image_name: str, repeats: int = 1) -> Row:
    """Encode and decode ``img`` ``repeats`` times; metrics of the last decode, median times.

    ``codec.prepare(setting)`` runs first, untimed, so loading a model is not counted.
    """
    if repeats < 1:
        raise BenchmarkError(f"`repeats` must be at least 1, got {repeats}")
    height, width = img.shape[:2]
    codec.prepare(setting)  # model loading is not part of the timings
    enc_times: list[float] = []
    dec_times: list[float] = []
    data = b""
    decoded = img
    for _ in range(repeats):
        t0 = time.perf_counter()
        data = codec.encode(img, setting)
        t1 = time.perf_counter()
        decoded = codec.decode(data)
        t2 = time.perf_counter()
        enc_times.append(t1 - t0)
        dec_times.append(t2 - t1)
    if not isinstance(decoded, np.ndarray) or decoded.shape != img.shape or decoded.dtype != np.uint8:
        raise BenchmarkError(
            f"{codec.name} at {setting}: decoded {getattr(decoded, 'shape', None)} "
            f"{getattr(decoded, 'dtype', None)}, expected {img.shape} uint8"
        )
    ssim = ms_ssim(img, decoded)
    return Row(
        codec=codec.name, setting=setting_key(setting), image=image_name, width=width, height=height,
        bytes=len(data), bpp=len(data) * 8 / (width * height), psnr_rgb=psnr(img, decoded),
        ms_ssim_rgb=ssim, ms_ssim_db=float(ms_ssim_db(ssim)),
        encode_s=statistics.median(enc_times), decode_s=statistics.median(dec_times),
    )


@dataclass(frozen=True)
class _Task:
    image: Path
    codec: str
    settings: tuple[str, ...]


def _run_task(task: _Task, repeats: int, on_row: Callable[[Row], None] | None = None) -> list[Row]:
    codec = get_codec(task.codec)
    by_key = {setting_key(s): s for s in codec.settings()}
    img = load_rgb(task.image)
    rows = []
    for key in task.settings:
        row = measure(codec, img, by_key[key], task.image.name, repeats)
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


@dataclass(frozen=True)
class RunResult:
    """What a run covered: the codecs that ran, the images, and all their rows (cached + new)."""

    codecs: list[Codec]
    images: list[Path]
    rows: list[Row]
    new_rows: int
    threads: int


def _changed_codecs(out_dir: Path, codecs: list[Codec]) -> set[str]:
    """Codecs whose description differs from the one ``meta.json`` recorded for the cached rows.

    A description names what produced the rows (library versions, options; for vqz the model
    and its weights hash), so rows of a codec that changed since are stale and run again.
    """
    try:
        recorded = json.loads((out_dir / "meta.json").read_text()).get("codecs", {})
    except (OSError, ValueError, AttributeError):
        return set()
    return {c.name for c in codecs if c.name in recorded and recorded[c.name].get("description") != c.description}


def _rewrite_rows(csv_path: Path, rows: Iterable[Row]) -> None:
    """Replace the CSV with ``rows`` (atomically: a temporary file renamed over it)."""
    tmp = csv_path.with_name(csv_path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(asdict(row))
    tmp.replace(csv_path)


def _write_meta(out_dir: Path, codecs: list[Codec], images: list[Path], repeats: int,
                workers: int, threads: int) -> None:
    import PIL
    import torch

    meta = {
        "codecs": {c.name: {"label": c.label, "description": c.description, "rd": c.rd,
                            "settings": [setting_key(s) for s in c.settings()]} for c in codecs},
        "images": [p.name for p in images],
        "repeats": repeats,
        "workers": workers,
        "threads_per_worker": threads,
        "timing": f"median of {repeats} run(s), seconds of wall-clock time (time.perf_counter)",
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pillow": PIL.__version__,
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def run_benchmark(images: list[Path], codec_names: list[str], out_dir: Path, *, repeats: int = 1,
                  workers: int = 1, progress: bool = True,
                  on_skip: Callable[[str, str], None] = lambda name, why: None) -> RunResult:
    """Run every available codec at every setting on every image; rows go to ``out_dir/results.csv``.

    Rows already in the CSV are kept, unless their codec's description changed since the
    last run (``meta.json``; e.g. new vqz weights): those are measured again.
    Codecs that cannot run here are reported through ``on_skip(name, reason)`` and left out;
    if none can run, :class:`BenchmarkError` is raised. Also writes ``out_dir/meta.json``
    (threads, versions, codec descriptions).
    """
    if repeats < 1:
        raise BenchmarkError(f"`repeats` must be at least 1, got {repeats}")
    if workers < 1:
        raise BenchmarkError(f"`workers` must be at least 1, got {workers}")
    if not images:
        raise BenchmarkError("no images to benchmark")
    codecs = available(codec_names, on_skip)
    if not codecs:
        raise BenchmarkError(f"none of the codecs {', '.join(codec_names)} can run here")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchmarkError(f"cannot create output folder {out_dir}: {exc.strerror}") from exc
    csv_path = out_dir / "results.csv"
    done = {row.key: row for row in read_rows(csv_path)}
    stale = _changed_codecs(out_dir, codecs)
    if stale and any(row.codec in stale for row in done.values()):
        done = {key: row for key, row in done.items() if row.codec not in stale}
        _rewrite_rows(csv_path, done.values())

    tasks: list[_Task] = []
    for image in images:
        for codec in codecs:
            todo = tuple(k for k in (setting_key(s) for s in codec.settings())
                         if (codec.name, k, image.name) not in done)
            if todo:
                tasks.append(_Task(image, codec.name, todo))
    threads = benchmark_threads() if workers == 1 else max(1, (os.cpu_count() or 1) // workers)
    _write_meta(out_dir, codecs, images, repeats, workers, threads)

    total = sum(len(t.settings) for t in tasks)
    new_rows = _execute(tasks, csv_path, repeats, workers, threads, total, progress)
    for row in new_rows:
        done[row.key] = row
    wanted_codecs = {c.name for c in codecs}
    wanted_images = {p.name for p in images}
    rows = [r for r in done.values() if r.codec in wanted_codecs and r.image in wanted_images]
    return RunResult(codecs=codecs, images=images, rows=rows, new_rows=len(new_rows), threads=threads)


def _execute(tasks: list[_Task], csv_path: Path, repeats: int, workers: int, threads: int,
             total: int, progress: bool) -> list[Row]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    new_rows: list[Row] = []
    columns = (TextColumn("[bold]bench[/]"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.description}"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not progress, transient=False) as bar:
        bar_id = bar.add_task("", total=total)
        if workers == 1:
            for task in tasks:
                bar.update(bar_id, description=f"{task.codec} {task.image.name}")

                def on_row(row: Row) -> None:
                    _append_rows(csv_path, [row])
                    new_rows.append(row)
                    bar.advance(bar_id)

                _run_task(task, repeats, on_row)
            return new_rows
        ctx = get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(threads,)) as pool:
            pending: dict[Future[list[Row]], _Task] = {pool.submit(_run_task, t, repeats): t for t in tasks}
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    task = pending.pop(fut)
                    try:
                        rows = fut.result()
                    except BaseException:
                        for other in pending:
                            other.cancel()
                        raise
                    _append_rows(csv_path, rows)
                    new_rows.extend(rows)
                    bar.update(bar_id, advance=len(rows), description=f"{task.codec} {task.image.name}")
    return new_rows
