"""The options of an encode, checked once for the API, the CLI and the Pillow plugin.

:class:`EncodeOptions` holds what a caller asks for (a quality level or one rate-control target, the
encoder effort, which metadata to strip, sRGB conversion, the decompression-bomb guard) and refuses a
nonsensical combination when it is built, with ``ValueError`` naming the option (``TypeError`` for a
quality or size that is not an integer); what needs the model (the quality's range) is checked by
:meth:`EncodeOptions.check_quality` on the command line, by the pipeline (``ImageError``) in the API.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

from vqz.codec.metadata import STRIP_CHOICES
from vqz.codec.search import check_effort

__all__ = ["DEFAULT_QUALITY", "EncodeOptions", "OptionError"]

#: Four stages plus a residual layer of step 42 (codec/levels.py): on the held-out split 0.59 bpp and
#: 28.8 dB, against 0.47 bpp and 27.4 dB for the former default (four stages alone).
DEFAULT_QUALITY = 6


class OptionError(ValueError):
    """A bad encode option; ``option`` names it as the command line spells it (e.g. ``--effort``)."""

    def __init__(self, message: str, option: str) -> None:
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class EncodeOptions:
    """What to encode for. At most one of ``quality`` and the targets; none means ``DEFAULT_QUALITY``
    (:attr:`fixed_quality`). ``effort`` (1..4) goes with a fixed quality only."""

    quality: int | None = None
    target_bpp: float | None = None
    target_psnr: float | None = None
    target_size: int | None = None
    effort: int = 1
    strip: tuple[str, ...] = field(default=())
    srgb: bool = False

    def __post_init__(self) -> None:
        given = [name for name in ("quality", "target_bpp", "target_psnr", "target_size") if getattr(self, name) is not None]
        if len(given) > 1:
            raise OptionError("give at most one of quality, target_bpp, target_psnr and target_size", "--quality")
        if self.quality is not None:
            object.__setattr__(self, "quality", operator.index(self.quality))  # TypeError for 2.0 or "2"
        if self.target_size is not None:
            object.__setattr__(self, "target_size", operator.index(self.target_size))
        if self.target_size is not None and self.target_size < 1:
            raise OptionError(f"target_size must be a positive number of bytes, got {self.target_size}", "--target-size")
        for name, option in (("target_bpp", "--target-bpp"), ("target_psnr", "--target-psnr")):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0):
                raise OptionError(f"{name} must be a positive number, got {value!r}", option)  # also refuses nan
        try:
            object.__setattr__(self, "effort", check_effort(self.effort))
        except ValueError as exc:
            raise OptionError(str(exc), "--effort") from None
        if self.effort != 1 and given and given[0] != "quality":
            raise OptionError("effort applies to a fixed quality; rate control (target_*) uses effort 1", "--effort")
        strip = (self.strip,) if isinstance(self.strip, str) else tuple(self.strip or ())
        if set(strip) - set(STRIP_CHOICES):
            raise OptionError(f"strip takes {', '.join(STRIP_CHOICES)}, got {strip!r}", "--strip")
        object.__setattr__(self, "strip", strip)

    @property
    def fixed_quality(self) -> int | None:
        """The level to code (``DEFAULT_QUALITY`` when nothing was asked), or None for a rate-control target."""
        if self.target_bpp is None and self.target_psnr is None and self.target_size is None:
            return DEFAULT_QUALITY if self.quality is None else self.quality
        return None

    def check_quality(self, levels: range) -> None:
        """:class:`OptionError` when the fixed quality is not one of the model's ``levels``."""
        quality = self.fixed_quality
        if quality is not None and quality not in levels:
            raise OptionError(f"quality must be an integer in {levels.start}..{levels.stop - 1}, got {quality!r}",
                              "--quality")

