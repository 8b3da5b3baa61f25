"""Regenerate the golden files after the bundled weights change:

    .venv/bin/python tests/make_golden.py

Writes tests/data/golden.png (a deterministic synthetic 48x40 image, only if missing),
tests/data/golden_q3.vqz (its encoding at quality 3 with the default model) and
tests/data/golden_q3_decoded.png (what decoding that file gives).
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from conftest import smooth_image  # noqa: E402

import vqz  # noqa: E402

GOLDEN_QUALITY = 3


def main() -> None:
    data_dir = HERE / "data"
    data_dir.mkdir(exist_ok=True)
    source = data_dir / "golden.png"
    if not source.exists():
        Image.fromarray(smooth_image(40, 48, seed=42)).save(source)
    encoded = vqz.encode(source, quality=GOLDEN_QUALITY)
    (data_dir / f"golden_q{GOLDEN_QUALITY}.vqz").write_bytes(encoded)
    Image.fromarray(vqz.decode_array(encoded)).save(data_dir / f"golden_q{GOLDEN_QUALITY}_decoded.png")
    print(f"golden: {len(encoded)} bytes, model {vqz.read_info(encoded).model_id} {vqz.read_info(encoded).model_hash}")


if __name__ == "__main__":
    main()
