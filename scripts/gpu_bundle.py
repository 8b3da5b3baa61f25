"""Get a one-shot GPU run (scripts/gpu_oneshot.sh) under the device machine's 64 MiB upload, and back.

  python scripts/gpu_bundle.py restore     # first, always: a no-op unless something is stashed
  python scripts/gpu_bundle.py start       # carry folder + stash of the large files + size check
  python scripts/gpu_bundle.py size        # what would travel now (and what is stashed), against 64 MiB
  ... the device run (README, "One-shot GPU run") ...
  python scripts/gpu_bundle.py restore     # the large files back, byte-identical (checked), stash removed

What travels to a device machine is the checkout's tracked files present in the working tree, its
untracked files that git does not ignore, a ``shared/`` folder inside it, and the ignored paths
named in ``carry``. The tracked weights and checkpoints alone are larger than the limit, and the
run needs none of them, so ``start``:

1. builds the git-ignored carry folder ``gpu-carry/``: ``wheels/`` (compressai, constriction,
   pytorch-msssim for CPython 3.12 on x86-64, the packages a PyTorch image lacks; copied from
   ``--wheels-from`` or downloaded), ``start/model.safetensors`` (the ``model.*`` tensors of
   ``--checkpoint``, byte for byte, without the Adam state: ``init_from`` reads nothing else)
   and ``data/`` (a subset of the training folder, sized to what is left of the limit);
2. moves every tracked (or untracked, not ignored) file above ``--min-mb`` into the git-ignored
   ``.device-stash/`` (with a manifest of git blob hashes), so it does not travel;
3. prints what will travel, against the limit, and the device call to make; it refuses (exit 1,
   one line, nothing moved) if a stash already exists, if the folders are not git-ignored, or if
   it would still be over the limit.

``restore`` moves the stashed files back, checks each against the blob hash recorded (and the
index's, ``git ls-files -s``), removes the stash, and is a no-op when nothing is stashed. While
files are stashed, ``git status`` shows them deleted: ``size`` says so loudly, the test suite
refuses to run (tests/conftest.py), and ``start`` installs a pre-commit hook that refuses any
commit deleting a stashed file (inert when no stash exists; ``--no-hook`` to skip).

``data`` and ``wheels`` build those parts alone (``start`` does both).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ("compressai==1.2.8", "constriction==0.5.0", "pytorch-msssim==1.0.0")
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28, 31, 34, 35)] + ["manylinux2014_x86_64"]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"}
LIMIT_MIB = 64
CARRY = "gpu-carry"
STASH = ".device-stash"
MANIFEST = "MANIFEST.json"
DEFAULT_CHECKPOINT = "checkpoints/vqz-rvq16-f8/checkpoint.safetensors"
HOOK_MARK = "vqz-device-stash-guard"
HOOK = f"""#!/bin/sh
# {HOOK_MARK}: installed by scripts/gpu_bundle.py start. Refuses a commit that deletes a file
# which `gpu_bundle.py start` moved into .device-stash/ (inert when no stash exists).
top=$(git rev-parse --show-toplevel 2>/dev/null) || exit 0
list="$top/{STASH}/FILES"
[ -f "$list" ] || exit 0
hit=$(git diff --cached --name-only --diff-filter=D | grep -Fx -f "$list")
[ -z "$hit" ] && exit 0
echo "pre-commit: refused: these files are only stashed for a device run, not deleted:" >&2
echo "$hit" | sed 's/^/  /' >&2
echo "run 'python scripts/gpu_bundle.py restore' first (git commit --no-verify if the deletion is meant)" >&2
exit 1
"""


class Refusal(Exception):
    """One line for the user; exit status 1."""


def _git(root: Path, *args: str, input: bytes | None = None) -> bytes:
    return subprocess.run(["git", *args], cwd=root, input=input, capture_output=True, check=True).stdout


def _z(output: bytes) -> list[str]:
    return [name.decode() for name in output.split(b"\0") if name]


def tracked(root: Path) -> list[str]:
    return sorted(set(_z(_git(root, "ls-files", "-z"))))


def untracked(root: Path) -> list[str]:
    return [n for n in _z(_git(root, "ls-files", "-z", "--others", "--exclude-standard")) if not n.endswith("/")]


def index_blobs(root: Path) -> dict[str, str]:
    """path -> blob id of the index (stage 0), as `git ls-files -s` lists them."""
    blobs = {}
    for entry in _z(_git(root, "ls-files", "-s", "-z")):
        meta, path = entry.split("\t", 1)
        _mode, blob, stage = meta.split()
        if stage == "0":
            blobs[path] = blob
    return blobs


def hash_objects(root: Path, paths: list[str]) -> list[str]:
    """`git hash-object` of each path (the blob id the file would have in the index)."""
    if not paths:
        return []
    return _git(root, "hash-object", "--stdin-paths", input="\n".join(paths).encode() + b"\n").decode().split()


def is_ignored(root: Path, folder: str) -> bool:
    return subprocess.run(["git", "check-ignore", "-q", f"{folder}/probe"], cwd=root).returncode == 0


def _files_under(folder: Path) -> list[Path]:
    """Every file (or link, not followed) under ``folder``."""
    if folder.is_symlink() or folder.is_file():
        return [folder]
    found = []
    for base, dirs, files in os.walk(folder):
        found += [Path(base) / name for name in files]
        found += [Path(base) / name for name in dirs if (Path(base) / name).is_symlink()]
    return found


def travelling(root: Path, carry: list[Path]) -> dict[str, dict[str, int]]:
    """What a device call would upload: {part: {relative path: bytes}} for the tracked files present,
    the untracked files git does not ignore, ``shared/`` and each carried path; a file is counted once."""
    seen: set[str] = set()
    parts: dict[str, dict[str, int]] = {}

    def add(part: str, names: list[str]) -> None:
        files = parts.setdefault(part, {})
        for name in names:
            path = root / name
            if name in seen or not (path.is_file() or path.is_symlink()):
                continue
            seen.add(name)
            files[name] = path.lstat().st_size

    add("tracked files present", tracked(root))
    add("untracked, not ignored", untracked(root))
    if (root / "shared").exists():
        add("shared/", [str(p.relative_to(root)) for p in _files_under(root / "shared")])
    for folder in carry:
        folder = folder if folder.is_absolute() else root / folder
        if folder.exists() or folder.is_symlink():
            add(f"carry {folder.relative_to(root)}", [str(p.relative_to(root)) for p in _files_under(folder)])
    return parts


def _mib(size: float) -> str:
    return f"{size / 2**20:.1f} MiB"


def report(root: Path, carry: list[Path], limit_mib: float) -> tuple[float, list[str]]:
    """The lines of the size report and the total in MiB."""
    parts = travelling(root, carry)
    lines = []
    for name, files in parts.items():
        lines.append(f"{sum(files.values()) / 2**20:8.2f} MiB  {name} ({len(files)} files)")
    total = sum(sum(files.values()) for files in parts.values()) / 2**20
    verdict = "within" if total <= limit_mib else "OVER"
    lines.append(f"{total:8.2f} MiB  total that travels ({verdict} the {limit_mib:g} MiB limit)")
    biggest = sorted(((size, name) for files in parts.values() for name, size in files.items()), reverse=True)[:4]
    lines.append("          largest: " + ", ".join(f"{name} {_mib(size)}" for size, name in biggest))
    return total, lines


def stash_warning(root: Path) -> str | None:
    """A loud line if files of ``root`` are stashed (None otherwise)."""
    manifest = root / STASH / MANIFEST
    if not (root / STASH).exists():
        return None
    try:
        entries = json.loads(manifest.read_text())["entries"]
        what = f"{len(entries)} files ({_mib(sum(e['size'] for e in entries))})"
    except (OSError, ValueError, KeyError):
        what = "files (manifest unreadable)"
    return (f"!!! {what} are STASHED in {STASH}/ for a device run: git status shows them deleted. "
            f"Run `python scripts/gpu_bundle.py restore` before testing or committing. !!!")


# --- the carry folder --------------------------------------------------------------------------

def subset(source: Path, out: Path, max_bytes: int) -> tuple[int, int]:
    """Copy files of ``source`` into ``out`` up to ``max_bytes``; returns (files, bytes). The order is a
    fixed hash of the names (mixes both splits and every source); files are unchanged, so the
    train/validation split by file-name hash is the same one."""
    if not source.is_dir():
        raise Refusal(f"no training folder {source} (--source)")
    files = sorted((p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda p: hashlib.sha256(b"vqz-subset:" + p.name.encode()).digest())
    if not files:
        raise Refusal(f"no images in {source}")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    total, count = 0, 0
    for path in files:
        size = path.stat().st_size
        if total + size > max_bytes:
            continue
        shutil.copy2(path, out / path.name)
        total, count = total + size, count + 1
    return count, total


def download_wheels(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
               "--implementation", "cp", "-d", str(out)]
    for platform in PLATFORMS + ["any"]:
        command += ["--platform", platform]
    subprocess.run(command + list(WHEELS), check=True)
    return sorted(out.glob("*.whl"))


def _wheel_project(path: Path) -> str:
    return path.name.split("-")[0].lower().replace("_", "-")


def prepare_wheels(out: Path, source: Path | None, download: bool) -> list[Path]:
    """``out`` holds one wheel of each package: copied from ``source`` (every wheel there) or downloaded."""
    if source is not None and sorted(source.glob("*.whl")):
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        for wheel in sorted(source.glob("*.whl")):
            shutil.copy2(wheel, out / wheel.name)
    elif not {w.split("==")[0] for w in WHEELS} <= {_wheel_project(p) for p in out.glob("*.whl")}:
        if not download:
            raise Refusal(f"no wheels in {out} and --no-download given (pass --wheels-from DIR)")
        download_wheels(out)
    return sorted(out.glob("*.whl"))


def model_only(checkpoint: Path, output: Path) -> int:
    """Write the ``model.*`` tensors of a safetensors checkpoint (bytes unchanged, metadata kept) to
    ``output``, without loading it into any framework; returns the number of tensors."""
    with checkpoint.open("rb") as source:
        (length,) = struct.unpack("<Q", source.read(8))
        header = json.loads(source.read(length))
        metadata = dict(header.pop("__metadata__", None) or {})
        keep = sorted((k for k in header if k.startswith("model.")), key=lambda k: header[k]["data_offsets"][0])
        if not keep:
            raise Refusal(f"{checkpoint} holds no model.* tensors")
        new, offset = {}, 0
        for key in keep:
            begin, end = header[key]["data_offsets"]
            new[key] = {"dtype": header[key]["dtype"], "shape": header[key]["shape"], "data_offsets": [offset, offset + end - begin]}
            offset += end - begin
        metadata["model_only_of"] = checkpoint.name
        blob = json.dumps({"__metadata__": metadata, **new}, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.with_name(output.name + ".tmp")
        with tmp.open("wb") as sink:
            sink.write(struct.pack("<Q", len(blob)) + blob)
            for key in keep:
                begin, end = header[key]["data_offsets"]
                source.seek(8 + length + begin)
                sink.write(source.read(end - begin))
        tmp.replace(output)
    return len(keep)


# --- stash and restore -------------------------------------------------------------------------

def _large_files(root: Path, min_bytes: int) -> list[str]:
    """Tracked files present and untracked files not ignored, above ``min_bytes``, outside shared/."""
    names = [n for n in tracked(root) + untracked(root) if not n.startswith("shared/")]
    return sorted({n for n in names if (root / n).is_file() and not (root / n).is_symlink()
                   and (root / n).stat().st_size > min_bytes})


def install_hook(root: Path) -> str:
    configured = subprocess.run(["git", "config", "--get", "core.hooksPath"], cwd=root, capture_output=True, text=True)
    if configured.returncode == 0 and configured.stdout.strip():
        folder = Path(os.path.expanduser(configured.stdout.strip()))
    else:
        folder = Path(_git(root, "rev-parse", "--git-path", "hooks").decode().strip())
    folder = folder if folder.is_absolute() else root / folder
    hook = folder / "pre-commit"
    if hook.exists():
        if HOOK_MARK in hook.read_text(errors="replace"):
            return f"the guard hook is in place ({hook})"
        return f"a pre-commit hook of its own exists at {hook}: the stash guard is NOT installed"
    folder.mkdir(parents=True, exist_ok=True)
    hook.write_text(HOOK)
    hook.chmod(0o755)
    return f"installed the guard hook {hook} (refuses commits that delete stashed files)"


def start(root: Path, args: argparse.Namespace) -> int:
    stash, carry = root / STASH, root / CARRY
    limit = int(args.limit_mib * 2**20)
    git_dir, common = (Path(_git(root, "rev-parse", "--absolute-git-dir").decode().strip()),
                       Path(_git(root, "rev-parse", "--git-common-dir").decode().strip()))
    if git_dir.resolve() != (common if common.is_absolute() else root / common).resolve():
        print(f"gpu_bundle: NOTE: {root} is a linked worktree; the device tool sends the checkout the session was "
              f"started in ({(common if common.is_absolute() else root / common).resolve().parent}), not this one")
    if stash.exists():
        raise Refusal(f"{STASH}/ already exists (a stash from an earlier start): run `gpu_bundle.py restore` first")
    for folder in (STASH, CARRY):
        if not is_ignored(root, folder):
            raise Refusal(f"{folder}/ is not git-ignored here (add /{folder}/ to .gitignore): it would travel or be committed")
    checkpoint = args.checkpoint if args.checkpoint.is_absolute() else root / args.checkpoint
    if not checkpoint.is_file():
        raise Refusal(f"no checkpoint {checkpoint} (--checkpoint)")
    large = _large_files(root, int(args.min_mb * 1e6))
    # the parts that do not depend on the subset, then the subset in what is left
    wheels = prepare_wheels(carry / "wheels", args.wheels_from, not args.no_download)
    tensors = model_only(checkpoint, carry / "start" / "model.safetensors")
    if (carry / "data").exists():
        shutil.rmtree(carry / "data")
    parts = travelling(root, [carry])
    rest = sum(size for files in parts.values() for name, size in files.items() if name not in large)
    budget = limit - int(args.margin_mib * 2**20) - rest
    if args.data_mb is not None:
        budget = min(budget, int(args.data_mb * 1e6))
    if budget < int(args.min_data_mb * 1e6):
        raise Refusal(f"only {_mib(max(budget, 0))} would be left for training data after {_mib(rest)} of code, wheels "
                      f"and the start checkpoint (limit {args.limit_mib:g} MiB, margin {args.margin_mib:g}): nothing moved")
    count, data_bytes = subset(args.source, carry / "data", budget)
    print(f"gpu_bundle: carry {CARRY}/: {len(wheels)} wheels, start/model.safetensors ({tensors} model tensors of "
          f"{checkpoint.relative_to(root) if checkpoint.is_relative_to(root) else checkpoint}, "
          f"{_mib((carry / 'start' / 'model.safetensors').stat().st_size)}), data/ ({count} images, {_mib(data_bytes)})")

    blobs, index = hash_objects(root, large), index_blobs(root)
    entries = [{"path": name, "size": (root / name).stat().st_size, "blob": blob, "tracked": name in index,
                "index_blob": index.get(name)} for name, blob in zip(large, blobs)]
    (stash / "files").mkdir(parents=True)
    (stash / MANIFEST).write_text(json.dumps({"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                              "entries": entries}, indent=1) + "\n")
    (stash / "FILES").write_text("".join(e["path"] + "\n" for e in entries))
    for entry in entries:  # the manifest is written first: restore copes with a start cut short
        target = stash / "files" / entry["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(root / entry["path"], target)
    print(f"gpu_bundle: stashed {len(entries)} files ({_mib(sum(e['size'] for e in entries))}) in {STASH}/: "
          + ", ".join(e["path"] for e in entries))

    total, lines = report(root, [carry], args.limit_mib)
    print("\n".join(lines))
    if total * 2**20 > limit:
        restore(root)
        raise Refusal(f"still {total:.1f} MiB after stashing, over the {args.limit_mib:g} MiB limit: restored, nothing stashed")
    if not args.no_hook:
        print("gpu_bundle: " + install_hook(root))
    print(stash_warning(root))
    print("gpu_bundle: the device call (README, One-shot GPU run); then `python scripts/gpu_bundle.py restore`:\n"
          f"  carry: [\"{CARRY}\"]\n  timeout_s: {DEVICE_TIMEOUT_S}\n  command: {DEVICE_COMMAND}\n"
          "  (add --model-id ID to export under a new id: a retrained model must not reuse the shipped one's)")
    return 0


DEVICE_COMMAND = ("scripts/gpu_oneshot.sh --checkpoint gpu-carry/start/model.safetensors --data gpu-carry/data "
                  "--wheels gpu-carry/wheels --out oneshot-out --pack-into \"$OUT\" --max-minutes 6 --deadline 540")
DEVICE_TIMEOUT_S = 570


def restore(root: Path) -> int:
    stash = root / STASH
    if not stash.exists():
        print("gpu_bundle: nothing stashed")
        return 0
    try:
        entries = json.loads((stash / MANIFEST).read_text())["entries"]
    except (OSError, ValueError, KeyError) as exc:
        raise Refusal(f"{STASH}/{MANIFEST} unreadable ({exc}): move the files under {STASH}/files/ back by hand") from None
    problems, moved = [], 0
    for entry in entries:
        name, kept = entry["path"], stash / "files" / entry["path"]
        here = root / name
        if kept.exists():
            if here.exists() or here.is_symlink():
                if here.is_file() and hash_objects(root, [name])[0] == entry["blob"]:
                    kept.unlink()  # already back (e.g. `git checkout -- .`): same bytes
                    continue
                problems.append(f"{name}: a different file is in its place; the stashed one is kept in {kept}")
                continue
            here.parent.mkdir(parents=True, exist_ok=True)
            os.replace(kept, here)
            moved += 1
        elif not here.is_file():
            problems.append(f"{name}: neither in the tree nor in the stash")
            continue
        if hash_objects(root, [name])[0] != entry["blob"]:
            problems.append(f"{name}: its bytes differ from the ones stashed (blob {entry['blob']})")
    index = index_blobs(root)
    for entry in entries:
        if entry["tracked"] and index.get(entry["path"]) != entry["index_blob"]:
            problems.append(f"{entry['path']}: the index changed while it was stashed (now {index.get(entry['path'])}, "
                            f"was {entry['index_blob']}): a commit or `git rm` deleted it? check `git log -- {entry['path']}`, or `git restore --staged` it")
    if problems:
        for problem in problems:
            print(f"gpu_bundle: restore: {problem}", file=sys.stderr)
        raise Refusal(f"restore incomplete ({len(problems)} problem(s) above); {STASH}/ kept")
    shutil.rmtree(stash)
    paths = [e["path"] for e in entries if e["tracked"]]
    modified = _z(_git(root, "status", "--porcelain", "-z", "--", *paths)) if paths else []
    same = sum(1 for e in entries if e["tracked"] and e["blob"] == e["index_blob"])
    print(f"gpu_bundle: restored {moved} of {len(entries)} files ({_mib(sum(e['size'] for e in entries))}), each "
          f"byte-identical to its stashed blob ({same} of {len(paths)} tracked ones also to the index); {STASH}/ removed; "
          + (f"git status of the tracked ones: clean" if not modified else f"git status of the tracked ones: {modified}"))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    begin = commands.add_parser("start", help="carry folder + stash of the large files + size check")
    begin.add_argument("--checkpoint", type=Path, default=Path(DEFAULT_CHECKPOINT),
                       help="training checkpoint whose model.* tensors start the run (default %(default)s)")
    begin.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "data" / "train", help="training folder")
    begin.add_argument("--data-mb", type=float, help="at most this many MB of training images (default: what is left)")
    begin.add_argument("--min-data-mb", type=float, default=1.0, help="refuse if less is left for data (default %(default)s)")
    begin.add_argument("--min-mb", type=float, default=1.0, help="stash files above this size (default %(default)s MB)")
    begin.add_argument("--margin-mib", type=float, default=4.0, help="kept free under the limit (default %(default)s)")
    begin.add_argument("--limit-mib", type=float, default=LIMIT_MIB, help=argparse.SUPPRESS)
    begin.add_argument("--wheels-from", type=Path, help="copy the wheels from this folder instead of downloading")
    begin.add_argument("--no-download", action="store_true", help="never download wheels")
    begin.add_argument("--no-hook", action="store_true", help="do not install the pre-commit guard")
    commands.add_parser("restore", help="put the stashed files back (a no-op when nothing is stashed)")
    size = commands.add_parser("size", aliases=["status"], help="what travels now, against the 64 MiB limit")
    size.add_argument("--carry", type=Path, nargs="*", default=[Path(CARRY)], help="carried paths (default %(default)s)")
    size.add_argument("--limit-mib", type=float, default=LIMIT_MIB, help=argparse.SUPPRESS)
    size.add_argument("--list", type=Path, help="also write the relative paths that travel to this file, one a line")
    data = commands.add_parser("data", help="build the training subset alone")
    data.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "data" / "train")
    data.add_argument("--out", type=Path, default=ROOT / CARRY / "data")
    data.add_argument("--max-mb", type=float, default=40.0)
    wheels = commands.add_parser("wheels", help="download the wheels a PyTorch image lacks")
    wheels.add_argument("--out", type=Path, default=ROOT / CARRY / "wheels")
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            return start(ROOT, args)
        if args.command == "restore":
            return restore(ROOT)
        if args.command in ("size", "status"):
            warning = stash_warning(ROOT)
            if warning:
                print(warning)
            total, lines = report(ROOT, args.carry, args.limit_mib)
            print("\n".join(lines))
            if args.list:
                names = [n for files in travelling(ROOT, args.carry).values() for n in files]
                args.list.write_text("".join(n + "\n" for n in names))
            if warning:
                print(warning)
            return 0 if total <= args.limit_mib else 1
        if args.command == "data":
            count, total = subset(args.source, args.out, int(args.max_mb * 1e6))
            print(f"gpu_bundle: {count} images, {total / 1e6:.1f} MB in {args.out}")
            return 0
        for wheel in download_wheels(args.out):
            print(f"gpu_bundle: {wheel.name} ({wheel.stat().st_size / 1e6:.2f} MB)")
        return 0
    except Refusal as refusal:
        print(f"gpu_bundle: {args.command}: refused: {refusal}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as error:
        print(f"gpu_bundle: {args.command}: {' '.join(map(str, error.cmd[:3]))} failed: "
              f"{(error.stderr or b'').decode(errors='replace').strip()}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
