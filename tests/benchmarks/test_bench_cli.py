"""Claims about ``vqz bench`` / ``vqz bench-speed`` through typer's CliRunner."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner
from vqz.benchmarks.cli import make_app, register
from vqz.benchmarks.registry import codec_names

runner = CliRunner()


@pytest.fixture(autouse=True)
def no_real_download(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """If a test fell through to `--dataset kodak`, it would hit a closed loopback port, not the internet."""
    monkeypatch.setenv("VQZ_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("VQZ_KODAK_URL", "http://127.0.0.1:9/")


@pytest.fixture
def images(kodak_crop_folder: Path) -> Path:
    return kodak_crop_folder


def test_register_adds_bench_and_bench_speed_with_help() -> None:
    app = typer.Typer()
    register(app)

    @app.command("other")
    def other() -> None:  # a second command so typer keeps subcommand names
        """Something else."""

    for command in ("bench", "bench-speed"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0, result.output
        assert "Example:" in result.output


def test_bench_help_lists_every_option_of_the_brief() -> None:
    result = runner.invoke(make_app(), ["bench", "--help"])
    assert result.exit_code == 0
    for option in ("--dataset", "--codecs", "--out", "--workers", "--limit", "--repeats", "--reference"):
        assert option in result.output


def test_bench_writes_csv_json_tables_plots_and_html(tmp_path: Path, images: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(make_app(), ["bench", "--dataset", str(images), "--codecs", "jpeg,webp",
                                        "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    printed = result.stdout.split()
    for name in ("results.csv", "bd_rate.md", "rd_psnr.png", "rd_ms_ssim.svg", "report.html"):
        assert str(out / name) in printed
        assert (out / name).exists()
    assert (out / "json" / "jpeg.json").exists() and (out / "json" / "webp.json").exists()
    assert "BD-rate vs jpeg" in (out / "bd_rate.md").read_text()


def test_unknown_codec_exits_1_with_one_line_naming_the_valid_codecs(tmp_path: Path, images: Path) -> None:
    result = runner.invoke(make_app(), ["bench", "--dataset", str(images), "--codecs", "jpeg,bpg",
                                        "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vqz: error: unknown codec 'bpg'")
    assert all(name in lines[0] for name in codec_names())
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, message", [
    (["--workers", "0"], "`workers` must be at least 1"),
    (["--repeats", "0"], "`repeats` must be at least 1"),
    (["--limit", "0"], "`limit` must be at least 1"),
    (["--reference", "/nonexistent/ref"], "--reference /nonexistent/ref is not a folder"),
])
def test_bad_numbers_and_paths_exit_1_with_one_line(tmp_path: Path, images: Path, args: list[str], message: str) -> None:
    result = runner.invoke(make_app(), ["bench", "--dataset", str(images), "--codecs", "jpeg",
                                        "--out", str(tmp_path / "o"), "--quiet", *args])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_a_missing_dataset_folder_exits_1(tmp_path: Path) -> None:
    result = runner.invoke(make_app(), ["bench", "--dataset", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "does not exist" in result.stderr


def test_bench_speed_rejects_bad_sizes_in_one_line(tmp_path: Path) -> None:
    result = runner.invoke(make_app(), ["bench-speed", "--codecs", "jpeg", "--sizes", "4k", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.strip() == "vqz: error: size '4k' is not WIDTHxHEIGHT (e.g. 3840x2160)"


def test_python_dash_m_runs_the_standalone_app() -> None:
    proc = subprocess.run([sys.executable, "-m", "vqz.benchmarks", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "bench-speed" in proc.stdout and "bench" in proc.stdout
