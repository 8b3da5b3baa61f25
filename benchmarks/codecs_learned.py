"""Learned codecs: vqz itself and CompressAI's hyperprior with untrained weights.

* ``vqz`` goes through the public Python API, :mod:`vqz.api`: ``quality_levels()``,
  ``encode(image, quality=q) -> bytes`` and ``decode(bytes) -> PIL.Image``; the bytes are
  the complete ``.vqz`` file.
* ``hyperprior-untrained`` is ``compressai.zoo.bmshj2018_hyperprior(quality, pretrained=False)``:
  randomly initialised weights, so its reconstructions are meaningless. It exists to compare
  encode/decode **speed** of a conventional learned codec on the same machine and threads; it
  is marked ``rd = False`` and left out of RD plots and BD-rate tables by default.
"""

from __future__ import annotations

import functools
import struct
from typing import Any

import numpy as np
from vqz.benchmarks.adapter import Codec, Setting
from vqz.benchmarks.errors import BenchmarkError, CodecUnavailable

from vqz.errors import VqzError

__all__ = ["HyperpriorUntrainedCodec", "VqzCodec", "VqzFastCodec", "compressai_compress", "compressai_decompress", "pack_strings",
           "unpack_strings"]


class VqzCodec(Codec):
    """vqz through :mod:`vqz.api`; settings are its quality levels (``api.quality_levels()``)."""

    name = "vqz"
    label = "vqz"

    def __init__(self) -> None:
        try:
            import vqz.api as api
        except ModuleNotFoundError as exc:
            if exc.name not in ("vqz.api", "vqz"):
                raise
            raise CodecUnavailable(
                "vqz: the Python API module vqz.api is not available in this checkout"
            ) from exc
        missing = [f for f in ("quality_levels", "encode", "decode") if not hasattr(api, f)]
        if missing:
            raise CodecUnavailable(f"vqz: vqz.api lacks {', '.join(missing)}")
        self._api: Any = api
        try:
            self._levels = [int(q) for q in api.quality_levels()]
        except VqzError as exc:
            raise CodecUnavailable(f"vqz: no usable model: {exc}") from exc

    @property
    def description(self) -> str:
        import vqz

        from vqz.bitstream import FORMAT_VERSION
        from vqz.codec.levels import encoder_settings_id

        from vqz.codec.postfilter import default_postfilter, stage_postfilter

        model = self._api.load_model()
        named = lambda pf: "none" if pf is None else f"{pf.filter_id} ({pf.filter_hash.hex()})"  # noqa: E731
        return (f"vqz {vqz.__version__} (vqz.api), model {model.model_id} (weights {model.weights_hash.hex()}), "
                f"format {FORMAT_VERSION}, levels {encoder_settings_id()}, post-filter {named(default_postfilter())} "
                f"(stage-only levels: {named(stage_postfilter())}); setting = quality level")

    def settings(self) -> list[Setting]:
        return list(self._levels)

    def encode(self, img: np.ndarray, setting: Setting) -> bytes:
        data = self._api.encode(img, quality=int(setting))
        if not isinstance(data, (bytes, bytearray)):
            raise BenchmarkError(f"vqz.api.encode returned {type(data).__name__}, expected bytes")
        return bytes(data)

    def decode(self, data: bytes) -> np.ndarray:
        return np.asarray(self._api.decode(data).convert("RGB"))


class VqzFastCodec(VqzCodec):
    """vqz with its light transforms: encoded at effort 0 (the light analysis head), decoded with ``fast=True``
    (the light synthesis, stage-only levels; residual levels decode with the model's own synthesis)."""

    name = "vqz-fast"
    label = "vqz fast (--effort 0, --fast)"

    def __init__(self) -> None:
        super().__init__()
        from vqz.codec.light import light_analysis_for, light_for

        model = self._api.load_model()
        if light_for(model) is None or light_analysis_for(model) is None:
            raise CodecUnavailable(f"vqz-fast: model {model.model_id} has no installed light synthesis and analysis")

    @property
    def description(self) -> str:
        from vqz.codec.light import light_analysis_for, light_for

        model = self._api.load_model()
        return (super().description + f"; encoded at effort 0 with {light_analysis_for(model).light_id}, decoded "
                f"with --fast ({light_for(model).light_id} on levels 1-4)")

    def encode(self, img: np.ndarray, setting: Setting) -> bytes:
        return bytes(self._api.encode(img, quality=int(setting), effort=0))

    def decode(self, data: bytes) -> np.ndarray:
        return np.asarray(self._api.decode(data, fast=True).convert("RGB"))


_MAGIC = b"CAIu"
_HEADER = struct.Struct(">4sBHHHHB")  # magic, quality, height, width, z_h, z_w, n_strings
_LENGTH = struct.Struct(">I")


@functools.cache
def _hyperprior(quality: int) -> Any:
    """The untrained model for one quality, in eval mode with its CDF tables built."""
    from compressai.zoo import bmshj2018_hyperprior

    model = bmshj2018_hyperprior(quality=quality, pretrained=False).eval()
    model.update(force=True)
    return model


class HyperpriorUntrainedCodec(Codec):
    """CompressAI bmshj2018-hyperprior, UNTRAINED weights: speed comparison only.

    File layout (big-endian): ``b"CAIu"``, u8 quality, u16 height, u16 width, u16 z height,
    u16 z width, u8 number of strings, then per string a u32 length and the bytes.
    """

    name = "hyperprior-untrained"
    label = "bmshj2018-hyperprior (untrained, speed only)"
    rd = False

    def __init__(self) -> None:
        try:
            import compressai  # noqa: F401
            import torch  # noqa: F401
        except ImportError as exc:
            raise CodecUnavailable("hyperprior-untrained: compressai/torch not importable") from exc

    @property
    def description(self) -> str:
        import compressai
        import torch

        return (f"CompressAI {compressai.__version__} bmshj2018-hyperprior with UNTRAINED "
                f"(random) weights, torch {torch.__version__}: speed only, not an RD result; "
                "setting = zoo quality")

    def settings(self) -> list[Setting]:
        return list(range(1, 9))

    def prepare(self, setting: Setting) -> None:
        self._check(setting)
        _hyperprior(int(setting))

    @staticmethod
    def _check(setting: Setting) -> int:
        if int(setting) != setting or int(setting) not in range(1, 9):
            raise BenchmarkError(f"hyperprior-untrained: quality must be 1..8, got {setting!r}")
        return int(setting)

    def encode(self, img: np.ndarray, setting: Setting) -> bytes:
        quality = self._check(setting)
        strings, (z_h, z_w) = compressai_compress(_hyperprior(quality), img, self.name)
        height, width = img.shape[:2]
        return pack_strings(_HEADER.pack(_MAGIC, quality, height, width, z_h, z_w, len(strings)), strings)

    def decode(self, data: bytes) -> np.ndarray:
        if len(data) < _HEADER.size:
            raise BenchmarkError("hyperprior-untrained: truncated header")
        magic, quality, height, width, z_h, z_w, count = _HEADER.unpack_from(data)
        if magic != _MAGIC or quality not in range(1, 9):
            raise BenchmarkError("hyperprior-untrained: not a file of this adapter")
        strings = unpack_strings(data, _HEADER.size, count, self.name)
        return compressai_decompress(_hyperprior(quality), strings, (z_h, z_w), (height, width), self.name)


# ------------------------------------------------------------------ shared by the CompressAI adapters
def compressai_compress(model: Any, img: np.ndarray, name: str) -> tuple[list[bytes], tuple[int, int]]:
    """(H, W, 3) uint8 -> (one string per entropy model, latent shape) from ``model.compress``.

    The image is padded (replicate, centred) to a multiple of ``model.downsampling_factor``.
    """
    import torch
    import torch.nn.functional as F
    from compressai.ops import compute_padding

    height, width = img.shape[:2]
    if max(height, width) > 0xFFFF:
        raise BenchmarkError(f"{name}: image sides must be below 65536 pixels")
    x = torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    pad, _ = compute_padding(height, width, min_div=model.downsampling_factor)
    x = F.pad(x, pad, mode="replicate")
    with torch.inference_mode():
        out = model.compress(x)
    return [s[0] for s in out["strings"]], tuple(int(v) for v in out["shape"])


def compressai_decompress(model: Any, strings: list[list[bytes]], shape: tuple[int, int],
                          size: tuple[int, int], name: str) -> np.ndarray:
    """``model.decompress`` -> (H, W, 3) uint8, the padding of :func:`compressai_compress` cropped off."""
    import torch
    import torch.nn.functional as F
    from compressai.ops import compute_padding

    height, width = size
    _, unpad = compute_padding(height, width, min_div=model.downsampling_factor)
    try:
        with torch.inference_mode():
            x_hat = model.decompress(strings, torch.Size(shape))["x_hat"]
    except (AssertionError, RuntimeError, ValueError) as exc:
        raise BenchmarkError(f"{name}: cannot decode: {exc}") from exc
    x_hat = F.pad(x_hat, unpad)
    if tuple(x_hat.shape[-2:]) != (height, width):
        raise BenchmarkError(f"{name}: decoded {tuple(x_hat.shape[-2:])}, header says {(height, width)}")
    return x_hat[0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def pack_strings(header: bytes, strings: list[bytes]) -> bytes:
    """``header`` followed by each string as a u32 big-endian length and its bytes."""
    return header + b"".join(_LENGTH.pack(len(s)) + s for s in strings)


def unpack_strings(data: bytes, offset: int, count: int, name: str) -> list[list[bytes]]:
    """The ``count`` strings written by :func:`pack_strings` after ``offset``; no byte may be left over."""
    pos, strings = offset, []
    for _ in range(count):
        if pos + _LENGTH.size > len(data):
            raise BenchmarkError(f"{name}: truncated string length")
        (n,) = _LENGTH.unpack_from(data, pos)
        pos += _LENGTH.size
        if pos + n > len(data):
            raise BenchmarkError(f"{name}: truncated string")
        strings.append([data[pos:pos + n]])
        pos += n
    if pos != len(data):
        raise BenchmarkError(f"{name}: trailing bytes")
    return strings
