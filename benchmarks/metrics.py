"""Image quality metrics and the Bjøntegaard delta rate.

Images are ``(H, W, 3)`` ``uint8`` numpy arrays (RGB, data range 255). Metrics are computed
on the full RGB image, as CompressAI's ``psnr-rgb`` / ``ms-ssim-rgb`` are.

MS-SSIM needs at least 161 pixels on the shorter side (five scales of an 11-tap window:
``(11 - 1) * 2**4 = 160`` must be smaller than the side). For smaller images
:func:`ms_ssim` falls back to single-scale SSIM (``pytorch_msssim.ssim``, same window and
constants) instead of padding: padding would invent image content that the codec never saw
and bias the score towards 1. The fallback is reported by :func:`ms_ssim_is_single_scale`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from vqz.benchmarks.errors import BenchmarkError

__all__ = [
    "MS_SSIM_MIN_SIDE",
    "BdRate",
    "bd_rate",
    "detail_energy",
    "detail_ratio",
    "ms_ssim",
    "ms_ssim_db",
    "ms_ssim_is_single_scale",
    "psnr",
]

DATA_RANGE = 255.0
"""Peak value of an 8-bit channel."""

WIN_SIZE = 11
"""Gaussian window of SSIM, in pixels (pytorch_msssim's default)."""

MS_SSIM_MIN_SIDE = (WIN_SIZE - 1) * 2**4 + 1
"""Smallest image side, in pixels, on which five-scale MS-SSIM is defined (161)."""


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 3 or x.shape[2] != 3:
            got = f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}"
            raise BenchmarkError(f"`{name}` must be an (H, W, 3) uint8 array, got {got}")
    if a.shape != b.shape:
        raise BenchmarkError(f"images differ in shape: {a.shape} vs {b.shape}")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two RGB images, in dB (data range 255).

    The mean squared error is taken over all pixels and the three channels at once
    (float64). Identical images give ``math.inf``.
    """
    _check_pair(a, b)
    diff = a.astype(np.float64) - b.astype(np.float64)
    mse = float(np.mean(diff * diff))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(DATA_RANGE**2 / mse)


def ms_ssim_is_single_scale(height: int, width: int) -> bool:
    """True when :func:`ms_ssim` falls back to single-scale SSIM for this size (pixels)."""
    return min(height, width) < MS_SSIM_MIN_SIDE


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Multi-scale SSIM of two RGB images, unitless in [0, 1] (1 = identical).

    ``pytorch_msssim.ms_ssim`` with ``data_range=255``, five scales, 11-tap Gaussian window
    (sigma 1.5), averaged over the three channels, in float32 as CompressAI's evaluation
    does. It runs on one torch thread (restored afterwards): faster for these small
    convolutions, especially on a busy machine. Images with a side under 161 pixels use
    single-scale ``pytorch_msssim.ssim`` (see the module docstring); sides under 11 pixels
    raise :class:`BenchmarkError`.
    """
    _check_pair(a, b)
    height, width = a.shape[:2]
    if min(height, width) < WIN_SIZE:
        raise BenchmarkError(
            f"SSIM needs at least {WIN_SIZE} pixels on each side, image is {width}x{height}"
        )
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim
    from pytorch_msssim import ssim as _ssim

    def to_tensor(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x.astype(np.float32)).permute(2, 0, 1)[None]

    x, y = to_tensor(a), to_tensor(b)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # these small convolutions are slower with more threads
    try:
        with torch.no_grad():
            if ms_ssim_is_single_scale(height, width):
                value = _ssim(x, y, data_range=DATA_RANGE, win_size=WIN_SIZE)
            else:
                value = _ms_ssim(x, y, data_range=DATA_RANGE, win_size=WIN_SIZE)
    finally:
        torch.set_num_threads(threads)
    return float(value.item())


def ms_ssim_db(value: float | ArrayLike) -> float | NDArray[np.float64]:
    """MS-SSIM expressed in dB: ``-10 * log10(1 - value)``; 1 maps to ``inf``.

    Accepts a scalar (returns ``float``) or an array (returns a float64 array).
    """
    v = np.asarray(value, dtype=np.float64)
    with np.errstate(divide="ignore"):
        out = -10.0 * np.log10(1.0 - v)
    return float(out) if out.ndim == 0 else out


class BdRate(NamedTuple):
    """A Bjøntegaard delta rate and the distortion interval it was integrated over.

    ``percent``: average rate difference of the test curve against the anchor at equal
    quality, in percent (negative = the test codec needs fewer bits). ``low``/``high``:
    the overlapping distortion range, in the distortion's unit (dB for PSNR).
    """

    percent: float
    low: float
    high: float


def _curve(rate: ArrayLike, dist: ArrayLike, which: str) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    r = np.asarray(rate, dtype=np.float64).ravel()
    d = np.asarray(dist, dtype=np.float64).ravel()
    if r.shape != d.shape:
        raise BenchmarkError(f"{which} curve: {r.size} rates but {d.size} distortions")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(d))):
        raise BenchmarkError(f"{which} curve has non-finite values")
    if np.any(r <= 0):
        raise BenchmarkError(f"{which} curve: rates must be positive")
    if np.unique(d).size < 4:
        raise BenchmarkError(
            f"{which} curve needs at least 4 distinct distortion values for a cubic fit, "
            f"got {np.unique(d).size}"
        )
    return r, d


def bd_rate(r1: ArrayLike, d1: ArrayLike, r2: ArrayLike, d2: ArrayLike) -> BdRate:
    """Bjøntegaard delta rate of curve 2 (test) against curve 1 (anchor), in percent.

    Rates in any positive unit (bpp), distortions in a quality unit where higher is better
    (PSNR dB, MS-SSIM dB). ``log(rate)`` is fitted as a cubic polynomial of the distortion
    for each curve (least squares, ``numpy.polyfit``), both fits are integrated over the
    overlapping distortion range ``[max(min d1, min d2), min(max d1, max d2)]``, and the
    mean log-rate difference ``m`` is reported as ``(exp(m) - 1) * 100``.

    Raises :class:`BenchmarkError` for fewer than 4 distinct points, non-positive rates,
    non-finite values, or curves whose distortion ranges do not overlap.
    """
    ra, da = _curve(r1, d1, "anchor")
    rb, db = _curve(r2, d2, "test")
    low = max(float(da.min()), float(db.min()))
    high = min(float(da.max()), float(db.max()))
    if not high > low:
        raise BenchmarkError(
            f"distortion ranges do not overlap: anchor [{da.min():.3f}, {da.max():.3f}], "
            f"test [{db.min():.3f}, {db.max():.3f}]"
        )
    pa = np.polyint(np.polyfit(da, np.log(ra), 3))
    pb = np.polyint(np.polyfit(db, np.log(rb), 3))
    area_a = np.polyval(pa, high) - np.polyval(pa, low)
    area_b = np.polyval(pb, high) - np.polyval(pb, low)
    mean_diff = (area_b - area_a) / (high - low)
    return BdRate(percent=float((math.exp(mean_diff) - 1.0) * 100.0), low=low, high=high)


#: Gaussian sigmas (pixels) bounding the finest detail band of :func:`detail_energy`.
DETAIL_SIGMAS = (0.5, 1.0)


def _gaussian_blur(plane: np.ndarray, sigma: float) -> np.ndarray:
    """(H, W) float64 plane blurred by a separable Gaussian of ``sigma`` pixels (radius 4 sigma, reflected edges)."""
    radius = max(1, int(math.ceil(4 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    padded = np.pad(plane, radius, mode="reflect")
    rows = sum(w * padded[:, i : i + plane.shape[1]] for i, w in enumerate(taps))
    return sum(w * rows[i : i + plane.shape[0], :] for i, w in enumerate(taps))


def detail_energy(image: np.ndarray) -> float:
    """Mean square of the finest luma band of an (H, W, 3) uint8 RGB image: BT.601 luma (0-255) blurred
    at sigma 0.5 minus the same blurred at sigma 1 (:data:`DETAIL_SIGMAS`)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise BenchmarkError("`image` must be an (H, W, 3) uint8 array")
    luma = image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    band = _gaussian_blur(luma, DETAIL_SIGMAS[0]) - _gaussian_blur(luma, DETAIL_SIGMAS[1])
    return float(np.mean(band * band))


def detail_ratio(reference: np.ndarray, decoded: np.ndarray) -> float:
    """Fine-detail energy kept: :func:`detail_energy` of ``decoded`` over that of ``reference`` (1.0 keeps all
    of it; below 1 is blur, above 1 invented or amplified texture). ``nan`` for a reference without detail."""
    _check_pair(reference, decoded)
    ref = detail_energy(reference)
    return detail_energy(decoded) / ref if ref > 0 else float("nan")
