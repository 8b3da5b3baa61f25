"""The golden file: today's encoder writes the same bytes, today's decoder reads them.

If the bundled weights change on purpose, regenerate with ``.venv/bin/python tests/make_golden.py``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

import vqz

from conftest import DATA


def test_golden_file_decodes_to_the_golden_pixels():
    decoded = vqz.decode_array((DATA / "golden_q3.vqz").read_bytes())
    expected = np.asarray(Image.open(DATA / "golden_q3_decoded.png"))
    # indices are bit-exact by construction; the float synthesis may differ by rounding on other CPUs
    assert decoded.shape == expected.shape
    assert np.abs(decoded.astype(int) - expected.astype(int)).max() <= 1


def test_encoder_reproduces_the_golden_bytes():
    assert vqz.encode(DATA / "golden.png", quality=3) == (DATA / "golden_q3.vqz").read_bytes()


def test_golden_header_says_what_it_is():
    info = vqz.read_info((DATA / "golden_q3.vqz").read_bytes())
    assert (info.width, info.height, info.quality, info.format_version) == (48, 40, 3, 2)
