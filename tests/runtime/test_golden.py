"""The golden files: for every bundled model, today's encoder writes the same bytes and
today's decoder reads them. A file written by a model that once shipped must keep decoding,
so each model keeps its own golden file for as long as it is installed.

A new model gets its files with ``.venv/bin/python tests/make_golden.py``; existing ones are
never regenerated.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import vqz
from vqz.codec.registry import DEFAULT_MODEL_ID, WEIGHTS_DIR, available_models

from conftest import DATA
from make_golden import golden_paths

BUNDLED = sorted(e.model_id for e in available_models() if e.path.parent == WEIGHTS_DIR)


def test_every_bundled_model_has_golden_files_and_the_default_is_bundled():
    assert DEFAULT_MODEL_ID in BUNDLED
    for model_id in BUNDLED:
        assert all(path.exists() for path in golden_paths(model_id)), model_id


@pytest.mark.parametrize("model_id", BUNDLED)
def test_golden_file_decodes_to_the_golden_pixels(model_id: str):
    coded, decoded_png = golden_paths(model_id)
    decoded = vqz.decode_array(coded.read_bytes())  # the header picks the model
    expected = np.asarray(Image.open(decoded_png))
    # indices are bit-exact by construction; the float synthesis may differ by rounding on other CPUs
    assert decoded.shape == expected.shape
    assert np.abs(decoded.astype(int) - expected.astype(int)).max() <= 1


@pytest.mark.parametrize("model_id", BUNDLED)
def test_encoder_reproduces_the_golden_bytes(model_id: str):
    # Since session 11 a stage-only level may also ask for the post-filter (where it helps, as here):
    # without that reference, today's file is the golden one byte for byte.
    from vqz.bitstream import unpack_file
    from vqz.codec.postfilter import stage_postfilter

    from conftest import without_postfilter

    coded, _ = golden_paths(model_id)
    data = vqz.encode(DATA / "golden.png", quality=3, model=model_id)
    ref = unpack_file(data).header.postfilter
    assert ref is None or (ref.filter_hash == stage_postfilter().filter_hash and ref.strength == 92.0)
    assert without_postfilter(data) == coded.read_bytes()


@pytest.mark.parametrize("model_id", BUNDLED)
def test_golden_header_says_what_it_is(model_id: str):
    info = vqz.read_info(golden_paths(model_id)[0].read_bytes())
    assert (info.width, info.height, info.quality, info.format_version, info.model_id) == (48, 40, 3, 2, model_id)


def test_default_encode_uses_the_default_model():
    assert vqz.read_info(vqz.encode(DATA / "golden.png", quality=1)).model_id == DEFAULT_MODEL_ID
