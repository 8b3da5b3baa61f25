"""Codec names on the command line -> adapters.

Names are stable (they are written into result CSVs). Adapters are built lazily and cached
per process, so a model is loaded once per worker.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from vqz.benchmarks.adapter import Codec
from vqz.benchmarks.codecs_baseline import FactorizedSameBudgetCodec, HyperpriorSameBudgetCodec
from vqz.benchmarks.codecs_learned import HyperpriorUntrainedCodec, VqzCodec, VqzFastCodec
from vqz.benchmarks.codecs_pillow import AvifCodec, Jpeg2000Codec, JpegCodec, JpegXlCodec, WebpCodec
from vqz.benchmarks.errors import BenchmarkError, CodecUnavailable

__all__ = ["CODECS", "DEFAULT_CODECS", "available", "codec_names", "get_codec", "parse_codec_list"]

CODECS: dict[str, type[Codec]] = {
    cls.name: cls
    for cls in (VqzCodec, VqzFastCodec, JpegCodec, WebpCodec, AvifCodec, Jpeg2000Codec, JpegXlCodec,
                HyperpriorUntrainedCodec, FactorizedSameBudgetCodec, HyperpriorSameBudgetCodec)
}
"""Every codec the benchmark knows, by name."""

ALIASES: dict[str, str] = {"jpg": "jpeg", "jp2": "jpeg2000", "j2k": "jpeg2000", "jxl": "jpegxl"}

DEFAULT_CODECS = "vqz,jpeg,webp"


def codec_names() -> list[str]:
    """The valid codec names, in registry order."""
    return list(CODECS)


def parse_codec_list(spec: str) -> list[str]:
    """``"vqz, JPEG,webp"`` -> ``["vqz", "jpeg", "webp"]`` (lower-cased, aliases resolved,
    duplicates dropped). ``"all"`` selects every codec. Unknown names raise
    :class:`BenchmarkError` listing the valid ones."""
    names: list[str] = []
    for raw in spec.split(","):
        token = raw.strip().lower()
        if not token:
            continue
        if token == "all":
            candidates = codec_names()
        else:
            token = ALIASES.get(token, token)
            if token not in CODECS:
                raise BenchmarkError(
                    f"unknown codec {raw.strip()!r}; valid codecs: {', '.join(codec_names())}"
                )
            candidates = [token]
        names.extend(c for c in candidates if c not in names)
    if not names:
        raise BenchmarkError(f"no codec given; valid codecs: {', '.join(codec_names())}")
    return names


@functools.cache
def get_codec(name: str) -> Codec:
    """The adapter for ``name`` (cached). Raises :class:`CodecUnavailable` if it cannot run here."""
    if name not in CODECS:
        raise BenchmarkError(f"unknown codec {name!r}; valid codecs: {', '.join(codec_names())}")
    return CODECS[name]()


def available(names: list[str], on_skip: Callable[[str, str], None]) -> list[Codec]:
    """Adapters for ``names`` that can run here; ``on_skip(name, reason)`` for the others."""
    codecs: list[Codec] = []
    for name in names:
        try:
            codecs.append(get_codec(name))
        except CodecUnavailable as exc:
            on_skip(name, str(exc))
    return codecs
