"""Whole-command wall time of ``vqz encode``, ``vqz decode`` and ``vqz info`` (issue 14).

Each measurement is one fresh process, timed from its start to its exit (so the file is
written): interpreter start, imports, model loading, coding and writing, as a person feels
them. Wall time is the median over ``--repeat`` runs; CPU time (user + system, from
``getrusage(RUSAGE_CHILDREN)``) is reported beside it because wall time on a shared machine
depends on the load (the load average is printed before and after).

Several installations can be compared side by side (``--python LABEL=PATH``, repeatable: the
``python`` of a virtual environment with vqz installed); the runs are interleaved (round r
runs every command of every installation) so that a change of load hits all of them alike.
The outputs of every installation are compared byte for byte (``outputs identical``).

    python -m vqz.benchmarks.startup kodim01.png
    python -m vqz.benchmarks.startup kodim01.png --python before=/tmp/old/bin/python \\
        --python after=.venv/bin/python --repeat 5 --json startup.json

Commands (``--quality`` sets the level):

* ``encode``: ``vqz encode IMAGE -q Q -o out.vqz --force``
* ``decode``: ``vqz decode out.vqz -o out.png --force`` (the file the same installation wrote)
* ``info``: ``vqz info out.vqz``
* ``api-decode``: ``python -c "import vqz; vqz.decode('out.vqz').save('api.png')"``

``vqz`` is the console script beside each ``python`` when there is one, else ``python -m vqz``.
Processes run in a scratch folder (so no source tree shadows the installed package) with the
caller's environment.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

COMMANDS = ("encode", "decode", "info", "api-decode")
OUTPUTS = {"encode": "out.vqz", "decode": "out.png", "api-decode": "api.png"}

__all__ = ["COMMANDS", "Measurement", "command_line", "measure", "run_once", "startup_markdown"]


@dataclass(frozen=True)
class Measurement:
    """One command of one installation: medians and every run, in seconds."""

    label: str
    command: str
    wall_s: float
    cpu_s: float
    walls: list[float]
    cpus: list[float]


def _vqz(python: str) -> list[str]:
    script = Path(python).parent / "vqz"
    return [str(script)] if script.is_file() and os.access(script, os.X_OK) else [python, "-m", "vqz"]


def command_line(python: str, command: str, image: Path, quality: int) -> list[str]:
    """The argv of ``command`` for the installation of ``python`` (run inside its scratch folder)."""
    vqz = _vqz(python)
    if command == "encode":
        return [*vqz, "encode", str(image), "-q", str(quality), "-o", "out.vqz", "--force"]
    if command == "decode":
        return [*vqz, "decode", "out.vqz", "-o", "out.png", "--force"]
    if command == "info":
        return [*vqz, "info", "out.vqz"]
    if command == "api-decode":
        return [python, "-c", "import vqz; vqz.decode('out.vqz').save('api.png')"]
    raise ValueError(f"unknown command {command!r}; choose from {', '.join(COMMANDS)}")


def run_once(argv: list[str], cwd: Path) -> tuple[float, float]:
    """Run ``argv`` in ``cwd`` (output discarded) -> (wall seconds, CPU seconds of the process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.decode(errors='replace').strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def measure(image: Path, pythons: dict[str, str], *, repeat: int = 5, quality: int = 4,
            commands: tuple[str, ...] = COMMANDS, workdir: Path | None = None) -> tuple[list[Measurement], bool]:
    """Time every command of every installation ``repeat`` times, interleaved.

    Returns the measurements and whether every installation wrote the same bytes.
    """
    image = Path(image).resolve()
    root = Path(tempfile.mkdtemp(prefix="vqz-startup-", dir=workdir))
    try:
        folders = {label: root / f"run{i}" for i, label in enumerate(pythons)}
        for label, folder in folders.items():
            folder.mkdir()
            # the file decode and info read exists before the first timed decode
            run_once(command_line(pythons[label], "encode", image, quality), folder)
        runs: dict[tuple[str, str], list[tuple[float, float]]] = {(l, c): [] for l in pythons for c in commands}
        for _ in range(repeat):
            for command in commands:
                for label, python in pythons.items():
                    runs[label, command].append(run_once(command_line(python, command, image, quality), folders[label]))
        identical = all(
            len({(folder / name).read_bytes() for folder in folders.values()}) == 1
            for command, name in OUTPUTS.items() if command in commands or name == "out.vqz"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results = [Measurement(label, command, statistics.median(w for w, _ in times), statistics.median(c for _, c in times),
                           [w for w, _ in times], [c for _, c in times])
               for (label, command), times in runs.items()]
    return results, identical


def startup_markdown(results: list[Measurement]) -> str:
    """A table: one row per command, wall and CPU (median) per installation."""
    labels = list(dict.fromkeys(m.label for m in results))
    commands = list(dict.fromkeys(m.command for m in results))
    by_key = {(m.label, m.command): m for m in results}
    head = "| command | " + " | ".join(f"{l} wall s | {l} CPU s" for l in labels) + " |"
    rule = "| --- |" + " ---: | ---: |" * len(labels)
    rows = ["| " + c + " | " + " | ".join(f"{by_key[l, c].wall_s:.3f} | {by_key[l, c].cpu_s:.3f}" for l in labels) + " |"
            for c in commands]
    return "\n".join([head, rule, *rows])


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vqz.benchmarks.startup", description=__doc__.split("\n\n")[0])
    parser.add_argument("image", type=Path, help="The image to encode (e.g. kodim01.png).")
    parser.add_argument("--python", action="append", default=[], metavar="[LABEL=]PATH",
                        help="The python of an installation to time (repeatable; default: this one).")
    parser.add_argument("--repeat", type=int, default=5, help="Runs per command and installation (median kept).")
    parser.add_argument("--quality", "-q", type=int, default=4, help="Quality level of the encode.")
    parser.add_argument("--commands", default=",".join(COMMANDS), help="Comma-separated subset of " + ", ".join(COMMANDS))
    parser.add_argument("--json", type=Path, help="Also write every run to this JSON file.")
    args = parser.parse_args(argv)
    pythons: dict[str, str] = {}
    for entry in args.python or [sys.executable]:
        label, _, path = entry.rpartition("=")
        pythons[label or f"python{len(pythons) + 1}"] = path
    commands = tuple(c.strip() for c in args.commands.split(",") if c.strip())
    if unknown := set(commands) - set(COMMANDS):
        parser.error(f"unknown commands: {', '.join(sorted(unknown))}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load_before = _load()
    results, identical = measure(args.image, pythons, repeat=args.repeat, quality=args.quality, commands=commands)
    load_after = _load()
    print(f"{args.image.name}, -q {args.quality}, median of {args.repeat}, {cores} cores, "
          f"load average {load_before} before, {load_after} after; outputs identical: {identical}")
    for label, python in pythons.items():
        print(f"  {label}: {' '.join(_vqz(python))}")
    print(startup_markdown(results))
    if args.json:
        args.json.write_text(json.dumps({"image": str(args.image), "quality": args.quality, "repeat": args.repeat,
                                         "cores": cores, "load_before": load_before, "load_after": load_after,
                                         "identical": identical, "pythons": pythons,
                                         "results": [asdict(m) for m in results]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
