"""Regenerate the golden files of the bundled models:

    .venv/bin/python tests/make_golden.py            # every bundled model whose files are missing
    .venv/bin/python tests/make_golden.py MODEL_ID   # (re)write one model's files

Writes tests/data/golden.png (a deterministic synthetic 48x40 image, only if missing) and,
per model, tests/data/golden-<model id>-q3.vqz (its encoding at quality 3) and
tests/data/golden-<model id>-q3-decoded.png (what decoding that file gives); once, a file with a
pixel residual layer (format version 3) of a textured image, tests/data/golden-residual-*, and once
a file that asks for the post-filter (format version 4), tests/data/golden-postfilter-*, and once a
stage-only file that asks for it (session 11's `vqz-pf2`), tests/data/golden-postfilter-stages-<model id>-*,
once per later stage-level filter, tests/data/golden-postfilter-stages-<filter id>-*, and once per
later residual-level filter, tests/data/golden-postfilter-<filter id>-*. The
files of a model or filter that ships are never rewritten: they prove that files it wrote keep decoding.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from conftest import smooth_image  # noqa: E402

import vqz  # noqa: E402
from vqz.codec.registry import WEIGHTS_DIR, available_models  # noqa: E402

GOLDEN_QUALITY = 3
#: A level with a pixel residual layer (format version 3), coded from a textured synthetic image.
RESIDUAL_QUALITY = 12
RESIDUAL_MODEL = "vqz-rvq16b-f8"
#: A level whose file asks for the post-filter (format version 4), coded from the same textured image.
POSTFILTER_QUALITY = 8
#: A stage-only level whose file asks for the post-filter (a filter trained on those levels), same image.
STAGE_POSTFILTER_QUALITY = 3


def golden_paths(model_id: str) -> tuple[Path, Path]:
    """(the .vqz file, its decoded PNG) of ``model_id``."""
    stem = HERE / "data" / f"golden-{model_id}-q{GOLDEN_QUALITY}"
    return stem.with_suffix(".vqz"), Path(f"{stem}-decoded.png")


def residual_paths(model_id: str) -> tuple[Path, Path]:
    """(the .vqz file with a residual layer, its decoded PNG) of ``model_id``."""
    stem = HERE / "data" / f"golden-residual-{model_id}-q{RESIDUAL_QUALITY}"
    return stem.with_suffix(".vqz"), Path(f"{stem}-decoded.png")


def postfilter_paths() -> tuple[Path, Path]:
    """(the .vqz file that asks for the post-filter, its decoded PNG)."""
    stem = HERE / "data" / f"golden-postfilter-{RESIDUAL_MODEL}-q{POSTFILTER_QUALITY}"
    return stem.with_suffix(".vqz"), Path(f"{stem}-decoded.png")


#: The first filter of the stage-only levels: its golden file's name carries no filter id.
FIRST_STAGE_POSTFILTER_ID = "vqz-pf2"


def stage_postfilter_paths(filter_id: str = FIRST_STAGE_POSTFILTER_ID) -> tuple[Path, Path]:
    """(a stage-only .vqz file that asks for the post-filter ``filter_id``, its decoded PNG): one per
    stage-level filter shipped."""
    tag = "" if filter_id == FIRST_STAGE_POSTFILTER_ID else f"{filter_id}-"
    stem = HERE / "data" / f"golden-postfilter-stages-{tag}{RESIDUAL_MODEL}-q{STAGE_POSTFILTER_QUALITY}"
    return stem.with_suffix(".vqz"), Path(f"{stem}-decoded.png")


def residual_postfilter_paths(filter_id: str) -> tuple[Path, Path]:
    """(a residual-level .vqz file that asks for the post-filter ``filter_id``, its decoded PNG): one per
    residual-level filter shipped after the first."""
    stem = HERE / "data" / f"golden-postfilter-{filter_id}-{RESIDUAL_MODEL}-q{POSTFILTER_QUALITY}"
    return stem.with_suffix(".vqz"), Path(f"{stem}-decoded.png")


def _write_filtered(quality: int, paths: tuple[Path, Path], filter_id: str | None, what: str) -> None:
    """Encode the golden texture at ``quality`` and write it (and its decoding) to ``paths``; the file
    must ask for a post-filter, and for ``filter_id`` when one is named."""
    from vqz.bitstream import unpack_file
    from vqz.codec.postfilter import postfilter_for_ref

    encoded = vqz.encode(HERE / "data" / "golden-texture.png", quality=quality, model=RESIDUAL_MODEL)
    ref = unpack_file(encoded).header.postfilter
    if ref is None or (filter_id is not None and postfilter_for_ref(ref).filter_id != filter_id):
        raise SystemExit(f"the encoder did not ask for the {what} on the golden texture")
    coded, decoded = paths
    coded.write_bytes(encoded)
    Image.fromarray(vqz.decode_array(encoded)).save(decoded)
    print(f"golden {what}: {len(encoded)} bytes")


def write_residual_postfilter(filter_id: str) -> None:
    _write_filtered(POSTFILTER_QUALITY, residual_postfilter_paths(filter_id), filter_id, f"post-filter {filter_id}")


def write_stage_postfilter(filter_id: str) -> None:
    _write_filtered(STAGE_POSTFILTER_QUALITY, stage_postfilter_paths(filter_id), filter_id,
                    f"stage-only level's post-filter {filter_id}")


def write_postfilter() -> None:
    _write_filtered(POSTFILTER_QUALITY, postfilter_paths(), None, "post-filter")


def textured_image() -> "np.ndarray":
    """A deterministic 64x48 image with texture the first stages miss (smooth + strong noise)."""
    import numpy as np

    rng = np.random.default_rng(7)
    noisy = smooth_image(48, 64, seed=8).astype(np.int64) + rng.integers(-40, 41, (48, 64, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def write_residual(model_id: str) -> None:
    source = HERE / "data" / "golden-texture.png"
    if not source.exists():
        Image.fromarray(textured_image()).save(source)
    encoded = vqz.encode(source, quality=RESIDUAL_QUALITY, model=model_id)
    coded, decoded = residual_paths(model_id)
    coded.write_bytes(encoded)
    Image.fromarray(vqz.decode_array(encoded)).save(decoded)
    print(f"golden residual: {len(encoded)} bytes, model {model_id}")


def write(model_id: str) -> None:
    source = HERE / "data" / "golden.png"
    encoded = vqz.encode(source, quality=GOLDEN_QUALITY, model=model_id)
    coded, decoded = golden_paths(model_id)
    coded.write_bytes(encoded)
    Image.fromarray(vqz.decode_array(encoded)).save(decoded)
    print(f"golden: {len(encoded)} bytes, model {model_id} {vqz.read_info(encoded).model_hash}")


def main() -> None:
    data_dir = HERE / "data"
    data_dir.mkdir(exist_ok=True)
    source = data_dir / "golden.png"
    if not source.exists():
        Image.fromarray(smooth_image(40, 48, seed=42)).save(source)
    if len(sys.argv) > 1:
        write(sys.argv[1])
        return
    for entry in available_models():
        if entry.path.parent == WEIGHTS_DIR and not golden_paths(entry.model_id)[0].exists():
            write(entry.model_id)
    if not residual_paths(RESIDUAL_MODEL)[0].exists():
        write_residual(RESIDUAL_MODEL)
    if not postfilter_paths()[0].exists():
        write_postfilter()
    from vqz.codec.postfilter import DEFAULT_POSTFILTER_ID, STAGE_POSTFILTER_ID

    if not stage_postfilter_paths(STAGE_POSTFILTER_ID)[0].exists():
        write_stage_postfilter(STAGE_POSTFILTER_ID)
    if DEFAULT_POSTFILTER_ID != "vqz-pf1" and not residual_postfilter_paths(DEFAULT_POSTFILTER_ID)[0].exists():
        write_residual_postfilter(DEFAULT_POSTFILTER_ID)


if __name__ == "__main__":
    main()
