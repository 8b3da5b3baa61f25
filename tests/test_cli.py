"""The command line through typer's CliRunner: round trips, overwrites, batches, error exits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from vqz.cli.app import app

from conftest import smooth_image

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def png(tmp_path) -> Path:
    path = tmp_path / "img.png"
    Image.fromarray(smooth_image(24, 40, seed=1)).save(path)
    return path


def test_encode_then_decode_next_to_the_input(png):
    assert run("encode", png, "-q", 2).exit_code == 0
    assert png.with_suffix(".vqz").is_file()
    png.unlink()
    assert run("decode", png.with_suffix(".vqz")).exit_code == 0
    with Image.open(png) as decoded:
        assert decoded.size == (40, 24) and decoded.mode == "RGB"


@pytest.mark.parametrize("suffix, fmt", [(".png", "PNG"), (".ppm", "PPM"), (".tif", "TIFF"), (".bmp", "BMP")])
def test_decode_format_follows_the_output_suffix(png, tmp_path, suffix, fmt):
    assert run("encode", png, "-o", tmp_path / "a.vqz").exit_code == 0
    assert run("decode", tmp_path / "a.vqz", "-o", tmp_path / f"out{suffix}").exit_code == 0
    with Image.open(tmp_path / f"out{suffix}") as decoded:
        assert decoded.format == fmt


def test_existing_output_needs_force(png, tmp_path):
    out = tmp_path / "x.vqz"
    out.write_bytes(b"keep me")
    result = run("encode", png, "-o", out)
    assert result.exit_code == 1 and "--force" in result.stderr
    assert out.read_bytes() == b"keep me"
    assert run("encode", png, "-o", out, "--force").exit_code == 0
    assert out.read_bytes()[:4] == b"\x89VQZ"


def test_unknown_quality_is_a_usage_error_naming_the_range(png):
    result = run("encode", png, "-q", 99)
    assert result.exit_code == 2
    assert "1.." in result.output


def test_several_inputs_one_bad_reports_it_and_continues(png, tmp_path):
    second = tmp_path / "second.png"
    Image.fromarray(smooth_image(16, 16, seed=2)).save(second)
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = run("encode", png, bad, second, "-o", out_dir)
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line]
    assert len(lines) == 1 and "bad.png" in lines[0]
    assert sorted(p.name for p in out_dir.iterdir()) == ["img.vqz", "second.vqz"]


def test_several_inputs_need_a_directory(png, tmp_path):
    result = run("encode", png, png, "-o", tmp_path / "nowhere.vqz")
    assert result.exit_code == 1 and "directory" in result.stderr


@pytest.mark.parametrize("content", [b"", b"hello", b"\x89VQZ\x01\x00"])
def test_bad_vqz_files_fail_cleanly_without_output(tmp_path, content):
    bad = tmp_path / "bad.vqz"
    bad.write_bytes(content)
    result = run("decode", bad)
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert not (tmp_path / "bad.png").exists()


def test_missing_input_and_directory_input_fail_cleanly(tmp_path):
    for target in (tmp_path / "missing.png", tmp_path):
        result = run("encode", target, "-o", tmp_path / "o.vqz")
        assert result.exit_code == 1 and str(target) in result.stderr
    assert not (tmp_path / "o.vqz").exists()


def test_info_json_parses(png, tmp_path):
    run("encode", png, "-o", tmp_path / "a.vqz", "-q", 3)
    result = run("info", tmp_path / "a.vqz", "--json")
    assert result.exit_code == 0
    info = json.loads(result.stdout)
    assert info["width"] == 40 and info["height"] == 24 and info["quality"] == 3
    assert info["total_bytes"] == (tmp_path / "a.vqz").stat().st_size
    assert info["bpp"] == pytest.approx(info["total_bytes"] * 8 / (40 * 24))
    assert run("info", tmp_path / "a.vqz").exit_code == 0


def test_decode_stages_gives_a_coarser_image(png, tmp_path):
    run("encode", png, "-o", tmp_path / "a.vqz", "-q", 4)
    assert run("decode", tmp_path / "a.vqz", "--stages", 1, "-o", tmp_path / "coarse.png").exit_code == 0
    assert (tmp_path / "coarse.png").is_file()


@pytest.mark.parametrize("command", ["encode", "decode", "info", "train", "export-model"])
def test_every_command_has_help_with_an_example(command):
    result = run(command, "--help")
    assert result.exit_code == 0 and "Example" in result.stdout
