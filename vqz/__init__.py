"""vqz: a learned image codec (VQ-VAE + residual VQ + constriction entropy coding).

The public API (``encode``, ``decode``, ``decode_array``, ``read_info``, ``load_model``,
``quality_levels``) lives in :mod:`vqz.api` and is imported lazily, so that
``import vqz`` stays cheap (no numpy, no torch) until a codec function is used;
``read_info`` comes from :mod:`vqz.fileinfo`, which needs neither numpy nor a model.

``import vqz`` also registers a Pillow plugin (:mod:`vqz.pillow_plugin`), after which
``PIL.Image.open("x.vqz")`` decodes and ``image.save("x.vqz", quality=6)`` encodes.
"""

from __future__ import annotations

from typing import Any

from vqz import pillow_plugin as _pillow_plugin
from vqz.errors import FormatError, ImageError, ModelError, VqzError

__version__ = "0.1.0"

_API = {
    "encode",
    "decode",
    "decode_array",
    "read_info",
    "load_model",
    "quality_levels",
    "realism_applies",
    "VqzInfo",
    "DEFAULT_QUALITY",
}

__all__ = ["FormatError", "ImageError", "ModelError", "VqzError", "__version__", *sorted(_API)]

_pillow_plugin.register()


#: served by vqz.fileinfo, which imports neither numpy nor the model
_LIGHT = {"read_info", "VqzInfo"}


def __getattr__(name: str) -> Any:
    if name in _LIGHT:
        from vqz import fileinfo

        return getattr(fileinfo, name)
    if name in _API:
        from vqz import api

        return getattr(api, name)
    raise AttributeError(f"module 'vqz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _API)
