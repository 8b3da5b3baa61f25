"""Claims about the benchmark runner: CSV columns, units, resuming, parallel workers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from vqz.benchmarks.errors import BenchmarkError
from vqz.benchmarks.registry import get_codec
from vqz.benchmarks.runner import COLUMNS, Row, read_rows, run_benchmark



@pytest.fixture
def crops(kodak_crop_folder: Path) -> list[Path]:
    """64x64 crops of two Kodak images, as PNG files in their own folder."""
    return sorted(kodak_crop_folder.iterdir())


def _csv_header(path: Path) -> list[str]:
    with path.open(newline="") as f:
        return next(csv.reader(f))


def test_the_csv_has_exactly_the_documented_columns_and_one_row_per_setting_and_image(
        tmp_path: Path, crops: list[Path]) -> None:
    out = tmp_path / "out"
    result = run_benchmark(crops, ["jpeg"], out, progress=False)
    assert _csv_header(out / "results.csv") == [
        "codec", "setting", "image", "width", "height", "bytes", "bpp",
        "psnr_rgb", "ms_ssim_rgb", "ms_ssim_db", "encode_s", "decode_s"]
    assert list(COLUMNS) == _csv_header(out / "results.csv")
    rows = read_rows(out / "results.csv")
    n_settings = len(get_codec("jpeg").settings())
    assert len(rows) == result.new_rows == n_settings * len(crops)
    for row in rows:
        assert (row.width, row.height) == (64, 64)
        assert row.bpp == pytest.approx(row.bytes * 8 / (64 * 64))
        assert row.encode_s > 0 and row.decode_s > 0
        assert 0 < row.ms_ssim_rgb <= 1 and row.psnr_rgb > 10
    assert (out / "meta.json").exists()


def test_rows_already_in_the_csv_are_not_run_again(tmp_path: Path, crops: list[Path]) -> None:
    out = tmp_path / "out"
    first = run_benchmark(crops, ["jpeg"], out, progress=False)
    second = run_benchmark(crops, ["jpeg"], out, progress=False)
    assert second.new_rows == 0
    assert sorted(r.key for r in second.rows) == sorted(r.key for r in first.rows)

    # drop one row: exactly that one is measured again
    lines = (out / "results.csv").read_text().splitlines()
    (out / "results.csv").write_text("\n".join(lines[:-1]) + "\n")
    third = run_benchmark(crops, ["jpeg"], out, progress=False)
    assert third.new_rows == 1
    assert len(read_rows(out / "results.csv")) == len(first.rows)


def test_rows_of_a_codec_whose_description_changed_are_run_again(tmp_path: Path, crops: list[Path]) -> None:
    out = tmp_path / "out"
    first = run_benchmark(crops, ["jpeg", "webp"], out, progress=False)
    meta = json.loads((out / "meta.json").read_text())
    meta["codecs"]["jpeg"]["description"] = "JPEG from another library version"
    (out / "meta.json").write_text(json.dumps(meta))
    second = run_benchmark(crops, ["jpeg", "webp"], out, progress=False)
    assert second.new_rows == len(get_codec("jpeg").settings()) * len(crops)
    assert len(read_rows(out / "results.csv")) == len(first.rows)  # replaced, not duplicated
    assert run_benchmark(crops, ["jpeg", "webp"], out, progress=False).new_rows == 0


def test_a_csv_with_other_columns_is_refused(tmp_path: Path, crops: list[Path]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.csv").write_text("a,b\n1,2\n")
    with pytest.raises(BenchmarkError, match="columns"):
        run_benchmark(crops, ["jpeg"], out, progress=False)


@pytest.mark.slow  # worker processes (seconds)
def test_parallel_workers_give_the_same_sizes_and_quality_as_one_process(tmp_path: Path, crops: list[Path]) -> None:
    serial = run_benchmark(crops, ["webp"], tmp_path / "serial", progress=False)
    parallel = run_benchmark(crops, ["webp"], tmp_path / "parallel", workers=2, progress=False)
    key = {r.key: (r.bytes, r.psnr_rgb, r.ms_ssim_rgb) for r in serial.rows}
    assert {r.key: (r.bytes, r.psnr_rgb, r.ms_ssim_rgb) for r in parallel.rows} == key


def test_bad_options_raise_one_line_errors(tmp_path: Path, crops: list[Path]) -> None:
    with pytest.raises(BenchmarkError, match="repeats"):
        run_benchmark(crops, ["jpeg"], tmp_path, repeats=0, progress=False)
    with pytest.raises(BenchmarkError, match="workers"):
        run_benchmark(crops, ["jpeg"], tmp_path, workers=0, progress=False)


def test_unavailable_codecs_are_skipped_with_a_reason(tmp_path: Path, crops: list[Path],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from vqz.benchmarks import registry
    from vqz.benchmarks.errors import CodecUnavailable

    real = registry.get_codec

    def fake(name: str):
        if name == "avif":
            raise CodecUnavailable("avif: this Pillow build has no avif support")
        return real(name)

    monkeypatch.setattr(registry, "get_codec", fake)
    skipped: list[tuple[str, str]] = []
    result = run_benchmark(crops[:1], ["avif", "jpeg"], tmp_path / "o", progress=False,
                           on_skip=lambda n, why: skipped.append((n, why)))
    assert skipped == [("avif", "avif: this Pillow build has no avif support")]
    assert [c.name for c in result.codecs] == ["jpeg"]
    with pytest.raises(BenchmarkError, match="none of the codecs"):
        run_benchmark(crops[:1], ["avif"], tmp_path / "o2", progress=False)


def test_row_round_trips_through_csv_text(tmp_path: Path) -> None:
    row = Row("jpeg", "50", "a.png", 8, 4, 100, 25.0, float("inf"), 1.0, float("inf"), 0.1, 0.2)
    from vqz.benchmarks.runner import _append_rows

    _append_rows(tmp_path / "r.csv", [row])
    assert read_rows(tmp_path / "r.csv") == [row]


def test_timing_is_the_median_of_the_repeats(monkeypatch: pytest.MonkeyPatch) -> None:
    from vqz.benchmarks import runner

    ticks = iter([0.0, 1.0, 1.5,   10.0, 13.0, 13.1,   20.0, 22.0, 22.7])  # enc 1,3,2 dec .5,.1,.7
    monkeypatch.setattr(runner.time, "perf_counter", lambda: next(ticks))
    img = np.full((32, 32, 3), 100, np.uint8)
    row = runner.measure(get_codec("jpeg"), img, 90, "x.png", repeats=3)
    assert row.encode_s == pytest.approx(2.0)
    assert row.decode_s == pytest.approx(0.5)


def test_model_loading_in_prepare_is_not_timed() -> None:
    import time

    from vqz.benchmarks.adapter import Codec
    from vqz.benchmarks.runner import measure

    class Slow(Codec):
        name, label = "slow", "Slow"
        description = "loads for 0.3 s, codes instantly"
        prepared: list[int] = []

        def settings(self) -> list[int]:
            return [1]

        def prepare(self, setting: int) -> None:
            time.sleep(0.3)
            self.prepared.append(setting)

        def encode(self, img: np.ndarray, setting: int) -> bytes:
            return img.tobytes()

        def decode(self, data: bytes) -> np.ndarray:
            return np.frombuffer(data, np.uint8).reshape(16, 16, 3)

    codec = Slow()
    row = measure(codec, np.zeros((16, 16, 3), np.uint8), 1, "z.png")
    assert codec.prepared == [1]
    assert row.encode_s < 0.1 and row.decode_s < 0.1
    assert row.bytes == 16 * 16 * 3 and row.bpp == 24.0


def test_a_codec_returning_the_wrong_shape_is_an_error() -> None:
    from vqz.benchmarks.adapter import Codec
    from vqz.benchmarks.runner import measure

    class Cropping(Codec):
        name, label, description = "crop", "Crop", "drops a row"

        def settings(self) -> list[int]:
            return [1]

        def encode(self, img: np.ndarray, setting: int) -> bytes:
            return img[1:].tobytes()

        def decode(self, data: bytes) -> np.ndarray:
            return np.frombuffer(data, np.uint8).reshape(15, 16, 3)

    with pytest.raises(BenchmarkError, match="expected \\(16, 16, 3\\) uint8"):
        measure(Cropping(), np.zeros((16, 16, 3), np.uint8), 1, "z.png")
