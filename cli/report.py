"""One-line error reporting for batch commands."""

from __future__ import annotations

import sys
from pathlib import Path


def error(path: Path | str | None, message: str) -> None:
    """Print ``vqz: error: PATH: MESSAGE`` on stderr (one line)."""
    prefix = f"{path}: " if path is not None else ""
    text = f"vqz: error: {prefix}{message}".replace("\n", " ")
    print(text, file=sys.stderr)
