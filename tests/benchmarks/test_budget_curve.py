"""The budget curve's log reading and rate interpolation (the curve itself needs the committed logs and ../shared)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vqz.benchmarks.budget_curve import BASELINE_COLUMNS, _rows, psnr_at


def test_rows_take_a_header_or_the_given_columns_and_keep_the_last_row_of_a_step(tmp_path):
    with_header = tmp_path / "a.csv"
    with_header.write_text("step,val_psnr\n250,20.0\n500,21.0\n500,21.5\n")
    assert [(r["step"], r["val_psnr"]) for r in _rows(with_header)] == [("250", "20.0"), ("500", "21.5")]
    bare = tmp_path / "b.csv"
    bare.write_text("750,0.0001,1,2,0.5,3,25,10,26.5,0.55\n250,0.0001,1,2,0.5,3,25,10,24.0,0.52\n")
    rows = _rows(bare, BASELINE_COLUMNS)
    assert [r["step"] for r in rows] == ["250", "750"] and rows[1]["val_bpp"] == "0.55"


def test_psnr_at_interpolates_in_log_rate():
    rates, psnrs = np.array([0.1, 0.4]), np.array([20.0, 26.0])
    assert psnr_at(0.2, rates, psnrs) == pytest.approx(23.0)  # halfway in log-rate
    assert psnr_at(0.1, rates, psnrs) == pytest.approx(20.0)
    assert math.isclose(psnr_at(0.05, rates, psnrs), 20.0)  # clamped outside the curve
