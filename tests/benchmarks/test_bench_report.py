"""Claims about the report: CompressAI JSON, BD-rate tables, plots and the HTML page."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from vqz.benchmarks.aggregate import (Curve, Point, bd_entries, bd_markdown, curves_from_rows, load_reference, matched_rate_markdown,
                                      to_compressai_json)
from vqz.benchmarks.registry import get_codec
from vqz.benchmarks.report import write_report
from vqz.benchmarks.runner import Row, run_benchmark

from vqz.errors import VqzError

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "kodak-published"


@pytest.fixture
def crops(kodak_crop_folder: Path) -> list[Path]:
    """64x64 crops of two Kodak images."""
    return sorted(kodak_crop_folder.iterdir())


def _row(codec: str, setting: str, image: str, bpp: float, psnr: float, ssim: float = 0.95) -> Row:
    return Row(codec, setting, image, 10, 10, int(bpp * 100 / 8), bpp, psnr, ssim,
               -10 * math.log10(1 - ssim), 0.01, 0.02)


def test_curves_average_over_images_and_sort_by_bpp() -> None:
    rows = [_row("c", "hi", "a", 2.0, 40.0, 0.99), _row("c", "hi", "b", 1.0, 36.0, 0.97),
            _row("c", "lo", "a", 0.4, 30.0, 0.90), _row("c", "lo", "b", 0.2, 28.0, 0.80),
            _row("c", "partial", "a", 0.1, 20.0)]  # missing image b: dropped
    (curve,) = curves_from_rows(rows, [("c", "C", "desc", True)], ["a", "b"])
    assert [p.setting for p in curve.points] == ["lo", "hi"]
    assert curve.points[0].bpp == pytest.approx(0.3) and curve.points[1].psnr == pytest.approx(38.0)
    assert curve.points[1].ms_ssim == pytest.approx(0.98)
    assert curve.ms_ssim_db[1] == pytest.approx(-10 * math.log10(1 - 0.98))  # dB of the mean


def test_json_is_in_compressai_results_format() -> None:
    curve = Curve("c", "Codec C", "about C", (Point("1", 0.2, 30.0, 0.9, 0.1, 0.2), Point("2", 0.5, 33.0, 0.95, 0.3, 0.4)))
    data = to_compressai_json(curve)
    assert set(data) == {"name", "description", "results"}
    assert data["name"] == "Codec C" and data["description"] == "about C"
    results = data["results"]
    assert set(results) == {"bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"}
    assert results["bpp"] == [0.2, 0.5] and results["psnr-rgb"] == [30.0, 33.0]
    assert results["encoding_time"] == [0.1, 0.3] and results["decoding_time"] == [0.2, 0.4]


def test_bd_table_states_the_overlap_and_explains_missing_entries() -> None:
    pts = [(0.2, 28.0), (0.4, 31.0), (0.8, 34.0), (1.6, 37.0)]
    anchor = Curve("jpeg", "JPEG", "", tuple(Point(str(i), r, d, 0.9 + 0.02 * i, 0, 0) for i, (r, d) in enumerate(pts)))
    better = Curve("x", "X", "", tuple(Point(str(i), r * 0.8, d, 0.9 + 0.02 * i, 0, 0) for i, (r, d) in enumerate(pts)))
    far = Curve("far", "Far", "", tuple(Point(str(i), r, d - 20, 0.1 + 0.02 * i, 0, 0) for i, (r, d) in enumerate(pts)))
    entries = bd_entries([anchor, better, far])
    md = bd_markdown(entries)
    assert "### BD-rate vs jpeg" in md
    assert "| x | -20.0 % | 28.00–37.00 dB |" in md
    assert "no overlap" in md
    assert "webp not in this run" not in md  # no anchor, no table
    assert all(e.anchor == "jpeg" or e.result is None for e in entries)


def test_the_same_budget_baselines_are_anchors_of_their_own_table() -> None:
    pts = [(0.2, 28.0), (0.4, 31.0), (0.8, 34.0), (1.6, 37.0)]
    baseline = Curve("hyperprior-samebudget", "H", "", tuple(Point(str(i), r, d, 0.9 + 0.02 * i, 0, 0)
                                                          for i, (r, d) in enumerate(pts)))
    vqz = Curve("vqz", "V", "", tuple(Point(str(i), r * 1.25, d, 0.9 + 0.02 * i, 0, 0) for i, (r, d) in enumerate(pts)))
    md = bd_markdown(bd_entries([vqz, baseline]))
    assert "### BD-rate vs hyperprior-samebudget" in md and "| vqz | +25.0 % |" in md
    assert "### BD-rate vs jpeg" not in md
    table = matched_rate_markdown([vqz, baseline])
    # vqz needs 25% more bits for the same PSNR: at a rate r it has the baseline's PSNR at r / 1.25
    # (3 dB per doubling here: -3 * log2(1.25) = -0.97 dB); 0.1 bpp is below the baseline's curve
    assert "| hyperprior-samebudget | – | -0.97 | -0.97 | -0.97 |" in table
    assert matched_rate_markdown([vqz]) == ""


def test_published_reference_curves_load_with_unique_labels() -> None:
    if not REFERENCE.is_dir():
        pytest.skip(f"{REFERENCE} is not available")
    curves = load_reference(REFERENCE)
    assert len(curves) == len(list(REFERENCE.glob("*.json")))
    assert all(c.reference and c.points for c in curves)
    labels = [c.label for c in curves]
    assert len(labels) == len(set(labels))
    jpeg = next(c for c in curves if c.name == "jpeg")
    assert list(jpeg.bpp) == sorted(jpeg.bpp)


def test_a_bad_reference_folder_is_a_vqz_error(tmp_path: Path) -> None:
    with pytest.raises(VqzError, match="does not exist"):
        load_reference(tmp_path / "nope")
    (tmp_path / "x.json").write_text('{"name": "x"}')
    with pytest.raises(VqzError, match="not a CompressAI results JSON"):
        load_reference(tmp_path)


def test_report_on_two_small_images_writes_json_tables_plots_and_html(tmp_path: Path, crops: list[Path]) -> None:
    out = tmp_path / "out"
    result = run_benchmark(crops, ["jpeg", "webp"], out, progress=False)
    files = write_report(out, result.rows, result.codecs, result.images,
                         reference_dir=REFERENCE if REFERENCE.is_dir() else None,
                         threads=result.threads, repeats=1, visual_images=1, crop=48)
    for path in [*files.json, files.bd_markdown, *files.plots, files.html]:
        assert path.exists() and path.stat().st_size > 0, path
    assert {p.name for p in files.plots} == {"rd_psnr.png", "rd_psnr.svg", "rd_ms_ssim.png", "rd_ms_ssim.svg"}
    jpeg = json.loads((out / "json" / "jpeg.json").read_text())
    assert len(jpeg["results"]["bpp"]) == len(get_codec("jpeg").settings())
    assert jpeg["results"]["bpp"] == sorted(jpeg["results"]["bpp"])

    md = files.bd_markdown.read_text()
    assert "### BD-rate vs jpeg" in md and "| webp |" in md
    assert "### BD-rate vs webp" in md and "| jpeg |" in md

    html = files.html.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert "<h3>vs jpeg</h3><table>" in html and "<h3>vs webp</h3><table>" in html
    assert html.count("data:image/png;base64,") >= 2 + 2 * 3  # 2 plots + (original + 2 codecs) x 2 targets
    assert "src=\"http" not in html and "<link" not in html  # self-contained
    assert "single-scale SSIM" in html  # 64x64 images: the fallback is stated
    assert "kodim05.png near 0.15 bpp" in html


def test_untrained_codecs_are_left_out_of_bd_tables_by_default(tmp_path: Path, crops: list[Path]) -> None:
    from vqz.benchmarks.codecs_learned import HyperpriorUntrainedCodec

    rows = [_row("jpeg", str(q), c.name, 0.2 * q, 25 + 2 * q, 0.8 + 0.03 * q) for q in range(1, 6) for c in crops]
    rows += [_row("hyperprior-untrained", str(q), c.name, 0.2 * q, 26 + 2 * q, 0.8 + 0.03 * q)
             for q in range(1, 6) for c in crops]
    codecs = [get_codec("jpeg"), HyperpriorUntrainedCodec()]
    files = write_report(tmp_path, rows, codecs, crops, visual_images=0)
    assert "hyperprior-untrained" not in files.bd_markdown.read_text()
    assert (tmp_path / "json" / "hyperprior-untrained.json").exists()
    files = write_report(tmp_path, rows, codecs, crops, visual_images=0, include_untrained=True)
    assert "| hyperprior-untrained |" in files.bd_markdown.read_text()
