"""Rate control: one encode at the maximum quality gives every level, and the searches pick right."""

from __future__ import annotations

import math

import numpy as np
import pytest

import vqz
from vqz.bitstream import unpack
from vqz.codec.pipeline import decode_bytes, encode_array, quality_range
from vqz.codec.rate_control import (
    QualityLadder,
    budget_for_bpp,
    choose_for_bpp,
    choose_for_psnr,
    choose_for_size,
    encode_for_target,
    psnr,
)

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
        assert choice.quality == quality and choice.met and choice.coded_cells is None
        assert choice.data == ladder.file(quality) and choice.bpp == ladder.bpp(quality)


def test_target_bpp_between_two_levels_stops_the_next_stage_part_way(ladder):
    between = (ladder.bpp(2) + ladder.bpp(3)) / 2
    choice = choose_for_bpp(ladder, between)
    assert choice.quality == 3 and 0 < choice.coded_cells < ladder.cells and choice.met
    assert 2 < choice.level < 3
    assert choice.bpp <= between and choice.data == ladder.partial_file(3, choice.coded_cells)
    assert len(choice.data) == budget_for_bpp(between, ladder.pixels) or \
        len(ladder.partial_file(3, choice.coded_cells + 1)) > budget_for_bpp(between, ladder.pixels)


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
    with pytest.raises(ValueError, match="exactly one"):
        encode_for_target(model, image, target_bpp=1.0, target_size=300)


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


# ------------------------------------------------------------------ --target-size and part-way stages
def test_every_budget_between_quality_1_and_the_best_is_met_closely(model, ladder):
    smallest, largest = len(ladder.file(1)), len(ladder.file(ladder.levels[-1]))
    for budget in np.linspace(smallest, largest, 23).astype(int):
        choice = choose_for_size(ladder, int(budget))
        assert choice.met and len(choice.data) <= budget
        # Within a few bytes: one more cell is at most a few bytes of payload (and a varint byte).
        assert len(choice.data) >= budget - 16, (budget, len(choice.data))
        header = unpack(choice.data)[0]
        assert header.quality == choice.quality and header.coded_cells == choice.coded_cells
        pixels = decode_bytes(model, choice.data)  # decodes
        assert pixels.shape == ladder.rgb.shape


def test_a_budget_below_quality_1_gives_quality_1_unmet_and_above_the_best_gives_the_best(ladder):
    choice = choose_for_size(ladder, len(ladder.file(1)) - 1)
    assert choice.quality == 1 and not choice.met and choice.data == ladder.file(1)
    choice = choose_for_size(ladder, 10**9)
    assert choice.quality == ladder.levels[-1] and choice.met and choice.coded_cells is None


@pytest.mark.parametrize("bad", [0, -5, 1.5, True, "100"])
def test_target_size_must_be_a_positive_whole_number(ladder, bad):
    with pytest.raises(ValueError, match="positive whole number"):
        choose_for_size(ladder, bad)


def test_a_part_way_file_decodes_between_its_two_whole_levels(model, ladder):
    for quality in (2, ladder.levels[-1]):
        low = decode_bytes(model, ladder.file(quality - 1))
        high = decode_bytes(model, ladder.file(quality))
        # No cells coded: the previous level's pixels; every cell: this level's (same file, too).
        assert np.array_equal(decode_bytes(model, ladder.partial_file(quality, 0)), low)
        assert ladder.partial_file(quality, ladder.cells) == ladder.file(quality)
        # All but... every cell coded through the part-way path gives the whole level's payload.
        stage = quality - 1
        plane, prefix = ladder._indices[stage], ladder._indices[:stage]
        assert model.entropy.encode_plane(plane, stage, prefix, ladder.cells) == ladder._payloads[stage]
        half = decode_bytes(model, ladder.partial_file(quality, ladder.cells // 2))
        assert not np.array_equal(half, low) and not np.array_equal(half, high)


def test_a_part_way_file_decodes_progressively(model, ladder):
    data = ladder.partial_file(4, ladder.cells // 3)
    for stages in (1, 2, 3):
        assert np.array_equal(decode_bytes(model, data, stages), decode_bytes(model, ladder.file(stages)))
    assert np.array_equal(decode_bytes(model, data, 4), decode_bytes(model, data))
    assert np.array_equal(decode_bytes(model, data, 99), decode_bytes(model, data))


def test_the_coded_cells_keep_their_indices_and_the_others_are_left_uncoded(model, ladder):
    from vqz.codec.entropy_model import UNCODED
    from vqz.codec.pipeline import decode_indices
    from vqz.codec.stage_context import priority_order

    coded = ladder.cells // 4
    data = ladder.partial_file(3, coded)
    parsed = unpack(data)
    planes = decode_indices(model, *parsed)
    assert np.array_equal(planes[:2], ladder._indices[:2])
    order = priority_order(model.entropy.stages.activity(ladder._indices[:2], 2))
    last = planes[2].ravel()
    assert np.array_equal(last[order[:coded]], ladder._indices[2].ravel()[order[:coded]])
    assert (last[order[coded:]] == UNCODED).all()


def _kodak_crop(kodak_dir, name: str, top: int, left: int) -> np.ndarray:
    from PIL import Image

    with Image.open(kodak_dir / f"{name}.png") as image:
        return np.ascontiguousarray(np.asarray(image.convert("RGB"))[top : top + 128, left : left + 192])


@pytest.mark.parametrize("name", ["kodim05", "kodim23"])
def test_part_way_rate_distortion_is_no_worse_than_the_line_between_levels(model, kodak_dir, name):
    # The file the rate controller chooses for a budget (the descending order's size at 25, 50 and
    # 75% of the cells), in whichever order it picked, lies above the straight line between whole
    # levels and is at least as good as the descending order alone.
    rgb = _kodak_crop(kodak_dir, name, 128, 256)
    ladder = QualityLadder(model, rgb)
    for level in (2, 4):
        s0, s1 = len(ladder.file(level - 1)), len(ladder.file(level))
        p0, p1 = ladder.psnr(level - 1), ladder.psnr(level)
        for fraction in (0.25, 0.5, 0.75):
            descending = ladder.partial_file(level, int(fraction * ladder.cells))
            choice = choose_for_size(ladder, len(descending))
            assert choice.quality == level and choice.coded_cells
            line = p0 + (len(choice.data) - s0) / (s1 - s0) * (p1 - p0)
            chosen = psnr(rgb, decode_bytes(model, choice.data))
            assert chosen == ladder.partial_psnr(level, choice.coded_cells, choice.cell_order)
            assert chosen >= line, (level, fraction, choice.cell_order)
            assert chosen >= psnr(rgb, decode_bytes(model, descending)), (level, fraction)


@pytest.fixture
def smooth_crop_ladder(model, kodak_dir) -> QualityLadder:
    # A smooth corner of kodim02 where, at stage 1, the cells with the least activity buy more PSNR
    # per byte than those with the most: the ascending order wins there.
    return QualityLadder(model, _kodak_crop(kodak_dir, "kodim02", 384, 576))


def test_the_rate_controller_picks_the_order_whose_image_is_better(model, smooth_crop_ladder):
    from vqz.codec.stage_context import ORDER_ASCENDING, ORDER_DESCENDING

    ladder = smooth_crop_ladder
    for fraction in (0.25, 0.5):
        budget = len(ladder.partial_file(2, int(fraction * ladder.cells)))
        choice = choose_for_size(ladder, budget)
        alone = {order: choose_for_size(ladder, budget, (order,)) for order in (ORDER_DESCENDING, ORDER_ASCENDING)}
        decoded = {order: psnr(ladder.rgb, decode_bytes(model, c.data)) for order, c in alone.items()}
        assert choice.cell_order == ORDER_ASCENDING and choice.data == alone[ORDER_ASCENDING].data
        assert decoded[ORDER_ASCENDING] > decoded[ORDER_DESCENDING], fraction
        # Each order gets its own count: the ascending order's cells are cheaper, so more of them fit.
        assert alone[ORDER_ASCENDING].coded_cells > alone[ORDER_DESCENDING].coded_cells
        assert len(choice.data) <= budget and unpack(choice.data)[0].cell_order == ORDER_ASCENDING
        assert vqz.read_info(choice.data).cell_order == "ascending"
    # Where the descending order is better, it is kept (and so are the files earlier encoders wrote).
    budget = len(ladder.partial_file(3, ladder.cells // 2))
    choice = choose_for_size(ladder, budget)
    assert choice.cell_order == ORDER_DESCENDING and choice.data == choose_for_size(ladder, budget, (0,)).data
    assert vqz.read_info(choice.data).cell_order == "descending"


def test_an_ascending_order_file_round_trips_and_decodes_progressively(model, ladder):
    from vqz.codec.entropy_model import UNCODED
    from vqz.codec.pipeline import decode_indices
    from vqz.codec.stage_context import ORDER_ASCENDING, priority_order

    for quality in (3, ladder.levels[-1]):
        coded = ladder.cells // 3
        data = ladder.partial_file(quality, coded, ORDER_ASCENDING)
        parsed = unpack(data)
        assert parsed[0].cell_order == ORDER_ASCENDING and parsed[0].coded_cells == coded and data[5] == 0x0C
        planes = decode_indices(model, *parsed)
        stage = quality - 1
        assert np.array_equal(planes[:stage], ladder._indices[:stage])
        order = priority_order(model.entropy.stages.activity(ladder._indices[:stage], stage), ORDER_ASCENDING)
        last = planes[stage].ravel()
        assert np.array_equal(last[order[:coded]], ladder._indices[stage].ravel()[order[:coded]])
        assert (last[order[coded:]] == UNCODED).all()
        # Its coded cells are exactly those the descending order leaves uncoded at cells - coded.
        descending = priority_order(model.entropy.stages.activity(ladder._indices[:stage], stage))
        assert set(order[:coded]) == set(descending[ladder.cells - coded :])
        decoded = decode_bytes(model, data)
        assert psnr(ladder.rgb, decoded) == ladder.partial_psnr(quality, coded, ORDER_ASCENDING)
        assert not np.array_equal(decoded, decode_bytes(model, ladder.partial_file(quality, coded)))
        for stages in (1, stage):
            assert np.array_equal(decode_bytes(model, data, stages), decode_bytes(model, ladder.file(stages)))
        assert np.array_equal(decode_bytes(model, data, quality), decoded)
    # No cells: the level below; every cell: the whole level, written without the flags.
    assert np.array_equal(decode_bytes(model, ladder.partial_file(3, 0, ORDER_ASCENDING)),
                          decode_bytes(model, ladder.file(2)))
    assert ladder.partial_file(3, ladder.cells, ORDER_ASCENDING) == ladder.file(3)


def test_the_public_api_takes_a_target_size(ladder):
    budget = (len(ladder.file(2)) + len(ladder.file(3))) // 2
    data = vqz.encode(ladder.rgb, target_size=budget)
    assert len(data) <= budget and data == choose_for_size(ladder, budget).data
    info = vqz.read_info(data)
    assert info.quality == 3 and info.coded_cells == choose_for_size(ladder, budget).coded_cells
    assert info.cell_order == ("descending", "ascending")[choose_for_size(ladder, budget).cell_order]
    with pytest.raises(ValueError, match="at most one"):
        vqz.encode(ladder.rgb, target_size=budget, target_bpp=1.0)
