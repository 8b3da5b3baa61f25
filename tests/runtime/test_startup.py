"""Start-up work of the commands (issue 14): what each command imports, deterministically.

Wall times are measured by ``python -m vqz.benchmarks.startup IMAGE``, not here; these tests
check *what* is imported, which decides most of the start-up time:

* ``vqz info`` imports neither numpy, ONNX Runtime, torch, the model nor pydantic;
* ``vqz decode`` imports no encoder, no benchmark suite, no rich, no process pool, no torch;
* only the command that runs is imported, and ``vqz --help`` still lists every command;
* typer's values, converted without pydantic (:mod:`vqz.cli.params`), equal typer's own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from vqz.benchmarks.startup import Measurement, command_line, measure, startup_markdown
from vqz.cli import params
from vqz.cli.app import COMMANDS, app

from conftest import DATA

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("numpy", "onnxruntime", "torch", "compressai", "pydantic", "rich", "vqz.codec.weights", "vqz.api",
         "vqz.benchmarks.cli", "vqz.cli.encode", "vqz.cli.decode", "multiprocessing", "concurrent.futures")


def _imported_by(argv: list[str]) -> list[str]:
    """The modules of HEAVY imported by ``vqz ARGV`` run in a fresh process."""
    code = f"""
import json, sys
from vqz.cli.app import app
from typer.testing import CliRunner
result = CliRunner().invoke(app, {argv!r})
assert result.exit_code == 0, result.output
print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_info_imports_no_numpy_no_model_and_no_pydantic():
    loaded = _imported_by(["info", str(DATA / "golden-vqz-rvq8-f8-q3.vqz"), "--json"])
    expected = [] if params._TyperParameter is not None else ["pydantic"]  # another typer converts with pydantic
    assert [m for m in loaded if m != "pydantic"] == [] and [m for m in loaded if m == "pydantic"] <= expected


def test_decode_imports_only_the_decoder(tmp_path):
    loaded = _imported_by(["decode", str(DATA / "golden-vqz-rvq8-f8-q3.vqz"), "-o", str(tmp_path / "out.png")])
    assert set(loaded) <= {"numpy", "onnxruntime", "vqz.codec.weights", "vqz.api", "vqz.cli.decode"}
    assert "vqz.cli.decode" in loaded and "onnxruntime" in loaded


def test_help_lists_every_command_in_order():
    group = typer.main.get_command(app)
    assert list(group.commands)[: len(COMMANDS)] == list(COMMANDS)
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert f" {name} " in result.stdout


def test_an_unknown_command_suggests_the_close_one():
    result = CliRunner().invoke(app, ["decod"])
    assert result.exit_code == 2 and "decode" in result.output


def _typer_params() -> list:
    """Every typer parameter of every command (and of the group)."""
    group = typer.main.get_command(app)
    ctx = typer.Context(group)
    found = list(group.get_params(ctx))
    for name in group.list_commands(ctx):
        found += group.get_command(ctx, name).get_params(ctx)
    return [p for p in found if isinstance(p, params._TyperParameter)]


@pytest.mark.skipif(params._TyperParameter is None, reason="this typer converts without pydantic anyway")
def test_fast_conversion_equals_typers_own(tmp_path):
    from typer._coercion import build_runtime_param

    values = [None, "", "0", "1", "4", "04", " 4", "+4", "-1", "99", "1e-1", "0.5", "abc", "nan", "-", "x.png",
              str(tmp_path), "ü/a b.vqz", 1, 0, 3.5, True, False, Path("p.png"), ("a.png", "b.png"), ["1", "2"], ()]
    group = typer.main.get_command(app)
    ctx = typer.Context(group)
    checked = 0
    for param in _typer_params():
        leaf = params._plain(param.type_descriptor)
        if leaf is None:
            continue
        fast = params.FastRuntimeParam(param.type_descriptor, leaf)
        slow = build_runtime_param(param.type_descriptor)
        for value in values:
            try:
                expected = ("ok", slow.coerce(value, param=param, ctx=ctx))
            except Exception as exc:  # noqa: BLE001 - the same error type and message
                expected = ("error", type(exc).__name__, str(exc))
            try:
                got = ("ok", fast.coerce(value, param=param, ctx=ctx))
            except Exception as exc:  # noqa: BLE001
                got = ("error", type(exc).__name__, str(exc))
            assert repr(got) == repr(expected) and type(got[-1]) is type(expected[-1]), (param.name, value)
            checked += 1
    assert checked > 200


def test_startup_benchmark_times_whole_commands(tmp_path):
    assert command_line("/venv/bin/python", "info", Path("x.png"), 4)[-2:] == ["info", "out.vqz"]
    results, identical = measure(DATA / "golden.png", {"here": sys.executable}, repeat=1, quality=2,
                                 commands=("info",), workdir=tmp_path)
    assert identical and [(m.label, m.command) for m in results] == [("here", "info")]
    assert results[0].wall_s > 0 and results[0].cpu_s > 0
    table = startup_markdown([Measurement("a", "info", 0.25, 0.2, [0.25], [0.2])])
    assert "| info | 0.250 | 0.200 |" in table
