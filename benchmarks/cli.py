"""``vqz bench`` and ``vqz bench-speed``: the benchmark suite's commands.

``register(app)`` adds both commands to a typer app (the main ``vqz`` app calls it);
``python -m vqz.benchmarks`` runs them standalone. Library errors
(:class:`vqz.errors.VqzError`) become one ``vqz: error: ...`` line on stderr and exit 1;
progress goes to stderr, the paths of the files written to stdout.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from vqz.benchmarks.registry import DEFAULT_CODECS, codec_names
from vqz.benchmarks.speed import DEFAULT_SPEED_CODECS

from vqz.errors import VqzError

__all__ = ["bench", "bench_speed", "register"]


def _fail(message: str) -> typer.Exit:
    print(f"vqz: error: {message}".replace("\n", " "), file=sys.stderr)
    return typer.Exit(1)


def _warn(message: str) -> None:
    print(f"vqz: warning: {message}".replace("\n", " "), file=sys.stderr)


def bench(
    dataset: Annotated[str, typer.Option("--dataset", help="'kodak' (downloaded to $VQZ_CACHE/kodak or "
                                         "~/.cache/vqz/kodak and SHA-256 verified) or a folder of images.")] = "kodak",
    codecs: Annotated[str, typer.Option("--codecs", help=f"Comma-separated codecs, or 'all'. Known: {', '.join(codec_names())}.")] = DEFAULT_CODECS,
    out: Annotated[Path, typer.Option("--out", help="Output folder: results.csv (resumable), json/, bd_rate.md, plots, report.html.")] = Path("bench-results"),
    workers: Annotated[int, typer.Option("--workers", help="Images coded in parallel processes (timings are contended above 1).")] = 1,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Use only the first N images.")] = None,
    repeats: Annotated[int, typer.Option("--repeats", help="Times each encode/decode is timed; the median is kept.")] = 1,
    reference: Annotated[Optional[Path], typer.Option("--reference", help="Folder of published CompressAI-format *.json curves, drawn dashed.")] = None,
    include_untrained: Annotated[bool, typer.Option("--include-untrained", help="Also plot/BD-rate codecs with untrained weights (speed-only by default).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Rate-distortion benchmark: codecs x settings x images -> CSV, JSON, BD-rate tables, plots, HTML.

    Example: vqz bench --dataset kodak --codecs vqz,jpeg,webp,avif --reference /path/to/kodak-published
    """
    from vqz.cli.extras import require

    require("bench", "bench")
    from vqz.benchmarks.datasets import resolve_dataset
    from vqz.benchmarks.registry import parse_codec_list
    from vqz.benchmarks.report import write_report
    from vqz.benchmarks.runner import run_benchmark

    try:
        names = parse_codec_list(codecs)
        if reference is not None and not reference.is_dir():
            raise _fail(f"--reference {reference} is not a folder")
        images = resolve_dataset(dataset, limit,
                                 on_file=None if quiet else lambda n: print(f"downloading {n}", file=sys.stderr))
        result = run_benchmark(images, names, out, repeats=repeats, workers=workers, progress=not quiet,
                               on_skip=lambda name, why: _warn(f"skipping {why}"))
        files = write_report(out, result.rows, result.codecs, result.images, reference_dir=reference,
                             include_untrained=include_untrained, threads=result.threads, repeats=repeats)
    except VqzError as exc:
        raise _fail(str(exc)) from None
    print(out / "results.csv")
    for path in [*files.json, files.bd_markdown, *files.plots, files.html]:
        print(path)


def bench_speed(
    codecs: Annotated[str, typer.Option("--codecs", help="Comma-separated codecs to time.")] = DEFAULT_SPEED_CODECS,
    sizes: Annotated[str, typer.Option("--sizes", help="Synthetic image sizes, WIDTHxHEIGHT, comma-separated.")] = "3840x2160,7680x4320",
    quality: Annotated[Optional[int], typer.Option("--quality", help="Setting for every codec (default: each codec's middle setting).")] = None,
    repeats: Annotated[int, typer.Option("--repeats", help="Timed runs per measurement; the median is kept.")] = 1,
    out: Annotated[Path, typer.Option("--out", help="Output folder for speed.json and speed.md.")] = Path("bench-results"),
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds allowed per measurement (one worker process).")] = 1800.0,
    camera: Annotated[Optional[Path], typer.Option("--camera", help="Also a camera-size row: a 13.4-megapixel mosaic of "
                                                   "this folder's largest photos (never a test set).")] = None,
) -> None:
    """Encode/decode seconds and peak memory (RSS high-water of a worker process) on 4K and 8K images.

    Example: vqz bench-speed --codecs vqz,hyperprior-untrained --sizes 3840x2160,7680x4320
    """
    from vqz.cli.extras import require

    require("bench-speed", "bench")
    from vqz.benchmarks.registry import parse_codec_list
    from vqz.benchmarks.speed import SpeedResult, parse_sizes, run_speed

    def show(r: SpeedResult) -> None:
        if r.error:
            _warn(f"{r.codec} {r.width}x{r.height}: {r.error}")
        else:
            print(f"{r.codec} q={r.setting} {r.width}x{r.height}: encode {r.encode_s:.2f} s, "
                  f"decode {r.decode_s:.2f} s, peak RSS {r.peak_rss_mib:.0f} MiB, "
                  f"{r.threads} threads", file=sys.stderr)

    try:
        names = parse_codec_list(codecs)
        size_list = parse_sizes(sizes) if sizes or camera is None else []
        results = run_speed(names, size_list, out, quality=quality, repeats=repeats,
                            timeout_s=timeout, on_result=show, camera=camera)
    except VqzError as exc:
        raise _fail(str(exc)) from None
    print(out / "speed.json")
    print(out / "speed.md")
    if all(r.error for r in results):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``bench`` and ``bench-speed`` to ``app``."""
    app.command("bench")(bench)
    app.command("bench-speed")(bench_speed)


def make_app() -> typer.Typer:
    """A standalone app with just the benchmark commands (``python -m vqz.benchmarks``)."""
    app = typer.Typer(name="vqz-bench", help="vqz benchmark suite.", no_args_is_help=True,
                      pretty_exceptions_enable=False, add_completion=False)
    register(app)
    return app
