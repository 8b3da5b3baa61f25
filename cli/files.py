"""Inputs, outputs and atomic writes shared by the CLI commands.

* ``-`` as an input reads standard input; as ``-o`` it writes standard output (binary).
* A directory given as an input expands to the files in it that the command can read
  (sorted by name, not recursive, hidden files skipped); so does a glob pattern (``*``,
  ``?``, ``[...]``) that the shell left unexpanded. A directory or pattern that yields
  nothing is reported as an error; the other inputs still run.
* Outputs go next to each input, or into ``-o DIR`` under the input's base name only, so
  no output ever lands outside that directory.
* Files are written to a temporary file in the same directory and renamed, so a failure
  never leaves a partial file; an existing output needs ``--force``.
"""

from __future__ import annotations

import functools
import glob
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import typer

from vqz.errors import VqzError

STDIO = Path("-")
STDIN_LABEL = "<stdin>"
MAX_INPUT_BYTES = 1 << 31
_GLOB_CHARS = frozenset("*?[")


class OutputExistsError(VqzError):
    """An output file exists and ``--force`` was not given."""


@dataclass(frozen=True)
class Job:
    """One input and where its result goes; ``STDIO`` stands for stdin / stdout."""

    source: Path
    target: Path

    @property
    def label(self) -> str:
        """How messages name the input."""
        return STDIN_LABEL if is_stdio(self.source) else str(self.source)


def is_stdio(path: Path) -> bool:
    return str(path) == "-"


@functools.lru_cache(maxsize=1)
def image_suffixes() -> frozenset[str]:
    """Suffixes of the raster formats Pillow can decode here (``.png``, ``.jpg``, ...), not ``.vqz``.

    Formats Pillow only identifies (stubs such as HDF5 or WMF, MPEG) or needs an external
    program for (EPS: Ghostscript) are left out, so a folder of photos and videos works.
    """
    from PIL import Image, ImageFile

    Image.init()
    decodable = {
        fmt for fmt, (factory, _) in Image.OPEN.items()
        if not (isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile))
    } - {"MPEG", "EPS", "VQZ"}
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in decodable)


def is_vqz(path: Path) -> bool:
    return path.suffix.lower() == ".vqz"


def expand_inputs(inputs: list[Path], keep: Callable[[Path], bool], what: str) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files named by ``inputs`` (directories and unexpanded globs opened up, see above).

    ``keep`` selects the files of a directory or a pattern (files named directly are kept
    whatever their suffix); ``what`` names them in messages ("image files"). Returns the
    files in order and one ``(input, message)`` per directory or pattern that gave none.
    """
    files: list[Path] = []
    problems: list[tuple[str, str]] = []
    for given in inputs:
        text = str(given)
        if is_stdio(given):
            files.append(given)
            continue
        if given.is_dir():
            found = sorted((p for p in given.iterdir() if not p.name.startswith(".") and p.is_file() and keep(p)),
                           key=lambda p: p.name)
            if not found:
                problems.append((text, f"directory holds no {what}"))
        elif not given.exists() and _GLOB_CHARS & set(text):
            found = sorted(p for p in map(Path, glob.glob(text)) if p.is_file() and keep(p))
            if not found:
                problems.append((text, f"no {what} match this pattern"))
        else:
            found = [given]  # a file, or a missing one: reported when it is read
        files.extend(found)
    return files, problems


def plan_jobs(files: list[Path], output: Path | None, suffix: str) -> tuple[list[Job], list[tuple[str, str]]]:
    """Where each input's result goes.

    No ``-o``: next to the input with ``suffix`` (stdin: to stdout). ``-o -``: stdout, one
    input only. ``-o DIR`` (an existing directory): ``DIR/<input base name><suffix>``.
    Otherwise ``-o`` is the output file of the single input. Usage errors raise
    ``typer.BadParameter`` (exit 2); ``-o FILE`` with several inputs raises ``VqzError``.
    Two inputs that would write the same file: the second is returned as a problem.
    """
    stdin = [f for f in files if is_stdio(f)]
    if stdin and len(files) > 1:
        raise typer.BadParameter("'-' (standard input) cannot be combined with other inputs", param_hint="INPUT")
    if output is not None and is_stdio(output) and len(files) > 1:
        raise typer.BadParameter("'-o -' (standard output) takes a single input", param_hint="'-o' / '--output'")
    if stdin and output is not None and output.is_dir():
        raise typer.BadParameter("standard input has no name to use inside a directory: give -o FILE or -o -",
                                 param_hint="'-o' / '--output'")
    if output is None:
        targets = [STDIO if is_stdio(f) else f.with_suffix(suffix) for f in files]
    elif output.is_dir():
        targets = [output / Path(f.name).with_suffix(suffix).name for f in files]
    elif len(files) > 1:
        raise VqzError(f"{output}: with several inputs, -o must be an existing directory")
    else:
        targets = [output] * len(files)
    jobs: list[Job] = []
    problems: list[tuple[str, str]] = []
    claimed: dict[Path, Job] = {}
    for source, target in zip(files, targets):
        job = Job(source, target)
        key = target if is_stdio(target) else Path(os.path.abspath(target))
        if key in claimed and not is_stdio(target):
            problems.append((job.label, f"output {target} would also be written by {claimed[key].label}; skipped"))
            continue
        claimed[key] = job
        jobs.append(job)
    return jobs, problems


def refuse_terminal_output(jobs: list[Job]) -> None:
    """Binary data is never written to an interactive terminal (usage error)."""
    if any(is_stdio(job.target) for job in jobs) and sys.stdout.isatty():
        raise typer.BadParameter("refusing to write binary data to a terminal: redirect it or give -o FILE",
                                 param_hint="'-o' / '--output'")


def read_stdin() -> bytes:
    """All of standard input, as bytes (refused when it is an interactive terminal)."""
    if sys.stdin.isatty():
        raise VqzError("standard input is a terminal: pipe a file into vqz, e.g. cat photo.png | vqz encode - -o -")
    stream = getattr(sys.stdin, "buffer", sys.stdin)
    data = stream.read(MAX_INPUT_BYTES + 1)
    if len(data) > MAX_INPUT_BYTES:
        raise VqzError(f"standard input is larger than {MAX_INPUT_BYTES} bytes")
    return data


def write_stdout(data: bytes) -> None:
    stream = getattr(sys.stdout, "buffer", sys.stdout)
    stream.write(data)
    stream.flush()


def check_target(target: Path, force: bool) -> None:
    """Fail early, before any work, if ``target`` exists and ``--force`` was not given."""
    if not is_stdio(target) and target.exists() and not force:
        raise OutputExistsError(f"output {target} already exists (use --force to overwrite)")


def write_output(target: Path, data: bytes, force: bool) -> None:
    """``data`` to stdout (``-``) or atomically to a file."""
    if is_stdio(target):
        write_stdout(data)
    else:
        write_atomic(target, data, force)


def write_atomic(path: Path, data: bytes, force: bool) -> None:
    """Write ``data`` to ``path`` via a temporary file + rename; never leaves a partial file."""
    if path.exists() and not force:
        raise OutputExistsError(f"{path} already exists (use --force to overwrite)")
    if path.is_dir():
        raise VqzError(f"{path} is a directory")
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise VqzError(f"{path}: output directory {directory} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise VqzError(f"{path}: cannot write: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the usual mode
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise VqzError(f"{path}: cannot write: {exc.strerror or exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_input(path: Path, max_bytes: int = MAX_INPUT_BYTES) -> bytes:
    """All bytes of a file (``-``: standard input), with errors a person can act on."""
    if is_stdio(path):
        return read_stdin()
    if path.is_dir():
        raise VqzError("is a directory")
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise VqzError(f"file is larger than {max_bytes} bytes")
        return path.read_bytes()
    except FileNotFoundError:
        raise VqzError("no such file") from None
    except OSError as exc:
        raise VqzError(f"cannot read: {exc.strerror or exc}") from None
