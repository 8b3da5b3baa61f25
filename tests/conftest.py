"""Shared fixtures: the bundled model, small deterministic test images, the shared data folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
KODAK = SHARED / "data" / "kodak"
DATA = Path(__file__).resolve().parent / "data"


def pytest_report_header(config: pytest.Config) -> list[str]:
    """One loud line when ../shared (Kodak, the training photos, published curves) is missing: the tests
    that read it are skipped, and the run checks less than it seems to."""
    if SHARED.is_dir():
        return [f"shared data: {SHARED}"]
    return [f"WARNING: {SHARED} is missing: every test that reads Kodak or the training photos is SKIPPED"]


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to run while scripts/gpu_bundle.py has moved the weights and checkpoints out of the tree."""
    stash = ROOT / ".device-stash"
    if stash.exists():
        pytest.exit(f"{stash} exists: the large files are stashed for a device run (git status shows them deleted); "
                    "run `python scripts/gpu_bundle.py restore` first", returncode=3)


@pytest.fixture(scope="session")
def model():
    from vqz.codec.registry import load_model

    return load_model()


def smooth_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic, photo-like (smooth + mild noise) (H, W, 3) uint8 image."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = [
        127 + 90 * np.sin(x / (7 + 3 * c) + c) * np.cos(y / (11 + 2 * c)) + rng.normal(0, 4, (height, width))
        for c in range(3)
    ]
    return np.clip(np.stack(channels, axis=2), 0, 255).astype(np.uint8)


@pytest.fixture
def kodak_dir() -> Path:
    if not KODAK.is_dir():
        pytest.skip("../shared/data/kodak is not available")
    return KODAK


@pytest.fixture
def kodak_crop_folder(tmp_path: Path) -> Path:
    """A folder holding 64x64 crops (PNG) of kodim05 and kodim23; skips without ../shared."""
    if not KODAK.is_dir():
        pytest.skip(f"{KODAK} is not available")
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("kodim05.png", "kodim23.png"):
        with Image.open(KODAK / name) as im:
            im.convert("RGB").crop((300, 200, 364, 264)).save(folder / name)
    return folder


def write_training_images(folder: Path, fraction: float) -> Path:
    """Four smooth random photo-like PNGs in ``folder``: one in the held-out split of
    ``fraction`` (``vqz.training.data.is_validation``) and three for training."""
    from PIL import Image

    from vqz.training.data import is_validation

    names = [f"photo{i:02d}.png" for i in range(50)]
    chosen = [n for n in names if is_validation(n, fraction)][:1] + [n for n in names if not is_validation(n, fraction)][:3]
    rng = np.random.default_rng(1)
    for name in chosen:
        coarse = rng.integers(0, 256, (6, 7, 3)).astype(np.uint8)
        Image.fromarray(coarse).resize((56, 48), Image.BILINEAR).save(folder / name)
    return folder


def photo_crop(height: int = 96, width: int = 128) -> np.ndarray:
    """A Kodak crop when the data is here (texture the coarse stages miss), else a noisy synthetic image."""
    if KODAK.is_dir():
        from PIL import Image

        with Image.open(KODAK / "kodim05.png") as image:
            return np.asarray(image.convert("RGB"))[100 : 100 + height, 200 : 200 + width].copy()
    rng = np.random.default_rng(3)
    return np.clip(smooth_image(height, width, seed=9).astype(int) + rng.normal(0, 25, (height, width, 3)), 0, 255).astype(np.uint8)


def without_postfilter(data: bytes) -> bytes:
    """``data`` with its post-filter reference removed (same stages, residual layer, alpha and chunks):
    what the file decodes to before the filter."""
    from dataclasses import replace

    from vqz.bitstream import pack, unpack_file

    parsed = unpack_file(data)
    return pack(replace(parsed.header, postfilter=None), parsed.payloads, parsed.alpha, residual=parsed.residual,
                exif=parsed.exif, xmp=parsed.xmp, icc=parsed.icc)
