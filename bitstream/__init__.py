"""The ``.vqz`` container format (see docs/FORMAT.md).

The alpha-plane coder (:mod:`vqz.bitstream.alpha`, numpy) is imported on first use, so
reading a header (``vqz info``, ``Image.open``) does not import numpy.
"""

from typing import Any

from vqz.bitstream.container import BASE_VERSION, FORMAT_VERSION, MAGIC, RESIDUAL_VERSION, Header, PostFilterRef, VqzFile, header_size, pack, unpack, unpack_file

__all__ = ["BASE_VERSION", "FORMAT_VERSION", "MAGIC", "RESIDUAL_VERSION", "Header", "PostFilterRef", "VqzFile", "decode_alpha", "encode_alpha", "header_size", "pack",
           "unpack", "unpack_file"]

_ALPHA = {"decode_alpha", "encode_alpha"}


def __getattr__(name: str) -> Any:
    if name in _ALPHA:
        from vqz.bitstream import alpha

        return getattr(alpha, name)
    raise AttributeError(f"module 'vqz.bitstream' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _ALPHA)
