"""Rate control: pick the quality level for a target size (bits per pixel) or a target PSNR.

It rests on one invariant of the format (docs/FORMAT.md, :mod:`vqz.codec.pipeline`): the
residual quantizer is greedy and each stage has its own payload, so the file at quality
``q`` holds exactly the first ``q`` payloads of the file at the maximum quality. One encode
at the maximum quality therefore yields every level: a level is its header (with
``quality = q``) repacked around a prefix of the payloads, and its exact size is known
without encoding again. ``tests/test_rate_control.py`` checks that a repacked prefix is
byte-identical to a direct encode at that quality.

* ``--target-bpp X`` (like cwebp's ``-size``): the highest quality whose whole file is at
  most ``X`` bits per pixel; quality 1 if none is (``met`` is then False).
* ``--target-psnr Y`` (like cwebp's ``-psnr``): the smallest file whose decoded image reaches
  ``Y`` dB PSNR (RGB, 8 bits); a binary search over the levels, so about
  ``1 + log2(levels)`` decodes; the maximum quality if none does (``met`` is then False).
  PSNR rises with the number of stages for any sensible model; should it not, the search
  still returns a level that meets the target, though not necessarily the smallest one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from vqz.bitstream import pack, unpack_file
from vqz.codec.metadata import Metadata, attach

if TYPE_CHECKING:
    from vqz.codec.weights import LoadedWeights

__all__ = ["QualityLadder", "RateChoice", "choose_for_bpp", "choose_for_psnr", "encode_for_target", "encode_image",
           "psnr"]


def psnr(reference: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR in dB of two (H, W, 3) uint8 images over all pixels and channels; ``inf`` if equal."""
    if reference.shape != decoded.shape:
        raise ValueError(f"images differ in shape: {reference.shape} vs {decoded.shape}")
    diff = reference.astype(np.float64) - decoded.astype(np.float64)
    mse = float(np.mean(diff * diff))
    return math.inf if mse == 0.0 else 10.0 * math.log10(255.0**2 / mse)


@dataclass(frozen=True)
class RateChoice:
    """The level rate control settled on.

    ``data`` is the complete ``.vqz`` file (its header's quality field is ``quality``);
    ``bpp`` counts every byte of it; ``psnr`` (dB) is measured only by the PSNR search;
    ``met`` is False when no level met the target and the fallback level was used.
    """

    data: bytes
    quality: int
    bpp: float
    psnr: float | None
    met: bool


class QualityLadder:
    """Every quality level of one image, from a single encode at the maximum quality.

    ``rgb`` is the (H, W, 3) uint8 image. Files and decoded PSNRs are computed on demand
    and cached, so asking for the same level twice costs nothing.
    """

    def __init__(self, weights: LoadedWeights, rgb: np.ndarray, alpha: np.ndarray | None = None,
                 metadata: Metadata | None = None) -> None:
        from vqz.codec.pipeline import encode_array, quality_range

        self.weights = weights
        self.rgb = rgb
        self.levels = quality_range(weights)
        self.metadata = metadata or Metadata()
        full, _ = encode_array(weights, rgb, self.levels[-1], alpha)
        full = attach(full, self.metadata)
        parsed = unpack_file(full)
        self._header, self._payloads, self._alpha = parsed.header, parsed.payloads, parsed.alpha
        self._files: dict[int, bytes] = {self.levels[-1]: full}
        self._psnr: dict[int, float] = {}

    @property
    def pixels(self) -> int:
        return self._header.width * self._header.height

    def file(self, quality: int) -> bytes:
        """The complete ``.vqz`` file at ``quality``: the first ``quality`` payloads, repacked."""
        if quality not in self.levels:
            raise ValueError(f"quality must be in {self.levels.start}..{self.levels.stop - 1}, got {quality}")
        if quality not in self._files:
            self._files[quality] = pack(replace(self._header, quality=quality), self._payloads[:quality], self._alpha,
                                        **self.metadata.chunks())
        return self._files[quality]

    def bpp(self, quality: int) -> float:
        """Bits per pixel of the whole file at ``quality`` (header and CRC included)."""
        return 8 * len(self.file(quality)) / self.pixels

    def psnr(self, quality: int) -> float:
        """PSNR (dB) of the file at ``quality`` decoded, against the original image."""
        if quality not in self._psnr:
            from vqz.codec.pipeline import decode_bytes

            self._psnr[quality] = psnr(self.rgb, decode_bytes(self.weights, self.file(quality)))
        return self._psnr[quality]


def choose_for_bpp(ladder: QualityLadder, target_bpp: float) -> RateChoice:
    """The highest quality whose file is at most ``target_bpp``; quality 1 if none is."""
    if not target_bpp > 0:
        raise ValueError(f"target_bpp must be positive, got {target_bpp}")
    fitting = [q for q in ladder.levels if ladder.bpp(q) <= target_bpp]
    quality = max(fitting) if fitting else ladder.levels[0]
    return RateChoice(ladder.file(quality), quality, ladder.bpp(quality), None, bool(fitting))


def choose_for_psnr(ladder: QualityLadder, target_psnr: float) -> RateChoice:
    """The smallest file whose decoded image reaches ``target_psnr`` dB; the maximum if none does.

    Binary search, assuming PSNR does not fall as stages are added; the level returned
    always reaches the target (it was measured), whatever the model.
    """
    if not target_psnr > 0:
        raise ValueError(f"target_psnr must be positive, got {target_psnr}")
    low, high = ladder.levels[0], ladder.levels[-1]
    if ladder.psnr(high) < target_psnr:
        return RateChoice(ladder.file(high), high, ladder.bpp(high), ladder.psnr(high), False)
    while low < high:  # invariant: psnr(high) >= target
        middle = (low + high) // 2
        if ladder.psnr(middle) >= target_psnr:
            high = middle
        else:
            low = middle + 1
    return RateChoice(ladder.file(high), high, ladder.bpp(high), ladder.psnr(high), True)


def encode_for_target(
    weights: LoadedWeights, rgb: np.ndarray, *, target_bpp: float | None = None, target_psnr: float | None = None,
    alpha: np.ndarray | None = None, metadata: Metadata | None = None,
) -> RateChoice:
    """Encode (H, W, 3) uint8 ``rgb`` (+ optional alpha plane and metadata chunks, counted in
    the size) for exactly one of ``target_bpp`` or ``target_psnr``."""
    if (target_bpp is None) == (target_psnr is None):
        raise ValueError("give exactly one of target_bpp and target_psnr")
    ladder = QualityLadder(weights, rgb, alpha, metadata)
    if target_bpp is not None:
        return choose_for_bpp(ladder, target_bpp)
    return choose_for_psnr(ladder, target_psnr)


def encode_image(
    weights: LoadedWeights, rgb: np.ndarray, alpha: np.ndarray | None = None, metadata: Metadata | None = None, *,
    quality: int | None = None, target_bpp: float | None = None, target_psnr: float | None = None,
) -> RateChoice:
    """Encode at a fixed ``quality`` or for one target (the entry point of the CLI and the API);
    ``metadata`` travels in the file's chunks and counts in its size."""
    if quality is None:
        return encode_for_target(weights, rgb, target_bpp=target_bpp, target_psnr=target_psnr, alpha=alpha,
                                 metadata=metadata)
    from vqz.codec.pipeline import encode_array

    data = attach(encode_array(weights, rgb, quality, alpha)[0], metadata)
    return RateChoice(data, quality, 8 * len(data) / (rgb.shape[0] * rgb.shape[1]), None, True)
