"""vqz: a learned image codec (VQ-VAE + residual VQ + constriction entropy coding).

The public API (``encode``, ``decode``, ``decode_array``, ``read_info``, ``load_model``,
``quality_levels``) lives in :mod:`vqz.api` and is imported lazily, so that
``import vqz`` stays cheap (no numpy, no torch) until a codec function is used;
``read_info`` comes from :mod:`vqz.fileinfo`, which needs neither numpy nor a model.

``import vqz`` also registers a Pillow plugin (:mod:`vqz.pillow_plugin`), after which
``PIL.Image.open("x.vqz")`` decodes and ``image.save("x.vqz", quality=6)`` encodes.
"""

from __future__ import annotations

import os as _os
from typing import Any

# In a source checkout the other parts of the package (codec/, bitstream/, cli/, training/, benchmarks/) sit
# beside this folder and are mapped into vqz.* by pyproject's package-dir. Python started in the checkout's
# root finds this folder before any installed vqz, so make those parts importable from here too.
_checkout = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_checkout, "bitstream", "__init__.py")) and not _os.path.isdir(
        _os.path.join(_os.path.dirname(__file__), "bitstream")):
    __path__.append(_checkout)  # noqa: F821 (the package's own __path__)

from vqz import pillow_plugin as _pillow_plugin  # noqa: E402
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
