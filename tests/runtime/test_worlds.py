"""The two worlds: the coding runtime (codec/, bitstream/, vqz/, cli/) never imports the training world
(training/, torch, compressai, onnx) nor the benchmark suite; exported weights are the only bridge."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ("codec", "bitstream", "vqz", "cli")
FORBIDDEN = ("torch", "torchvision", "compressai", "onnx", "pytorch_msssim", "matplotlib", "vqz.training",
             "vqz.benchmarks")


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, at any depth (lazy imports included)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _forbidden(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in FORBIDDEN)


RUNTIME_FILES = sorted(p for folder in RUNTIME for p in (ROOT / folder).rglob("*.py"))


def test_the_runtime_has_modules():
    assert len(RUNTIME_FILES) > 30


@pytest.mark.parametrize("path", RUNTIME_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_runtime_module_imports_nothing_of_the_training_world(path):
    bad = [f"line {line}: {module}" for line, module in _imports(path) if _forbidden(module)]
    assert not bad, f"{path.relative_to(ROOT)} imports {', '.join(bad)}"


def test_the_training_world_is_its_own_package():
    names = {p.stem for p in (ROOT / "training").glob("*.py")}
    assert {"train", "model", "export", "realism", "loop", "cli"} <= names
    assert not {"train", "model", "export", "quantizer"} & {p.stem for p in (ROOT / "codec").glob("*.py")}


def test_every_package_folder_is_in_the_wheel():
    """pyproject maps each top-level folder into vqz.*: a subfolder with an __init__.py must be listed too, or
    a regular install silently lacks it."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping, packages = project["package-dir"], set(project["packages"])
    for name, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            package = ".".join([name, *relative.parts]) if relative.parts else name
            assert package in packages, f"{init.parent} is not packaged as {package}"


def test_import_vqz_from_the_checkout_root_without_the_editable_finder():
    """As with a regular install, started in the repository root: the root's vqz/ is found first and must
    reach the other parts of the package."""
    import subprocess
    import sys

    code = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]; "
            "import vqz.bitstream, vqz.codec.pipeline, vqz.cli.app; print(vqz.bitstream.__file__)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-500:]
    assert result.stdout.strip() == str(ROOT / "bitstream" / "__init__.py")
