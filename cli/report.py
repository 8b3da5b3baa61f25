"""Reporting for the commands: one-line errors and warnings, progress, and batch runs.

Data goes to stdout; errors, warnings, notes and the progress bar go to stderr. A batch
reports each failing file on its own ``vqz: error: PATH: message`` line, in input order,
and goes on with the others.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from vqz.errors import VqzError

if TYPE_CHECKING:
    from concurrent.futures import Future, ProcessPoolExecutor

T = TypeVar("T")
R = TypeVar("R")


def _line(kind: str, path: Path | str | None, message: str) -> str:
    prefix = f"{path}: " if path is not None else ""
    return f"vqz: {kind}{prefix}{message}".replace("\n", " ")


def error(path: Path | str | None, message: str) -> None:
    """Print ``vqz: error: PATH: MESSAGE`` on stderr (one line)."""
    print(_line("error: ", path, message), file=sys.stderr)


def warning(path: Path | str | None, message: str) -> None:
    """Print ``vqz: warning: PATH: MESSAGE`` on stderr (one line)."""
    print(_line("warning: ", path, message), file=sys.stderr)


def note(path: Path | str | None, message: str) -> None:
    """Print ``vqz: PATH: MESSAGE`` on stderr (one line): information, silenced by --quiet."""
    print(_line("", path, message), file=sys.stderr)


def _init_worker(threads: int) -> None:
    """Runs once in each worker process: share the CPU cores instead of oversubscribing."""
    os.environ["OMP_NUM_THREADS"] = str(threads)  # read by torch when it is imported later
    torch = sys.modules.get("torch")
    if torch is not None:  # already imported by the forkserver's preload
        torch.set_num_threads(threads)


def _pool(workers: int, preload: Sequence[str]) -> ProcessPoolExecutor:
    """Worker processes started clean (forkserver, else spawn), never forked from a parent
    that has already run torch: OpenMP thread pools do not survive a fork. The forkserver
    imports ``preload`` once (torch takes seconds), then forks each worker from itself."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if context.get_start_method() == "forkserver":
        context.set_forkserver_preload(list(preload))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // workers)
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(threads,))


def _progress(total: int, quiet: bool) -> Any:
    """A rich progress bar on stderr, shown only for several files on an interactive terminal."""
    if quiet or total < 2:  # rich is imported only when a bar may be shown
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    console = Console(stderr=True)
    if quiet or total < 2 or not console.is_terminal:
        return None
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        redirect_stdout=False,
        transient=False,
    )


def run_batch(
    work: Callable[[T], R],
    items: Sequence[T],
    labels: Sequence[str | Path],
    finish: Callable[[int, R], None],
    *,
    workers: int = 1,
    quiet: bool = False,
    description: str = "",
    preload: Sequence[str] = (),
) -> int:
    """Run ``work(item)`` for every item and ``finish(index, result)`` in input order.

    ``work`` must be a module-level function (it is pickled when ``workers > 1``: then the
    items run in a pool of ``workers`` processes, which import the modules ``preload`` names
    before forking: pass the heavy ones ``work`` needs). ``finish`` runs in this process and
    writes the result. A ``VqzError`` from either is reported on one line naming the
    item's label; any other exception is reported as an internal error of that file.
    Returns the number of items that failed.
    """
    failed = 0
    progress = _progress(len(items), quiet)
    workers = max(1, min(workers, len(items)))
    pool = _pool(workers, [work.__module__, *preload]) if workers > 1 else None
    try:
        with progress or nullcontext():
            task = progress.add_task(description, total=len(items)) if progress else None
            futures: list[Future[R]] | None = [pool.submit(work, item) for item in items] if pool else None
            for index, item in enumerate(items):
                try:
                    result = futures[index].result() if futures is not None else work(item)
                    finish(index, result)
                except VqzError as exc:
                    error(labels[index], str(exc))
                    failed += 1
                except BrokenPipeError:  # stdout's reader went away: nothing left to do
                    raise
                except Exception as exc:  # one file's bug or a dead worker must not hide the others
                    error(labels[index], f"internal error: {type(exc).__name__}: {exc}")
                    failed += 1
                if progress:
                    progress.advance(task)
    finally:
        if pool is not None:  # on Ctrl-C, drop the queued files instead of waiting for them
            pool.shutdown(wait=True, cancel_futures=True)
    return failed
