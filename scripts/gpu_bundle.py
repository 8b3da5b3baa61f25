"""What scripts/gpu_oneshot.sh carries to a GPU machine that has no package index.

  python scripts/gpu_bundle.py data   [--source ../shared/data/train] [--out gpu-data] [--max-mb 60]
  python scripts/gpu_bundle.py wheels [--out .whl]
  python scripts/gpu_bundle.py size   [--carry gpu-data .whl]

``data`` copies a subset of the training folder (files unchanged, so the train/validation split
by file-name hash is the same one) of at most ``--max-mb`` MB: files in the order of a hash of
their names, which is fixed and mixes both splits and every source of the folder.
``wheels`` downloads, for CPython 3.12 on x86-64 Linux (the GPU image's Python), the packages
vqz needs that a PyTorch image lacks: compressai, constriction, pytorch-msssim (no
dependencies: numpy, scipy, einops, torch-geometric, typer, rich, safetensors and pillow are
expected there). ``size`` adds up what travels: the checkout's tracked files plus the carried
folders, against a 64 MiB upload limit. Both folders are git-ignored.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ("compressai==1.2.8", "constriction==0.5.0", "pytorch-msssim==1.0.0")
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28, 31, 34, 35)] + ["manylinux2014_x86_64"]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"}
LIMIT_MIB = 64


def subset(source: Path, out: Path, max_mb: float) -> tuple[int, int]:
    """Copy files of ``source`` into ``out`` up to ``max_mb`` MB; returns (files, bytes)."""
    files = sorted((p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda p: hashlib.sha256(b"vqz-subset:" + p.name.encode()).digest())
    if not files:
        raise SystemExit(f"gpu_bundle: no images in {source}")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    budget, total, count = int(max_mb * 1e6), 0, 0
    for path in files:
        size = path.stat().st_size
        if total + size > budget:
            continue
        shutil.copy2(path, out / path.name)
        total, count = total + size, count + 1
    return count, total


def download_wheels(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
               "--implementation", "cp", "-d", str(out)]
    for platform in PLATFORMS + ["any"]:
        command += ["--platform", platform]
    subprocess.run(command + list(WHEELS), check=True)
    return sorted(out.glob("*.whl"))


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def tracked_bytes() -> int:
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    return sum((ROOT / n.decode()).stat().st_size for n in names if n and (ROOT / n.decode()).is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data", help="build the training subset")
    data.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "data" / "train")
    data.add_argument("--out", type=Path, default=ROOT / "gpu-data")
    data.add_argument("--max-mb", type=float, default=60.0)
    wheels = commands.add_parser("wheels", help="download the wheels a PyTorch image lacks")
    wheels.add_argument("--out", type=Path, default=ROOT / ".whl")
    size = commands.add_parser("size", help="what travels, against the 64 MiB limit")
    size.add_argument("--carry", type=Path, nargs="*", default=[ROOT / "gpu-data", ROOT / ".whl"])
    args = parser.parse_args(argv)
    if args.command == "data":
        count, total = subset(args.source, args.out, args.max_mb)
        print(f"gpu_bundle: {count} images, {total / 1e6:.1f} MB in {args.out}")
    elif args.command == "wheels":
        for wheel in download_wheels(args.out):
            print(f"gpu_bundle: {wheel.name} ({wheel.stat().st_size / 1e6:.2f} MB)")
    else:
        parts = {"tracked files": tracked_bytes()} | {str(c): _folder_bytes(c) for c in args.carry if c.exists()}
        for name, value in parts.items():
            print(f"{value / 2**20:8.1f} MiB  {name}")
        total = sum(parts.values()) / 2**20
        print(f"{total:8.1f} MiB  total ({'within' if total <= LIMIT_MIB else 'OVER'} the {LIMIT_MIB} MiB limit)")
        return 0 if total <= LIMIT_MIB else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
