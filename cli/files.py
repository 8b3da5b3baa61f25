"""Output paths and atomic writes shared by the CLI commands."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from vqz.errors import VqzError


class OutputExistsError(VqzError):
    """An output file exists and ``--force`` was not given."""


def plan_outputs(inputs: list[Path], output: Path | None, suffix: str) -> list[Path]:
    """Where each input's result goes.

    No ``-o``: next to the input with ``suffix``. One input: ``-o`` is the file (or an
    existing directory). Several inputs: ``-o`` must be an existing directory; names
    inside it are the inputs' base names, so no output escapes that directory.
    """
    if output is None:
        return [path.with_suffix(suffix) for path in inputs]
    if output.is_dir():
        return [output / (Path(path.name).with_suffix(suffix).name) for path in inputs]
    if len(inputs) > 1:
        raise VqzError(f"{output}: with several inputs, -o must be an existing directory")
    return [output]


def write_atomic(path: Path, data: bytes, force: bool) -> None:
    """Write ``data`` to ``path`` via a temporary file + rename; never leaves a partial file."""
    if path.exists() and not force:
        raise OutputExistsError(f"{path} already exists (use --force to overwrite)")
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise VqzError(f"{path}: output directory {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_input(path: Path, max_bytes: int = 1 << 31) -> bytes:
    """All bytes of a file, with errors a person can act on."""
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
