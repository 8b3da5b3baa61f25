"""Perceptual metrics that run fully offline, beside PSNR and MS-SSIM.

* ColorVideoVDP (PyPI ``cvvdp``, import ``pycvvdp``): JOD (just-objectionable differences, 10 =
  no visible difference, higher is better), display model ``standard_fhd`` (a 24-inch full-HD
  monitor at 60 cm), CPU, one thread unless torch was told otherwise.
* butteraugli (Debian ``libjxl-devtools``: ``butteraugli_main --pnorm 3``): the 3-norm of the
  distance map (lower is better, a fidelity metric); :func:`butteraugli_available` is False and
  the value ``nan`` where the tool is not installed.
* fine-detail energy kept (:func:`vqz.benchmarks.metrics.detail_ratio`): 1.0 keeps all of the
  finest luma band, below 1 is blur.

None of these is comparable with published FID, LPIPS or DISTS figures: those need network
weights that must be downloaded, which this benchmark never does.

Images are (H, W, 3) uint8 RGB arrays (nonlinear sRGB).
"""

from __future__ import annotations

import functools
import math
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from vqz.benchmarks.errors import BenchmarkError
from vqz.benchmarks.metrics import detail_ratio

__all__ = ["BUTTERAUGLI", "CVVDP_DISPLAY", "butteraugli_3norm", "butteraugli_available", "cvvdp_jod", "detail_ratio"]

CVVDP_DISPLAY = "standard_fhd"
BUTTERAUGLI = "butteraugli_main"


@functools.lru_cache(maxsize=1)
def _cvvdp():
    try:
        import pycvvdp
        import torch
    except ImportError as exc:
        raise BenchmarkError(f"ColorVideoVDP needs `pip install cvvdp` ({exc})") from None
    return pycvvdp.cvvdp(display_name=CVVDP_DISPLAY, quiet=True, device=torch.device("cpu"))


def cvvdp_jod(reference: np.ndarray, decoded: np.ndarray) -> float:
    """ColorVideoVDP JOD of ``decoded`` against ``reference`` on :data:`CVVDP_DISPLAY` (10 = identical)."""
    import torch

    with torch.no_grad():
        jod, _ = _cvvdp().predict(decoded, reference, dim_order="HWC")
    return float(jod)


def butteraugli_available() -> bool:
    return shutil.which(BUTTERAUGLI) is not None


def butteraugli_3norm(reference: np.ndarray, decoded: np.ndarray) -> float:
    """butteraugli's 3-norm of ``decoded`` against ``reference``; ``nan`` without ``butteraugli_main``."""
    if not butteraugli_available():
        return math.nan
    from PIL import Image

    with tempfile.TemporaryDirectory() as folder:
        ref, dec = Path(folder) / "ref.png", Path(folder) / "dec.png"
        Image.fromarray(reference).save(ref, compress_level=1)
        Image.fromarray(decoded).save(dec, compress_level=1)
        result = subprocess.run([BUTTERAUGLI, str(ref), str(dec), "--pnorm", "3"], capture_output=True, text=True)
    for line in result.stdout.splitlines():
        if line.startswith("3-norm:"):
            return float(line.split(":", 1)[1])
    raise BenchmarkError(f"{BUTTERAUGLI} gave no 3-norm: {(result.stderr or result.stdout).strip()[:200]}")
