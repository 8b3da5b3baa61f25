"""Rate control: one encode at the maximum quality gives every level, and the searches pick right."""

from __future__ import annotations

import math

import numpy as np
import pytest

import vqz
from vqz.bitstream import unpack
from vqz.codec.pipeline import decode_bytes, encode_array, quality_range
from vqz.codec.rate_control import QualityLadder, choose_for_bpp, choose_for_psnr, encode_for_target, psnr

from conftest import smooth_image


@pytest.fixture(scope="module")
def ladder(model) -> QualityLadder:
    return QualityLadder(model, smooth_image(40, 56, seed=11))


def test_a_repacked_prefix_is_byte_identical_to_a_direct_encode_at_every_quality(model, ladder):
    # The whole of rate control rests on this (docs/FORMAT.md): if it fails, the quantizer or
    # the entropy coder has stopped being stage-by-stage greedy, and --target-* would write
    # files that differ from what -q writes. Do not loosen this test; fix the codec.
    for quality in quality_range(model):
        direct, _ = encode_array(model, ladder.rgb, quality)
        assert ladder.file(quality) == direct, f"prefix repack differs from a direct encode at quality {quality}"
        assert unpack(direct)[0].quality == quality


def test_file_sizes_grow_with_quality(ladder):
    sizes = [len(ladder.file(q)) for q in ladder.levels]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)


def test_target_bpp_picks_the_highest_quality_that_fits(ladder):
    for quality in ladder.levels:
        choice = choose_for_bpp(ladder, ladder.bpp(quality))  # exactly the size of that level
        assert choice.quality == quality and choice.met
        assert choice.data == ladder.file(quality) and choice.bpp == ladder.bpp(quality)
    between = (ladder.bpp(2) + ladder.bpp(3)) / 2
    assert choose_for_bpp(ladder, between).quality == 2


def test_an_unreachable_target_bpp_falls_back_to_quality_1(ladder):
    choice = choose_for_bpp(ladder, ladder.bpp(1) / 2)
    assert choice.quality == 1 and not choice.met
    assert choose_for_bpp(ladder, 1e9).quality == ladder.levels[-1]


def test_target_psnr_reaches_the_target_and_the_level_below_does_not(ladder):
    for target in (ladder.psnr(1) - 1, ladder.psnr(3), ladder.psnr(ladder.levels[-1])):
        choice = choose_for_psnr(ladder, target)
        assert choice.met and choice.psnr >= target
        assert choice.psnr == psnr(ladder.rgb, decode_bytes(ladder.weights, choice.data))
        assert choice.quality == 1 or ladder.psnr(choice.quality - 1) < target


def test_an_unreachable_target_psnr_falls_back_to_the_best_quality(ladder):
    choice = choose_for_psnr(ladder, 200.0)
    assert choice.quality == ladder.levels[-1] and not choice.met


class _TableLadder:
    """A stand-in ladder with given PSNRs per level that counts the decodes it is asked for."""

    def __init__(self, psnrs: list[float]) -> None:
        self.levels = range(1, len(psnrs) + 1)
        self._psnrs = psnrs
        self.decodes: list[int] = []

    def psnr(self, quality: int) -> float:
        self.decodes.append(quality)
        return self._psnrs[quality - 1]

    def file(self, quality: int) -> bytes:
        return bytes(quality)

    def bpp(self, quality: int) -> float:
        return float(quality)


@pytest.mark.parametrize("target", [10.0, 20.5, 21.0, 26.0, 27.0, 30.0])
def test_target_psnr_is_a_binary_search(target):
    psnrs = [20.0, 21.0, 22.5, 24.0, 25.0, 26.0, 26.5, 27.0]
    fake = _TableLadder(psnrs)
    choice = choose_for_psnr(fake, target)  # type: ignore[arg-type]
    reaching = [q for q, value in enumerate(psnrs, 1) if value >= target]
    assert choice.quality == (min(reaching) if reaching else 8) and choice.met == bool(reaching)
    assert len(set(fake.decodes)) <= 1 + math.ceil(math.log2(len(psnrs)))


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan])
def test_targets_must_be_positive(ladder, bad):
    with pytest.raises(ValueError, match="positive"):
        choose_for_bpp(ladder, bad)
    with pytest.raises(ValueError, match="positive"):
        choose_for_psnr(ladder, bad)


def test_encode_for_target_takes_exactly_one_target(model):
    image = smooth_image(16, 16)
    with pytest.raises(ValueError, match="exactly one"):
        encode_for_target(model, image)
    with pytest.raises(ValueError, match="exactly one"):
        encode_for_target(model, image, target_bpp=1.0, target_psnr=30.0)


def test_the_public_api_takes_a_target_and_records_the_level_in_the_header(ladder):
    data = vqz.encode(ladder.rgb, target_bpp=ladder.bpp(2))
    assert data == ladder.file(2) and vqz.read_info(data).quality == 2
    data = vqz.encode(ladder.rgb, target_psnr=ladder.psnr(ladder.levels[-1]) + 100)
    assert vqz.read_info(data).quality == ladder.levels[-1]
    with pytest.raises(ValueError, match="at most one"):
        vqz.encode(ladder.rgb, quality=2, target_bpp=1.0)


def test_psnr_of_identical_images_is_infinite():
    image = smooth_image(8, 8)
    assert psnr(image, image) == math.inf
    assert psnr(image, np.zeros_like(image)) < 10
