"""The command line through typer's CliRunner: round trips, overwrites, pipes, batches,
rate control, progressive decode, models, help and error exits."""

from __future__ import annotations

import io
import json
import os
import pickle
import stat
from pathlib import Path

import numpy as np

from vqz.training.model import torch_model
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

import vqz
from vqz.cli.app import app
from vqz.cli.decode import DecodeTask, decode_one
from vqz.cli.encode import EncodeTask, encode_one
from vqz.options import EncodeOptions
from vqz.cli.report import run_batch
from vqz.errors import VqzError

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


def test_a_missing_input_and_a_directory_without_images_fail_cleanly(tmp_path):
    for target in (tmp_path / "missing.png", tmp_path):
        result = run("encode", target, "-o", tmp_path / "o.vqz")
        assert result.exit_code == 1 and str(target) in result.stderr
        assert result.stderr.count("\n") == 1
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


# ----------------------------------------------------------------------------- pipes


def test_stdin_to_stdout_round_trip_matches_the_file_commands(png, tmp_path):
    encoded = runner.invoke(app, ["encode", "-", "-o", "-", "-q", "2"], input=png.read_bytes())
    assert encoded.exit_code == 0 and encoded.stderr == ""
    assert run("encode", png, "-q", 2, "-o", tmp_path / "file.vqz").exit_code == 0
    assert encoded.stdout_bytes == (tmp_path / "file.vqz").read_bytes()
    decoded = runner.invoke(app, ["decode", "-", "-o", "-"], input=encoded.stdout_bytes)
    assert decoded.exit_code == 0 and decoded.stdout_bytes[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(decoded.stdout_bytes)) as image:
        assert image.size == (40, 24)
    info = runner.invoke(app, ["info", "-", "--json"], input=encoded.stdout_bytes)
    assert json.loads(info.stdout)["quality"] == 2


def test_stdin_without_o_writes_stdout(png):
    result = runner.invoke(app, ["encode", "-"], input=png.read_bytes())
    assert result.exit_code == 0 and result.stdout_bytes[:4] == b"\x89VQZ"


def test_bad_stdin_is_reported_by_name_without_output():
    result = runner.invoke(app, ["decode", "-", "-o", "-"], input=b"not a vqz file")
    assert result.exit_code == 1 and result.stdout_bytes == b""
    assert result.stderr.startswith("vqz: error: <stdin>: not a .vqz file")


@pytest.mark.parametrize(
    "args",
    [
        ["encode", "{png}", "{png2}", "-o", "-"],  # several inputs to stdout
        ["encode", "-", "{png}"],  # stdin mixed with files
        ["encode", "-", "-o", "{dir}"],  # stdin has no name inside a directory
        ["decode", "{png}", "{png2}", "-o", "-"],
    ],
)
def test_stdio_misuse_is_a_usage_error(png, tmp_path, args):
    png2 = tmp_path / "two.png"
    Image.fromarray(smooth_image(8, 8)).save(png2)
    names = {"png": png, "png2": png2, "dir": tmp_path}
    result = run(*[a.format(**names) for a in args])
    assert result.exit_code == 2
    assert not list(tmp_path.glob("*.vqz"))


# ----------------------------------------------------------------------------- batches


@pytest.fixture
def folder(tmp_path) -> Path:
    """Three images, a text file and a hidden image in one folder, an image in a subfolder."""
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for index, name in enumerate(["b.png", "a.jpg", "c.bmp", ".hidden.png", "sub/deep.png"]):
        Image.fromarray(smooth_image(16, 24, seed=index)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_a_directory_expands_to_its_images_and_decode_to_its_vqz_files(folder, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert run("encode", folder, "-o", out, "-q", 1).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.vqz", "b.vqz", "c.vqz"]
    (out / "ignored.txt").write_text("x")
    assert run("decode", out).exit_code == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["a.png", "b.png", "c.png"]


def test_an_unexpanded_glob_is_expanded_by_the_program(folder, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert run("encode", str(folder / "*.png"), "-o", out, "-q", 1).exit_code == 0
    assert [p.name for p in out.iterdir()] == ["b.vqz"]
    result = run("encode", str(folder / "*.gif"), "-o", out)
    assert result.exit_code == 1 and "no image files match" in result.stderr


def test_an_empty_directory_is_an_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run("decode", empty)
    assert result.exit_code == 1 and str(empty) in result.stderr and "no .vqz files" in result.stderr


def test_batch_outputs_stay_inside_the_output_directory(folder, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    nested = folder / "sub" / "deep.png"
    assert run("encode", nested, folder / "b.png", "-o", out, "-q", 1).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["b.vqz", "deep.vqz"]
    assert not (folder / "sub" / "deep.vqz").exists()


def test_two_inputs_with_one_output_name_report_the_second(folder, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    other = tmp_path / "b.png"
    Image.fromarray(smooth_image(16, 16)).save(other)
    result = run("encode", folder / "b.png", other, "-o", out, "-q", 1)
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and str(other) in result.stderr and "also be written" in result.stderr
    assert [p.name for p in out.iterdir()] == ["b.vqz"]


def _half_or_fail(number: int) -> float:
    """A worker for run_batch that fails, as vqz's own workers do, on bad items."""
    if number < 0:
        raise VqzError(f"negative: {number}")
    if number == 0:
        raise ZeroDivisionError("zero")
    return number / 2


@pytest.mark.slow  # starts worker processes that import the codec (several seconds)
def test_run_batch_in_worker_processes_keeps_input_order_and_reports_each_failure(capsys):
    items = [4, -1, 6, 0, 8, 10]
    finished: list[tuple[int, float]] = []
    failed = run_batch(_half_or_fail, items, [f"item{i}" for i in items], lambda i, r: finished.append((i, r)),
                       workers=2, quiet=True)
    assert failed == 2
    assert finished == [(0, 2.0), (2, 3.0), (4, 4.0), (5, 5.0)]
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["vqz: error: item-1: negative: -1", "vqz: error: item0: internal error: ZeroDivisionError: zero"]


def test_worker_tasks_pickle():
    for work, task in [(encode_one, EncodeTask(Path("a.png"), None, EncodeOptions(quality=2), 10)),
                       (decode_one, DecodeTask(b"\x89VQZ", 1, "PNG"))]:
        assert pickle.loads(pickle.dumps(task)) == task and pickle.loads(pickle.dumps(work)) is work


@pytest.mark.slow  # starts worker processes that import torch: several seconds on a small machine
def test_workers_give_the_same_files_and_report_errors_in_order(folder, tmp_path):
    bad = folder / "bad.png"
    bad.write_text("not an image")
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    serial.mkdir()
    parallel.mkdir()
    first = run("encode", folder, "-o", serial, "-q", 1)
    second = run("encode", folder, "-o", parallel, "-q", 1, "--workers", 2)
    assert first.exit_code == second.exit_code == 1
    assert first.stderr == second.stderr and first.stderr.count("\n") == 1 and "bad.png" in first.stderr
    names = sorted(p.name for p in serial.iterdir())
    assert names == ["a.vqz", "b.vqz", "c.vqz"] == sorted(p.name for p in parallel.iterdir())
    for name in names:
        assert (serial / name).read_bytes() == (parallel / name).read_bytes()


def test_the_progress_bar_goes_to_stderr_on_a_terminal_and_quiet_silences_it(folder, tmp_path):
    terminal = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "0"}
    shown = runner.invoke(app, ["encode", str(folder), "-q", 1], env=terminal)
    assert shown.exit_code == 0 and "encoding" in shown.stderr and "3/3" in shown.stderr
    assert shown.stdout == ""
    quiet = runner.invoke(app, ["encode", str(folder), "-q", 1, "--force", "--quiet"], env=terminal)
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_outputs_get_the_usual_file_mode(png):
    assert run("encode", png, "-q", 1).exit_code == 0
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(png.with_suffix(".vqz").stat().st_mode) == 0o666 & ~mask


# ----------------------------------------------------------------------------- rate control


@pytest.fixture(scope="module")
def levels(model) -> list[int]:
    from vqz.codec.pipeline import quality_range

    return list(quality_range(model))


def _encode_size(png: Path, quality: int) -> int:
    return len(vqz.encode(png, quality=quality))


def test_target_bpp_picks_the_highest_quality_within_the_budget(png, tmp_path, levels):
    budget = 8 * (_encode_size(png, 3) + 1) / (40 * 24)  # a hair over quality 3's size
    result = run("encode", png, "--target-bpp", budget, "-o", tmp_path / "a.vqz")
    assert result.exit_code == 0 and "quality 3" in result.stderr
    info = json.loads(run("info", tmp_path / "a.vqz", "--json").stdout)
    assert info["quality"] == 3 and info["bpp"] <= budget
    assert (tmp_path / "a.vqz").read_bytes() == vqz.encode(png, quality=3)


def test_target_psnr_picks_the_smallest_level_that_reaches_it(model, png, tmp_path):
    from vqz.codec.rate_control import QualityLadder

    ladder = QualityLadder(model, np.asarray(Image.open(png)))
    target = ladder.psnr(2)
    result = run("encode", png, "--target-psnr", target, "-o", tmp_path / "a.vqz", "--quiet")
    assert result.exit_code == 0 and result.stderr == ""
    chosen = json.loads(run("info", tmp_path / "a.vqz", "--json").stdout)["quality"]
    assert (tmp_path / "a.vqz").read_bytes() == ladder.file(chosen)
    assert ladder.psnr(chosen) >= target and (chosen == 1 or ladder.psnr(chosen - 1) < target)


def test_unreachable_targets_fall_back_with_one_warning(png, tmp_path, levels):
    small = run("encode", png, "--target-bpp", 0.0001, "-o", tmp_path / "small.vqz")
    assert small.exit_code == 0 and small.stderr.startswith("vqz: warning: ") and small.stderr.count("\n") == 1
    assert vqz.read_info(tmp_path / "small.vqz").quality == 1
    best = run("encode", png, "--target-psnr", 999, "-o", tmp_path / "best.vqz")
    assert best.exit_code == 0 and best.stderr.startswith("vqz: warning: ") and best.stderr.count("\n") == 1
    assert vqz.read_info(tmp_path / "best.vqz").quality == levels[-1]


@pytest.mark.parametrize(
    "options",
    [["-q", "2", "--target-bpp", "1"], ["-q", "2", "--target-psnr", "30"], ["--target-bpp", "1", "--target-psnr", "30"],
     ["--target-bpp", "0"], ["--target-psnr", "-3"], ["--target-bpp", "nan"], ["--target-size", "0"],
     ["--target-size", "1.5"], ["--target-size", "900", "-q", "2"], ["--target-size", "900", "--target-bpp", "1"]],
)
def test_rate_control_misuse_is_a_usage_error(png, options):
    result = run("encode", png, *options)
    assert result.exit_code == 2 and not png.with_suffix(".vqz").exists()


def test_target_size_fills_the_budget_with_a_part_way_stage(tmp_path):
    # larger than the shared 40x24 image: there the post-filter's 9-byte reference is half the gap
    # between two levels, and whether a level asks for it decides what fits between them
    png = tmp_path / "img.png"
    Image.fromarray(smooth_image(48, 80, seed=1)).save(png)
    budget = (_encode_size(png, 2) + _encode_size(png, 3)) // 2
    result = run("encode", png, "--target-size", budget, "-o", tmp_path / "a.vqz")
    assert result.exit_code == 0 and f"bytes" in result.stderr and "quality 2." in result.stderr
    data = (tmp_path / "a.vqz").read_bytes()
    assert budget - 16 <= len(data) <= budget
    info = json.loads(run("info", tmp_path / "a.vqz", "--json").stdout)
    assert info["quality"] == 3 and 0 < info["coded_cells"] < info["grid_height"] * info["grid_width"]
    assert info["partway"] in ("order", "mask")
    text = run("info", tmp_path / "a.vqz").stdout
    if info["partway"] == "mask":
        assert 0 < info["mask_blocks"] < info["grid_blocks"]
        assert f"block mask of {info['mask_blocks']} of {info['grid_blocks']} blocks" in text
    else:
        assert info["mask_blocks"] is None and "in priority order" in text
    # Progressive decode of a part-way file: a prefix of whole stages, or all of it.
    assert run("decode", tmp_path / "a.vqz", "--stages", "2", "-o", tmp_path / "a2.png").exit_code == 0
    # the first two stages alone (level 3's prefix), without the post-filter level 2's own file may ask for
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a2.png")), vqz.decode_array(vqz.encode(png, quality=3), stages=2))
    assert run("decode", tmp_path / "a.vqz", "-o", tmp_path / "a3.png").exit_code == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a3.png")), vqz.decode_array(data))


def test_too_small_a_target_size_is_one_warning_and_the_smallest_file(png, tmp_path):
    result = run("encode", png, "--target-size", 40, "-o", tmp_path / "small.vqz")  # the header alone is more
    assert result.exit_code == 0 and result.stderr.startswith("vqz: warning: ") and result.stderr.count("\n") == 1
    assert "40 bytes" in result.stderr
    assert (tmp_path / "small.vqz").read_bytes() == vqz.encode(png, quality=1)


def test_target_size_is_stated_in_the_help():
    text = " ".join(run("encode", "--help").stdout.split())
    assert "--target-size" in text and "smallest file" in text


# ----------------------------------------------------------------------------- progressive decode


def test_fewer_stages_give_a_lower_psnr_on_a_real_photo(kodak_dir, tmp_path, levels):
    from vqz.codec.rate_control import psnr

    with Image.open(kodak_dir / "kodim23.png") as photo:
        crop = np.asarray(photo.convert("RGB"))[200:328, 300:428]
    Image.fromarray(crop).save(tmp_path / "crop.png")
    assert run("encode", tmp_path / "crop.png", "-q", levels[-1]).exit_code == 0
    scores = []
    for stages in (1, levels[-1]):
        target = tmp_path / f"stages{stages}.png"
        assert run("decode", tmp_path / "crop.vqz", "--stages", stages, "-o", target).exit_code == 0
        scores.append(psnr(crop, np.asarray(Image.open(target))))
    assert scores[0] < scores[1]


# ----------------------------------------------------------------------------- models, help


def test_models_lists_the_bundled_model(model):
    listed = json.loads(run("models", "--json").stdout)
    entry = next(m for m in listed if m["id"] == model.model_id)
    assert entry["hash"] == model.weights_hash.hex() and entry["default"]
    assert entry["levels"] == torch_model(model).config.num_stages
    assert entry["size_bytes"] == Path(entry["path"]).stat().st_size
    table = run("models")
    assert table.exit_code == 0 and model.model_id in table.stdout and model.weights_hash.hex() in table.stdout


def _command_names() -> list[str]:
    return sorted(typer.main.get_command(app).commands)


def test_the_command_list_is_complete():
    assert {"encode", "decode", "info", "models", "train", "export-model"} <= set(_command_names())


@pytest.mark.parametrize("command", _command_names())
def test_every_command_has_help_with_an_example(command):
    result = run(command, "--help")
    assert result.exit_code == 0 and "Example" in result.stdout


def test_python_warnings_while_reading_become_one_line_each(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(smooth_image(8, 8)[:, :, 0].astype(np.uint16) * 257).save(path)  # mode I;16
    result = run("encode", path, "-q", 1)
    assert result.exit_code == 0
    assert result.stderr == f"vqz: warning: {path}: converted 16-bit image to 8 bits\n"
