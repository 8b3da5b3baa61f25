"""Classic codecs through Pillow: JPEG, WebP, AVIF, JPEG 2000 and JPEG XL.

Every adapter encodes the RGB array with ``Image.save`` into memory and decodes with
``Image.open(...).convert("RGB")``. Options that matter for rate-distortion are fixed here
and stated in each codec's :attr:`description`:

* JPEG: libjpeg(-turbo) via Pillow, **4:2:0 chroma subsampling (Pillow's default)**,
  standard Huffman tables (``optimize=False``, Pillow's default), baseline.
* WebP: libwebp lossy, ``method=6`` (slowest, best compression), 4:2:0 (WebP lossy is
  always 4:2:0).
* AVIF: libavif via Pillow 11.3+ (``PIL.features.check("avif")``), 4:2:0 (Pillow's default),
  ``speed=6`` (Pillow's default), full range, ``max_threads=benchmark_threads()``.
* JPEG 2000: OpenJPEG, irreversible 9/7 wavelet, RGB->YCbCr multiple component transform
  (``mct=1``; Pillow's default 0 codes R, G, B independently and loses ~5 dB), one quality
  layer at the target rate
  (``quality_mode="rates"``, compression ratio ``24 / bpp``), raw codestream (``.j2k``,
  no JP2 box overhead). Settings are *target* bpp; the measured bpp is what counts.
* JPEG XL: libjxl via the ``pillow-jxl-plugin`` package, ``effort=7`` (default), raw
  codestream (no container), ``num_threads=benchmark_threads()``.
"""

from __future__ import annotations

import io
from typing import Any, ClassVar

import numpy as np
from PIL import Image, features
from vqz.benchmarks.adapter import Codec, Setting, benchmark_threads
from vqz.benchmarks.errors import BenchmarkError, CodecUnavailable

__all__ = ["Jpeg2000Codec", "JpegCodec", "JpegXlCodec", "PillowCodec", "WebpCodec", "AvifCodec"]


def _to_image(img: np.ndarray) -> Image.Image:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise BenchmarkError("codec input must be an (H, W, 3) uint8 array")
    return Image.fromarray(np.ascontiguousarray(img))


class PillowCodec(Codec):
    """A codec whose encoder and decoder are Pillow's ``save``/``open`` for one format."""

    pil_format: ClassVar[str]
    sweep: ClassVar[tuple[Setting, ...]]

    def settings(self) -> list[Setting]:
        return list(self.sweep)

    def save_options(self, setting: Setting) -> dict[str, Any]:
        """Keyword arguments of ``Image.save`` for one setting."""
        raise NotImplementedError

    def encode(self, img: np.ndarray, setting: Setting) -> bytes:
        if setting not in self.sweep:
            raise BenchmarkError(f"{self.name}: setting {setting!r} not in {list(self.sweep)}")
        buf = io.BytesIO()
        _to_image(img).save(buf, format=self.pil_format, **self.save_options(setting))
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as im:
            if im.format != self.pil_format:
                raise BenchmarkError(f"{self.name}: expected a {self.pil_format} file, got {im.format}")
            return np.asarray(im.convert("RGB"))


def _require(feature: str, codec: str) -> str:
    if not features.check(feature):
        raise CodecUnavailable(f"{codec}: this Pillow build has no {feature} support")
    return str(features.version(feature))


class JpegCodec(PillowCodec):
    """Baseline JPEG, 4:2:0; settings are Pillow quality values 5..95."""

    name = "jpeg"
    label = "JPEG"
    pil_format = "JPEG"
    sweep = (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95)

    def __init__(self) -> None:
        self._version = _require("jpg", self.name)
        turbo = features.version("libjpeg_turbo") if features.check("libjpeg_turbo") else None
        self._lib = f"libjpeg-turbo {turbo}" if turbo else f"libjpeg {self._version}"

    @property
    def description(self) -> str:
        return (f"JPEG ({self._lib}, Pillow {Image.__version__}), 4:2:0 chroma subsampling "
                "(Pillow default), standard Huffman tables; setting = quality")

    def save_options(self, setting: Setting) -> dict[str, Any]:
        return {"quality": int(setting), "subsampling": "4:2:0", "optimize": False}


class WebpCodec(PillowCodec):
    """Lossy WebP, method 6; settings are quality values 5..95."""

    name = "webp"
    label = "WebP"
    pil_format = "WEBP"
    sweep = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)

    def __init__(self) -> None:
        self._version = _require("webp", self.name)

    @property
    def description(self) -> str:
        return (f"WebP lossy (libwebp {self._version}, Pillow {Image.__version__}), method=6, "
                "4:2:0; setting = quality")

    def save_options(self, setting: Setting) -> dict[str, Any]:
        return {"quality": int(setting), "method": 6, "lossless": False}


class AvifCodec(PillowCodec):
    """AVIF via Pillow's built-in plugin, 4:2:0, speed 6; settings are quality values 10..95."""

    name = "avif"
    label = "AVIF"
    pil_format = "AVIF"
    sweep = (10, 20, 30, 40, 50, 60, 70, 80, 90, 95)

    def __init__(self) -> None:
        if "avif" not in features.modules:
            raise CodecUnavailable(
                f"avif: Pillow {Image.__version__} has no AVIF plugin (needs Pillow >= 11.3)"
            )
        self._version = _require("avif", self.name)
        self._threads = benchmark_threads()

    @property
    def description(self) -> str:
        return (f"AVIF (libavif {self._version}, Pillow {Image.__version__}), 4:2:0, speed=6, "
                f"{self._threads} threads; setting = quality")

    def save_options(self, setting: Setting) -> dict[str, Any]:
        return {"quality": int(setting), "subsampling": "4:2:0", "speed": 6,
                "max_threads": self._threads}


class Jpeg2000Codec(PillowCodec):
    """JPEG 2000 (OpenJPEG), 9/7 wavelet, one layer; settings are target bpp."""

    name = "jpeg2000"
    label = "JPEG 2000"
    pil_format = "JPEG2000"
    sweep = (0.05, 0.1, 0.15, 0.25, 0.4, 0.6, 0.8, 1.0, 1.5, 2.0)

    def __init__(self) -> None:
        self._version = _require("jpg_2000", self.name)

    @property
    def description(self) -> str:
        return (f"JPEG 2000 (OpenJPEG {self._version}, Pillow {Image.__version__}), irreversible "
                "9/7 wavelet, YCbCr transform (mct=1), one quality layer, raw codestream; setting = target bpp "
                "(quality_mode='rates', ratio 24/bpp)")

    def save_options(self, setting: Setting) -> dict[str, Any]:
        return {"quality_mode": "rates", "quality_layers": [24.0 / float(setting)],
                "irreversible": True, "mct": 1, "no_jp2": True}


class JpegXlCodec(PillowCodec):
    """JPEG XL via ``pillow-jxl-plugin``; settings are quality values 10..95."""

    name = "jpegxl"
    label = "JPEG XL"
    pil_format = "JXL"
    sweep = (10, 20, 30, 40, 50, 60, 70, 80, 90, 95)

    def __init__(self) -> None:
        try:
            import pillow_jxl  # noqa: F401  (registers the JXL plugin with Pillow)
        except ImportError as exc:
            raise CodecUnavailable(
                "jpegxl: the pillow-jxl-plugin package is not installed "
                "(pip install 'vqz[bench]')"
            ) from exc
        from importlib.metadata import version

        self._version = version("pillow-jxl-plugin")
        self._threads = benchmark_threads()

    @property
    def description(self) -> str:
        return (f"JPEG XL (libjxl via pillow-jxl-plugin {self._version}), effort=7, raw codestream, "
                f"{self._threads} threads; setting = quality")

    def save_options(self, setting: Setting) -> dict[str, Any]:
        return {"quality": int(setting), "effort": 7, "lossless": False,
                "num_threads": self._threads, "use_container": False}
