"""Claims about the benchmark metrics: PSNR, MS-SSIM, MS-SSIM in dB and BD-rate."""

from __future__ import annotations

import math

import numpy as np
import pytest
from vqz.benchmarks.errors import BenchmarkError
from vqz.benchmarks.metrics import MS_SSIM_MIN_SIDE, bd_rate, ms_ssim, ms_ssim_db, ms_ssim_is_single_scale, psnr

from vqz.errors import VqzError


def _ramp(height: int = 48, width: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([(x * 3) % 200 + 20, (y * 5) % 200 + 20, ((x + y) * 2) % 200 + 20], axis=2).astype(np.uint8)


def test_psnr_of_a_constant_difference_of_one_is_48_13_db() -> None:
    a = _ramp()
    assert psnr(a, a + 1) == pytest.approx(10 * math.log10(255**2), abs=1e-9)
    assert psnr(a, a + 1) == pytest.approx(48.1308, abs=1e-4)


def test_psnr_matches_the_textbook_formula_on_a_known_error_pattern() -> None:
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 48  # one error of 48 in 48 values -> MSE 48
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 48.0), abs=1e-9)


def test_psnr_of_identical_images_is_infinite() -> None:
    a = _ramp()
    assert psnr(a, a.copy()) == math.inf


def test_psnr_does_not_wrap_around_in_uint8() -> None:
    a = np.zeros((8, 8, 3), np.uint8)
    b = np.full((8, 8, 3), 255, np.uint8)
    assert psnr(a, b) == pytest.approx(0.0, abs=1e-12)
    assert psnr(b, a) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    "b",
    [np.zeros((48, 64, 3), np.float32), np.zeros((48, 64), np.uint8), np.zeros((48, 65, 3), np.uint8)],
    ids=["float", "gray", "shape"],
)
def test_psnr_rejects_bad_inputs_with_a_vqz_error(b: np.ndarray) -> None:
    with pytest.raises(VqzError):
        psnr(_ramp(), b)


def test_ms_ssim_is_one_for_identical_images_and_drops_with_noise() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (192, 200, 3), dtype=np.uint8)
    assert ms_ssim(a, a.copy()) == pytest.approx(1.0, abs=1e-6)
    noisy = np.clip(a.astype(int) + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    assert ms_ssim(a, noisy) < 0.99


def test_ms_ssim_uses_five_scales_from_161_pixels_and_single_scale_below() -> None:
    assert MS_SSIM_MIN_SIDE == 161
    assert ms_ssim_is_single_scale(160, 500)
    assert not ms_ssim_is_single_scale(161, 161)
    import torch
    from pytorch_msssim import ssim

    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.normal(0, 10, a.shape), 0, 255).astype(np.uint8)
    expected = ssim(torch.tensor(a).permute(2, 0, 1)[None].float(), torch.tensor(b).permute(2, 0, 1)[None].float(),
                    data_range=255).item()
    assert ms_ssim(a, b) == pytest.approx(expected, abs=1e-6)


def test_ms_ssim_restores_the_torch_thread_count() -> None:
    import torch

    before = torch.get_num_threads()
    ms_ssim(_ramp(), _ramp())
    assert torch.get_num_threads() == before


def test_ms_ssim_refuses_images_smaller_than_its_window() -> None:
    a = np.zeros((10, 40, 3), np.uint8)
    with pytest.raises(BenchmarkError, match="11 pixels"):
        ms_ssim(a, a)


def test_ms_ssim_db_is_minus_ten_log10_of_one_minus_value() -> None:
    assert ms_ssim_db(0.9) == pytest.approx(10.0)
    assert ms_ssim_db(0.99) == pytest.approx(20.0)
    assert ms_ssim_db(1.0) == math.inf
    np.testing.assert_allclose(ms_ssim_db([0.9, 0.999]), [10.0, 30.0])


_RATE = np.array([0.15, 0.3, 0.55, 0.9, 1.4, 2.1])
_PSNR = np.array([27.0, 29.6, 32.1, 34.4, 36.9, 39.2])


@pytest.mark.parametrize("factor, expected", [(0.8, -20.0), (1.25, 25.0), (1.0, 0.0), (0.5, -50.0)])
def test_bd_rate_of_a_curve_against_itself_scaled_in_rate_is_the_scale(factor: float, expected: float) -> None:
    result = bd_rate(_RATE, _PSNR, _RATE * factor, _PSNR)
    assert result.percent == pytest.approx(expected, abs=1e-6)
    assert (result.low, result.high) == (pytest.approx(27.0), pytest.approx(39.2))


def test_bd_rate_integrates_only_over_the_overlapping_quality_range() -> None:
    shifted = _PSNR + 1.5  # better quality at the same rate: the test codec saves bits
    result = bd_rate(_RATE, _PSNR, _RATE, shifted)
    assert (result.low, result.high) == (pytest.approx(28.5), pytest.approx(39.2))
    assert result.percent < -10.0
    reverse = bd_rate(_RATE, shifted, _RATE, _PSNR)
    assert reverse.percent > 10.0


def test_bd_rate_does_not_depend_on_point_order() -> None:
    order = np.array([3, 0, 5, 1, 4, 2])
    a = bd_rate(_RATE, _PSNR, _RATE * 0.9, _PSNR + 0.2)
    b = bd_rate(_RATE[order], _PSNR[order], (_RATE * 0.9)[::-1], (_PSNR + 0.2)[::-1])
    assert a.percent == pytest.approx(b.percent, abs=1e-9)


def test_bd_rate_rejects_disjoint_curves_too_few_points_and_bad_rates() -> None:
    with pytest.raises(BenchmarkError, match="do not overlap"):
        bd_rate(_RATE, _PSNR, _RATE, _PSNR + 20)
    with pytest.raises(BenchmarkError, match="at least 4"):
        bd_rate(_RATE[:3], _PSNR[:3], _RATE, _PSNR)
    with pytest.raises(BenchmarkError, match="positive"):
        bd_rate(_RATE - 1.0, _PSNR, _RATE, _PSNR)
    with pytest.raises(BenchmarkError, match="non-finite"):
        bd_rate(_RATE, np.append(_PSNR[:-1], np.inf), _RATE, _PSNR)
