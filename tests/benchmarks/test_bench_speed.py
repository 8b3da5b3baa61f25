"""Claims about the speed/memory measurement (small sizes and a fast codec, so it stays quick)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from vqz.benchmarks.errors import BenchmarkError
from vqz.benchmarks.speed import measure_speed, parse_sizes, run_speed, speed_markdown, synthetic_image


def test_synthetic_image_is_deterministic_and_textured() -> None:
    a = synthetic_image(300, 260)
    assert a.shape == (260, 300, 3) and a.dtype == np.uint8
    assert np.array_equal(a, synthetic_image(300, 260))
    assert a.std() > 20 and len(np.unique(a)) > 100
    assert not np.array_equal(a, synthetic_image(300, 260, seed=1))


def test_sizes_parse_and_bad_ones_are_refused() -> None:
    assert parse_sizes("3840x2160, 7680X4320") == [(3840, 2160), (7680, 4320)]
    for bad in ("4k", "10x10", "", "3840x"):
        with pytest.raises(BenchmarkError):
            parse_sizes(bad)


@pytest.mark.slow  # subprocess workers (seconds)
def test_speed_measures_time_and_the_worker_peak_memory_in_a_subprocess() -> None:
    result = measure_speed("jpeg", "50", 320, 240, timeout_s=300)
    assert result.error is None, result.error
    assert result.bytes and result.bpp == pytest.approx(result.bytes * 8 / (320 * 240))
    assert result.encode_s is not None and result.encode_s > 0 and result.decode_s is not None
    # a Python worker with numpy and Pillow loaded is tens of MiB at least
    assert result.peak_rss_mib is not None and result.peak_rss_mib > 20
    assert result.baseline_rss_mib is not None and result.coding_rss_mib is not None
    assert result.threads is not None and result.threads >= 1


@pytest.mark.slow  # subprocess workers (seconds)
def test_a_failing_worker_is_reported_not_raised() -> None:
    result = measure_speed("jpeg", "33", 64, 64, timeout_s=300)  # 33 is not a JPEG setting
    assert result.encode_s is None
    assert result.error is not None and "worker exit status 1" in result.error and "KeyError" in result.error


def test_run_speed_refuses_a_quality_that_a_codec_lacks(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="not a setting of jpeg"):
        run_speed(["jpeg"], [(64, 64)], tmp_path, quality=3)


def test_run_speed_writes_json_and_markdown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vqz.benchmarks import speed

    calls = []

    def fake(codec: str, setting: str, width: int, height: int, repeats: int, timeout_s: float):
        calls.append((codec, setting, width, height))
        return speed.SpeedResult(codec, setting, width, height, 100, 0.5, 1.0, 2.0, 300.0, 200.0, 100.0, 2)

    monkeypatch.setattr(speed, "measure_speed", fake)
    results = run_speed(["jpeg", "webp"], [(64, 64), (128, 64)], tmp_path)
    assert [c[:2] for c in calls] == [("jpeg", "50"), ("webp", "50")] * 2  # middle settings
    assert len(json.loads((tmp_path / "speed.json").read_text())) == 4 == len(results)
    md = (tmp_path / "speed.md").read_text()
    assert "| jpeg | 50 | 64x64 | 0.5000 | 1.00 | 2.00 | 300 | 100 | 2 |  |" in md
    assert speed_markdown(results) == md


@pytest.mark.slow  # waits for a timeout in a subprocess
def test_a_measurement_past_its_timeout_is_reported_and_leaves_no_worker_behind() -> None:
    import os
    import time

    started = time.monotonic()
    # the worker imports torch and compressai and codes 2048x2048: far more than 3 s. The
    # worker holds the probe's pipes, so if it outlived the probe we would wait for it here.
    result = measure_speed("hyperprior-untrained", "1", 2048, 2048, timeout_s=3)
    assert result.error == "timed out after 3 s"
    assert time.monotonic() - started < 15
    if not os.path.isdir("/proc"):
        return

    def running_workers() -> list[str]:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
                state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if b"vqz.benchmarks.speed" in cmdline and b"--width\x002048\x00--height\x002048" in cmdline and state != "Z":
                found.append(pid)
        return found

    deadline = time.monotonic() + 1.5
    while running_workers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert running_workers() == []
