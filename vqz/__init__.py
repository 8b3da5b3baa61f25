"""vqz: a learned image codec (VQ-VAE + residual VQ + constriction entropy coding).

The public API (``encode``, ``decode``, ``decode_array``, ``read_info``, ``load_model``,
``quality_levels``) lives in :mod:`vqz.api` and is imported lazily, so that
``import vqz`` stays cheap until a codec function is used.
"""

from __future__ import annotations

from typing import Any

from vqz.errors import FormatError, ImageError, ModelError, VqzError

__version__ = "0.1.0"

_API = {"encode", "decode", "decode_array", "read_info", "load_model", "quality_levels", "VqzInfo", "DEFAULT_QUALITY"}

__all__ = ["FormatError", "ImageError", "ModelError", "VqzError", "__version__", *sorted(_API)]


def __getattr__(name: str) -> Any:
    if name in _API:
        from vqz import api

        return getattr(api, name)
    raise AttributeError(f"module 'vqz' has no attribute {name!r}")
