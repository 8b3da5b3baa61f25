"""One-shot training on a machine with a GPU (or, for the smoke test, a CPU): see scripts/gpu_oneshot.sh.

From a committed checkpoint, on a carried training subset, for a fixed wall-clock budget:

1. held-out PSNR of the starting model (the subset's validation split, as `vqz train` logs it);
2. ``vqz train`` with ``max_minutes`` (checkpoints as it goes; stops cleanly; the LR decay
   follows the time spent); an existing checkpoint in ``OUT/run`` is resumed;
3. held-out PSNR of the trained model; a model-only copy of the checkpoint (``run/model.safetensors``,
   no Adam state: a third of the size, usable as ``init_from`` or to ``--resume``);
4. ``vqz export-model``'s finalize (entropy tables from at most ``--limit`` training images);
5. an encode/decode round trip of a held-out image through vqz's API with the new weights;
6. ``summary.json``.

Everything lands in ``--out``. ``python scripts/gpu_oneshot.py --link-source SITE`` (run by the
shell script before anything imports vqz) lays out the ``vqz`` package from this checkout in
``SITE`` as pyproject.toml maps it, so nothing is built or installed from an index.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = "configs/gpu.toml"
CARRIED_START = "gpu-carry/start/model.safetensors"  # scripts/gpu_bundle.py start
CARRIED_DATA = "gpu-carry/data"


def link_source(site: Path) -> None:
    """``site/vqz`` = this checkout's packages (symbolic links), as [tool.setuptools] package-dir maps them."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    package = site / "vqz"
    if package.is_symlink() or package.is_file():
        package.unlink()
    elif package.exists():
        shutil.rmtree(package)  # links only: rmtree does not follow them
    package.mkdir(parents=True)
    for entry in (ROOT / mapping["vqz"]).iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for name, folder in mapping.items():
        if name != "vqz":
            (package / name.split(".", 1)[1]).symlink_to(ROOT / folder)


def _held_out_psnr(checkpoint: Path, images: list, device, levels: list[int]) -> dict[int, float]:
    from vqz.training.finalize import load_checkpoint_model
    from vqz.training.train import validate

    model, _ = load_checkpoint_model(checkpoint)
    levels = [level for level in levels if level <= model.config.num_stages]
    return {level: round(psnr, 3) for level, psnr in validate(model.to(device), images, device, levels).items()}


def _model_only(checkpoint: Path, output: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(checkpoint), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
    tensors = {k: v for k, v in load_file(str(checkpoint)).items() if k.startswith("model.")}
    save_file(tensors, str(output), metadata=metadata)


def _round_trip(weights_path: Path, images: list, quality: int) -> dict[str, float]:
    """Encode and decode one held-out image (a 256x256 centre crop at most) with the exported weights."""
    import numpy as np

    from vqz.codec.pipeline import decode_bytes, encode_array
    from vqz.codec.weights import load_weights

    image = max(images, key=lambda im: min(im.shape[:2]))
    h, w = image.shape[:2]
    s = min(256, h, w)
    crop = np.ascontiguousarray(image[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s])
    weights = load_weights(weights_path)
    data, _ = encode_array(weights, crop, quality)
    decoded = decode_bytes(weights, data)
    if decoded.shape != crop.shape:
        raise RuntimeError(f"decoded shape {decoded.shape} != {crop.shape}")
    mse = float(np.mean((decoded.astype(np.float64) - crop.astype(np.float64)) ** 2))
    return {"quality": quality, "bpp": round(8 * len(data) / (s * s), 4),
            "psnr": round(10 * np.log10(255**2 / max(mse, 1e-10)), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--link-source", type=Path, help="only lay out the vqz package in this folder, then exit")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="training config (default %(default)s)")
    parser.add_argument("--checkpoint", help="starting checkpoint (default: the config's init_from, or "
                        f"{CARRIED_START} where that is absent, as in a tree stashed by gpu_bundle.py start)")
    parser.add_argument("--data", help=f"training image folder carried along (default {CARRIED_DATA}, else gpu-data)")
    parser.add_argument("--model-id", help="id of the exported model (default: the config's; a retrained model "
                        "ships under a new id, checkpoints/README.md)")
    parser.add_argument("--out", default="oneshot-out", help="output folder (default %(default)s)")
    parser.add_argument("--max-minutes", type=float, default=6.0, help="training wall-clock budget (default %(default)s)")
    parser.add_argument("--steps", type=int, help="override the config's step budget")
    parser.add_argument("--precision", choices=("bf16", "fp32"), help="override the config's precision")
    parser.add_argument("--limit", type=int, default=48, help="training images counted for the entropy tables (default %(default)s)")
    args = parser.parse_args(argv)
    if args.link_source:
        link_source(args.link_source)
        return 0

    import torch

    from vqz.training.data import load_split
    from vqz.training.finalize import finalize
    from vqz.training.loop import autocast_enabled
    from vqz.training.train import TrainConfig, train, validation_levels

    began = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = args.data or (CARRIED_DATA if Path(CARRIED_DATA).is_dir() else "gpu-data")
    overrides: dict[str, object] = {"data": data, "out": str(out / "run"), "max_minutes": args.max_minutes}
    if args.checkpoint:
        overrides["init_from"] = args.checkpoint
    else:
        configured = TrainConfig.from_toml(Path(args.config)).init_from
        if configured and not Path(configured).is_file() and Path(CARRIED_START).is_file():
            overrides["init_from"] = CARRIED_START
            print(f"gpu_oneshot: {configured} is not in this tree (stashed?); starting from {CARRIED_START}", flush=True)
    if args.model_id:
        overrides["model_id"] = args.model_id
    if args.steps:
        overrides["steps"] = args.steps
    if args.precision:
        overrides["precision"] = args.precision
    config = TrainConfig.from_toml(Path(args.config), overrides)
    if not config.init_from or not Path(config.init_from).is_file():
        print(f"gpu_oneshot: starting checkpoint {config.init_from!r} not found (pass --checkpoint; "
              "scripts/gpu_bundle.py start writes gpu-carry/start/model.safetensors)", file=sys.stderr)
        return 1
    if not Path(config.data).is_dir():
        print(f"gpu_oneshot: no training folder {config.data!r} (pass --data)", file=sys.stderr)
        return 1
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # what the run trains in: train's own rule (bf16 falls back to fp32 on a CPU without native bf16)
    precision = "bf16" if autocast_enabled(config.precision, device, announce=False) else "fp32"
    facts: dict[str, object] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "vqz": str(Path(sys.modules["vqz"].__file__).parent), "config": args.config, "start": config.init_from, "data": config.data,
        "model_id": config.model_id, "max_minutes": config.max_minutes, "precision": precision, "batch": config.batch, "crop": config.crop,
    }
    print(f"gpu_oneshot: {json.dumps(facts)}", flush=True)
    _, val_images, _ = load_split(Path(config.data), config.validation_fraction)
    levels = validation_levels(config)
    facts["held_out_images"] = len(val_images)
    facts["psnr_before"] = _held_out_psnr(Path(config.init_from), val_images, device, levels)
    print(f"gpu_oneshot: held-out PSNR before {facts['psnr_before']}", flush=True)

    started = time.time()
    checkpoint = train(config, resume=True, progress=sys.stdout.isatty())
    facts["train_seconds"] = round(time.time() - started, 1)
    rows = (out / "run" / "log.csv").read_text().splitlines()
    print("\n".join(rows[:1] + rows[-5:]), flush=True)
    from safetensors import safe_open

    with safe_open(str(checkpoint), framework="pt") as handle:
        facts["steps"] = int((handle.metadata() or {})["step"])
    facts["psnr_after"] = _held_out_psnr(checkpoint, val_images, device, levels)
    print(f"gpu_oneshot: {facts['steps']} steps in {facts['train_seconds']} s; held-out PSNR after {facts['psnr_after']}", flush=True)
    _model_only(checkpoint, out / "run" / "model.safetensors")

    started = time.time()
    weights = out / f"{config.model_id}.safetensors"
    finalize(checkpoint, weights, Path(config.data), config.validation_fraction,
             facts={"oneshot": {k: facts[k] for k in ("device", "steps", "train_seconds", "start")}}, limit=args.limit)
    from vqz.training.export import export_graphs

    export_graphs(weights)  # the runtime's ONNX graphs, bound to these weights
    facts["finalize_seconds"] = round(time.time() - started, 1)
    facts["weights"] = str(weights)
    facts["round_trip"] = _round_trip(weights, val_images or load_split(Path(config.data), 0.0)[0], config.model.num_stages)
    facts["total_seconds"] = round(time.time() - began, 1)
    (out / "summary.json").write_text(json.dumps(facts, indent=2) + "\n")
    print(f"gpu_oneshot: wrote {weights} (finalize {facts['finalize_seconds']} s); round trip {facts['round_trip']}; "
          f"total {facts['total_seconds']} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
