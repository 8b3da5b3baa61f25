"""Rate control: pick the quality level for a target size (bytes or bits per pixel) or a target PSNR.

It rests on one invariant of the format (docs/FORMAT.md, :mod:`vqz.codec.pipeline`): the
residual quantizer is greedy and each stage has its own payload, so the file at a stage-only
quality ``q`` holds exactly the first ``q`` payloads of the file at the highest stage-only
level. One encode at that level therefore yields every stage-only level: a level is its header
(with ``quality = q``) repacked around a prefix of the payloads, and its exact size is known
without encoding again. A level with a residual layer (:mod:`vqz.codec.levels`) is a prefix plus
that layer, coded on demand against the prefix's rendered image (one synthesis per prefix).
``tests/runtime/test_rate_control.py`` checks that every level is byte-identical to a direct encode.

* ``--target-size B`` (like cwebp's ``-size``, avifenc's ``--target-size``): the largest file of
  at most ``B`` bytes, metadata included. Whole levels are too coarse (one more stage can
  double the file), so the stage after the highest whole level that fits stops part-way, coding
  the cells of a **block mask** the encoder chooses (docs/FORMAT.md, "Part-way last stage"): per
  cell, the latent-domain gain of coding it, ``||r||^2 - ||r - c||^2`` (``r`` the residual entering
  the stage, ``c`` its code vector), and its cost under its context, ``-log2 p``; blocks of
  ``MASK_BLOCK`` x ``MASK_BLOCK`` cells ranked by gain per bit; the longest prefix of that ranking
  whose file fits (a binary search over exact sizes: each candidate is packed and measured, so the
  result never exceeds the budget), then further blocks in ranking order while they still fit.
  The mask costs ``ceil(blocks / 8)`` bytes; where not even one block fits (a budget within a few
  bytes of a whole level), the first ``n`` cells in the order the decoder derives from the stages
  before (:func:`vqz.codec.stage_context.priority_order`, no mask) are coded instead, ``n`` the
  largest count that fits. No synthesis: on Kodak the mask is above the chord between whole levels
  everywhere, and choosing between it and the priority order by decoded PSNR would gain 0.007 dB
  on average for one synthesis per candidate (benchmarks/results/target_size/kodak.md).
  Quality 1 if even that is too large (``met`` is then False). The part-way search runs over
  stage-only files of any stage count (past the stage-only levels too) while the first residual
  level does not fit; once it does, the highest residual level that fits, then the finest residual
  step between its step and the next level's whose file still fits (:func:`_residual_for_size`).
* ``--target-bpp X``: the same, for a budget of ``floor(X * width * height / 8)`` bytes.
* ``--target-psnr Y`` (like cwebp's ``-psnr``): the smallest file whose decoded image reaches
  ``Y`` dB PSNR (RGB, 8 bits); a binary search over the levels, so about
  ``1 + log2(levels)`` decodes; the maximum quality if none does (``met`` is then False).
  PSNR rises with the number of stages for any sensible model; should it not, the search
  still returns a level that meets the target, though not necessarily the smallest one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from vqz.bitstream import pack, unpack_file
from vqz.codec.metadata import Metadata, attach

if TYPE_CHECKING:
    from vqz.codec.weights import LoadedWeights

__all__ = ["PARTWAY_KINDS", "QualityLadder", "RateChoice", "budget_for_bpp", "choose_for_bpp", "choose_for_psnr", "choose_for_size",
           "encode_for_target", "psnr"]


def psnr(reference: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR in dB of two (H, W, 3) uint8 images over all pixels and channels; ``inf`` if equal."""
    if reference.shape != decoded.shape:
        raise ValueError(f"images differ in shape: {reference.shape} vs {decoded.shape}")
    diff = reference.astype(np.float64) - decoded.astype(np.float64)
    mse = float(np.mean(diff * diff))
    return math.inf if mse == 0.0 else 10.0 * math.log10(255.0**2 / mse)


#: How a part-way stage picks its cells: the first ``n`` in the decoder-derived priority order, or a block mask.
PARTWAY_KINDS = ("order", "mask")


@dataclass(frozen=True)
class RateChoice:
    """The level rate control settled on.

    ``data`` is the complete ``.vqz`` file (its header's quality field is ``quality``, its
    number of stages); ``bpp`` counts every byte of it; ``psnr`` (dB) is measured only by the
    PSNR search; ``met`` is False when no level met the target and the fallback level was used.
    ``coded_cells`` (of ``cells`` per stage) is set when the last stage stops part-way; ``mask``
    is then its packed block mask, or ``None`` when its cells are the first in priority order.
    """

    data: bytes
    quality: int
    bpp: float
    psnr: float | None
    met: bool
    coded_cells: int | None = None
    cells: int | None = None
    mask: bytes | None = None
    stages: int | None = None  # the stage count, when rate control chose a stage-only file by size

    @property
    def selection(self) -> int | bytes | None:
        """The part-way stage's cells as :meth:`QualityLadder.partial_file` takes them: the block mask, else
        the count of cells in priority order (``None``: every stage whole)."""
        return self.mask if self.mask is not None else self.coded_cells

    @property
    def level(self) -> float:
        """The quality as a fraction: ``quality - 1 + coded_cells / cells`` for a part-way stage."""
        if self.coded_cells is None or not self.cells:
            return float(self.quality)
        stages = self.stages if self.stages is not None else self.quality
        if stages > self.quality:  # past the stage-only levels: it sits above the level in its header
            return float(self.quality)
        return stages - 1 + self.coded_cells / self.cells


class QualityLadder:
    """Every quality level of one image, from a single encode at the maximum quality.

    ``rgb`` is the (H, W, 3) uint8 image. Files and decoded PSNRs are computed on demand
    and cached, so asking for the same level twice costs nothing.
    """

    def __init__(self, weights: LoadedWeights, rgb: np.ndarray, alpha: np.ndarray | None = None,
                 metadata: Metadata | None = None) -> None:
        from vqz.codec.levels import level_plans
        from vqz.codec.pipeline import encode_array_indices, quality_range

        self.weights = weights
        self.rgb = rgb
        self.levels = quality_range(weights)
        self.plans = level_plans(weights)
        #: the stage-only levels (a prefix of ``levels``): part-way stages live between them
        self.stage_levels = range(1, 1 + sum(plan.residual_step is None for plan in self.plans))
        top = self.stage_levels[-1]
        if any(plan.stages > top for plan in self.plans):
            raise ValueError("a residual level codes more stages than the highest stage-only level")
        self.metadata = metadata or Metadata()
        #: every stage of the model is encoded (greedy: each stage-only file is a prefix): part-way stages
        #: also run past the highest stage-only level, below the first residual level
        self.num_stages = weights.config.num_stages
        full, _, self._indices, self._latent = encode_array_indices(weights, rgb, top, alpha, keep_latent=True,
                                                                    stages=self.num_stages)
        full = attach(full, self.metadata)
        parsed = unpack_file(full)
        self._header, self._payloads, self._alpha = parsed.header, parsed.payloads, parsed.alpha
        self._stage_files: dict[int, bytes] = {self.num_stages: full}
        self._bases: dict[int, np.ndarray] = {}
        self._residual_files: dict[tuple[int, float], bytes] = {}
        self._partial: dict[tuple[int, int | bytes], bytes] = {}
        self._partial_sizes: dict[tuple[int, int | bytes], int] = {}
        self._partial_payloads: dict = {}
        self._partial_decoded_cache: dict = {}
        self._psnr: dict[int, float] = {}
        self._partial_psnr: dict[tuple[int, int | bytes], float] = {}
        self._blocks: dict[int, BlockScores] = {}

    @property
    def pixels(self) -> int:
        return self._header.width * self._header.height

    @property
    def cells(self) -> int:
        """Latent cells per stage (the most a part-way stage can code)."""
        return self._header.cells

    @property
    def partway(self) -> bool:
        """Whether the model can stop a stage part-way (it codes stages 1.. under context tables)."""
        return self.weights.entropy.stages is not None and len(self.stage_levels) > 1

    def _filtered_stages(self, quality: int) -> bool:
        """Whether a part-way file of ``quality`` stages may ask for the post-filter: one whose whole stages
        are at most the highest stage-only level's (so the files between that level and the first residual
        level keep the filter its whole level has), with a default filter trained on the stage-only levels."""
        from vqz.codec.postfilter import stage_postfilter

        return quality <= self.stage_levels[-1] + 1 and stage_postfilter() is not None

    @staticmethod
    def _provisional_ref(stage_count: float):
        """The stage-only filter's reference at the strength of ``stage_count`` stages, before any check:
        its 9 bytes are what a size search must count (the file chosen can only be smaller)."""
        from vqz.bitstream import PostFilterRef
        from vqz.codec.levels import stage_strength
        from vqz.codec.postfilter import stage_postfilter

        return PostFilterRef.quantized(stage_postfilter().filter_hash, stage_strength(stage_count))

    def _stage_count(self, quality: int, coded: int | bytes) -> float:
        """The (fractional) stage count of a part-way file: its whole stages plus the coded fraction of the last."""
        count = coded if isinstance(coded, int) else int(self._mask_cells(coded).size)
        return quality - 1 + count / self.cells

    def _partial_pack(self, quality: int, coded: int | bytes, postfilter) -> bytes:
        """The part-way file with ``postfilter`` (a reference or None); the last stage's payload is coded once
        per ``(quality, coded)`` (the size search and the file chosen share it)."""
        stage = quality - 1
        key = (quality, coded)
        if key not in self._partial_payloads:
            plane, prefix = self._indices[stage], self._indices[:stage]
            if isinstance(coded, bytes):
                cells = self._mask_cells(coded)
                last = self.weights.entropy.encode_plane(plane, stage, prefix, cells=cells)
                fields = {"coded_cells": int(cells.size), "mask": coded}
            else:
                last = self.weights.entropy.encode_plane(plane, stage, prefix, coded)
                fields = {"coded_cells": coded}
            self._partial_payloads = {key: (last, fields)}  # the search asks for each candidate once
        last, fields = self._partial_payloads[key]
        header = replace(self._header, quality=self.stage_level(quality), postfilter=postfilter, **fields)
        return pack(header, self._payloads[:stage] + [last], self._alpha, **self.metadata.chunks())

    def partial_size(self, quality: int, coded: int | bytes) -> int:
        """Bytes of :meth:`partial_file` if it asks for the post-filter (its reference is 9 bytes; without it
        the file is that much smaller): what the size searches compare, without rendering anything."""
        self._check_partial(quality, coded)
        if coded == self.cells:
            return self.stage_size(quality)
        key = (quality, coded)
        if key not in self._partial_sizes:
            ref = self._provisional_ref(self._stage_count(quality, coded)) if self._filtered_stages(quality) else None
            self._partial_sizes[key] = len(self._partial_pack(quality, coded, ref))
        return self._partial_sizes[key]

    def partial_file(self, quality: int, coded: int | bytes) -> bytes:
        """The file with ``quality`` stages, the last of which codes only some of its cells: an int
        ``coded``, the first ``coded`` in priority order (``coded == cells`` is the whole level); bytes,
        the cells of the blocks of that packed block mask (flag bit 3). Up to the highest stage-only
        level it asks for the post-filter where it helps, at the strength of its fractional stage count."""
        self._check_partial(quality, coded)
        if coded == self.cells:
            return self.stage_file(quality)
        key = (quality, coded)
        if key not in self._partial:
            self._partial[key] = self._partial_pack(quality, coded, self._partial_decoded(quality, coded)[1])
        return self._partial[key]

    def _partial_decoded(self, quality: int, coded: int | bytes):
        """(what :meth:`partial_file` decodes to, its post-filter reference or None), cached."""
        from vqz.codec.pipeline import render, stage_postfilter_ref
        from vqz.codec.postfilter import postfilter_for_ref

        key = (quality, coded)
        if key not in self._partial_decoded_cache:
            indices = self.partial_indices(quality, coded)
            decoded = render(self.weights, indices, *self.rgb.shape[:2])
            ref = None
            if self._filtered_stages(quality):
                ref = stage_postfilter_ref(self.weights, self.rgb, indices, decoded, self._stage_count(quality, coded))
            if ref is not None:
                decoded = postfilter_for_ref(ref).apply(decoded, ref.strength)
            self._partial_decoded_cache = {key: (decoded, ref)}  # one at a time: images are large
        return self._partial_decoded_cache[key]

    def partial_psnr(self, quality: int, coded: int | bytes) -> float:
        """PSNR (dB) of :meth:`partial_file` decoded, against the original image.

        Rendered from the indices the file codes (the decoder's indices are these, bit for bit),
        without entropy-decoding the file: one synthesis (and the post-filter where the file asks for it).
        """
        self._check_partial(quality, coded)
        if coded == self.cells:
            if unpack_file(self.stage_file(quality)).header.postfilter is not None:
                return self.psnr(quality)
            return psnr(self.rgb, self.render_stages(quality))
        key = (quality, coded)
        if key not in self._partial_psnr:
            self._partial_psnr[key] = psnr(self.rgb, self._partial_decoded(quality, coded)[0])
        return self._partial_psnr[key]

    def partial_indices(self, quality: int, coded: int | bytes) -> np.ndarray:
        """(quality, gh, gw) indices of :meth:`partial_file`, ``UNCODED`` where its last stage codes nothing."""
        from vqz.codec.entropy_model import UNCODED
        from vqz.codec.stage_context import priority_order

        self._check_partial(quality, coded)
        stage = quality - 1
        indices = self._indices[:quality].copy()
        last = indices[stage].ravel()
        keep = np.zeros(self.cells, dtype=bool)
        if isinstance(coded, bytes):
            keep[self._mask_cells(coded)] = True
        else:
            keep[priority_order(self.weights.entropy.stages.activity(indices[:stage], stage))[:coded]] = True
        last[~keep] = UNCODED
        return indices

    def block_scores(self, quality: int) -> BlockScores:
        """Per cell and per block of stage ``quality - 1``: latent gain, bits, and the blocks ranked by gain per bit."""
        if quality not in self._blocks:
            self._check_partial(quality, 0)
            self._blocks[quality] = _block_scores(self.weights, self._latent, self._indices[:quality])
        return self._blocks[quality]

    def _mask_cells(self, mask: bytes) -> np.ndarray:
        from vqz.codec.stage_context import mask_cells

        return mask_cells(mask, self._header.grid_height, self._header.grid_width)

    def _check_partial(self, quality: int, coded: int | bytes) -> None:
        if not 2 <= quality <= self.num_stages:
            raise ValueError(f"a part-way stage needs a stage count in 2..{self.num_stages}, got {quality}")
        if isinstance(coded, bytes):
            from vqz.bitstream.container import mask_size

            if len(coded) != mask_size(self._header.grid_height, self._header.grid_width):
                raise ValueError("block mask does not fit the latent grid")
        elif not 0 <= coded <= self.cells:
            raise ValueError(f"coded cells must be in 0..{self.cells}, got {coded}")

    def stage_level(self, stages: int) -> int:
        """The quality field of a stage-only file of ``stages`` stages: that level, or past the highest
        stage-only level, that level (the file sits above it)."""
        return min(stages, self.stage_levels[-1])

    def stage_size(self, stages: int) -> int:
        """Bytes of :meth:`stage_file` if it asks for the post-filter (9 bytes more than without), without
        rendering anything: what the size searches compare."""
        from vqz.codec.postfilter import stage_postfilter

        if stages in self._stage_files or stages not in self.stage_levels or stage_postfilter() is None:
            return len(self.stage_file(stages))
        return len(self._stage_pack(stages, self._provisional_ref(stages)))

    def stage_fits(self, stages: int, target_bytes: int) -> bool:
        """Whether :meth:`stage_file` has at most ``target_bytes`` bytes: by :meth:`stage_size` where that
        settles it, else (the budget falls within the filter reference's bytes) by the file itself, which
        leaves the reference out where the filter does not help (this renders the stages)."""
        if self.stage_size(stages) <= target_bytes:
            return True
        if stages in self._stage_files or len(self._stage_pack(stages, None)) > target_bytes:
            return False
        return len(self.stage_file(stages)) <= target_bytes

    def _stage_pack(self, stages: int, postfilter) -> bytes:
        """The stage-only file of the first ``stages`` stages with ``postfilter`` (a reference or None)."""
        return pack(replace(self._header, quality=self.stage_level(stages), postfilter=postfilter), self._payloads[:stages],
                    self._alpha, **self.metadata.chunks())

    def stage_file(self, stages: int) -> bytes:
        """The stage-only file of the first ``stages`` stages (1..num_stages), every stage whole."""
        if not 1 <= stages <= self.num_stages:
            raise ValueError(f"stages must be in 1..{self.num_stages}, got {stages}")
        if stages not in self._stage_files:
            postfilter = None
            if stages in self.stage_levels:  # a level's own file, as a direct encode writes it
                from vqz.codec.pipeline import stage_postfilter_ref

                postfilter = stage_postfilter_ref(self.weights, self.rgb, self._indices[:stages],
                                                  self.render_stages(stages))
            self._stage_files[stages] = self._stage_pack(stages, postfilter)
        return self._stage_files[stages]

    def render_stages(self, stages: int) -> np.ndarray:
        """(H, W, 3) uint8: what the decoder shows for the first ``stages`` whole stages (cached)."""
        from vqz.codec.pipeline import render

        if stages not in self._bases:
            self._bases[stages] = render(self.weights, self._indices[:stages], *self.rgb.shape[:2])
        return self._bases[stages]

    def residual_file(self, quality: int, step: float) -> bytes:
        """The file of residual level ``quality``'s stages plus a residual layer of luma ``step`` (the
        level's own step gives the level's file; rate control tries the steps between levels), asking
        for the post-filter where it helps, as a direct encode does."""
        from vqz.codec.pipeline import residual_coding

        stages = self.plans[quality - 1].stages
        key = (quality, step)
        if key not in self._residual_files:
            residual, postfilter = residual_coding(self.weights, self.rgb, self._indices[:stages], step,
                                                   base=self.render_stages(stages))
            self._residual_files[key] = pack(replace(self._header, quality=quality, postfilter=postfilter),
                                             self._payloads[:stages], self._alpha, residual=residual,
                                             **self.metadata.chunks())
        return self._residual_files[key]

    def file(self, quality: int) -> bytes:
        """The complete ``.vqz`` file at ``quality``: the first payloads its plan codes, repacked, and
        the plan's residual layer if any."""
        if quality not in self.levels:
            raise ValueError(f"quality must be in {self.levels.start}..{self.levels.stop - 1}, got {quality}")
        plan = self.plans[quality - 1]
        if plan.residual_step is None:
            return self.stage_file(plan.stages)
        return self.residual_file(quality, plan.residual_step)

    def bpp(self, quality: int) -> float:
        """Bits per pixel of the whole file at ``quality`` (header and CRC included)."""
        return 8 * len(self.file(quality)) / self.pixels

    def psnr(self, quality: int) -> float:
        """PSNR (dB) of the file at ``quality`` decoded, against the original image."""
        if quality not in self._psnr:
            from vqz.codec.pipeline import decode_bytes

            self._psnr[quality] = psnr(self.rgb, decode_bytes(self.weights, self.file(quality)))
        return self._psnr[quality]


def budget_for_bpp(target_bpp: float, pixels: int) -> int:
    """Bytes allowed by ``target_bpp`` for an image of ``pixels`` pixels (rounded down; a budget
    that is a whole number of bytes up to float rounding is that number)."""
    return math.floor(target_bpp * pixels / 8 + 1e-9)


@dataclass(frozen=True)
class BlockScores:
    """What the block mask of one stage is chosen from (:meth:`QualityLadder.block_scores`).

    ``cell_gain``, ``cell_bits``: (gh, gw) float64, the latent gain ``||r||^2 - ||r - c||^2`` of coding
    each cell and its code length ``-log2 p(index | context)``; ``block_bits``: (blocks,) their sums per
    block; ``ranking``: the blocks by descending gain per bit (a stable sort: ties by raster order).
    """

    cell_gain: np.ndarray
    cell_bits: np.ndarray
    block_bits: np.ndarray
    ranking: np.ndarray


def _block_scores(weights: LoadedWeights, latent: np.ndarray, indices: np.ndarray) -> BlockScores:
    """Scores of the last stage of ``indices`` ((s + 1, gh, gw)) for the (gh, gw, M) float latent."""
    from vqz.bitstream.container import mask_blocks
    from vqz.codec.stage_context import block_of_cells

    stage = indices.shape[0] - 1
    codebooks = weights.codebooks
    residual = latent.reshape(-1, latent.shape[-1]).astype(np.float32)
    for t in range(stage):  # the residual entering the stage, as the quantizer computed it
        residual = residual - codebooks[t][indices[t].ravel()]
    residual = residual.astype(np.float64)
    code = codebooks[stage][indices[stage].ravel()].astype(np.float64)
    gain = (2 * np.einsum("pm,pm->p", residual, code) - np.einsum("pm,pm->p", code, code)).reshape(indices.shape[1:])
    bits = weights.entropy.cell_bits(indices[stage], stage, indices[:stage])
    block = block_of_cells(*indices.shape[1:]).ravel()
    count = mask_blocks(*indices.shape[1:])
    block_gain = np.bincount(block, gain.ravel(), minlength=count)
    block_bits = np.bincount(block, bits.ravel(), minlength=count)
    ranking = np.argsort(-(block_gain / block_bits), kind="stable")
    return BlockScores(gain, bits, block_bits, ranking)


def choose_for_size(ladder: QualityLadder, target_bytes: int, kinds: tuple[str, ...] = PARTWAY_KINDS) -> RateChoice:
    """The best file of at most ``target_bytes`` bytes: the highest whole level that fits, then as
    many cells of the next stage as fit: those of a block mask (``"mask"`` in ``kinds``), or where
    no block fits (or ``kinds`` has no ``"mask"``), the first in priority order (``"order"``);
    quality 1 (``met`` False) if nothing fits."""
    if isinstance(target_bytes, bool) or not isinstance(target_bytes, int) or target_bytes < 1:
        raise ValueError(f"target size must be a positive whole number of bytes, got {target_bytes!r}")
    if not kinds or set(kinds) - set(PARTWAY_KINDS):
        raise ValueError(f"kinds must be some of {PARTWAY_KINDS}, got {kinds!r}")
    residual_levels = ladder.levels[len(ladder.stage_levels):]
    if residual_levels and len(ladder.file(residual_levels[0])) <= target_bytes:
        return _residual_for_size(ladder, target_bytes)
    # sizes with the post-filter's reference where a file may ask for it, the file itself where the budget falls within it
    fitting = [s for s in range(1, ladder.num_stages + 1) if ladder.stage_fits(s, target_bytes)]
    if not fitting:
        return _whole(ladder, ladder.levels[0], met=False)
    quality = max(fitting)  # a stage count; past the stage-only levels, files of more stages than any level
    if quality == ladder.num_stages or not ladder.partway:
        return _stages(ladder, quality)
    # The mask, whenever a block fits: on Kodak it is above the chord between whole levels at every
    # point measured, the priority order is not (benchmarks/results/target_size/kodak.md).
    selection: int | bytes | None = _best_mask(ladder, quality + 1, target_bytes) if "mask" in kinds else None
    if selection is None and "order" in kinds:
        selection = _most_cells(ladder, quality + 1, target_bytes) or None
    if selection is None:
        return _stages(ladder, quality)
    data = ladder.partial_file(quality + 1, selection)
    header = unpack_file(data).header
    return RateChoice(data, header.quality, 8 * len(data) / ladder.pixels, None, True, header.coded_cells, ladder.cells,
                      selection if isinstance(selection, bytes) else None, stages=quality + 1)


#: Bisection steps over the residual step between two residual levels (a log scale).
STEP_SEARCH_TRIES = 10


def _residual_for_size(ladder: QualityLadder, target_bytes: int) -> RateChoice:
    """The largest residual-layer file that fits, when the first residual level does: the highest
    residual level that fits, then the finest step between its step and the next level's whose file
    still fits (bisection on the logarithm of the step, every candidate measured)."""
    residual_levels = list(ladder.levels[len(ladder.stage_levels):])
    fitting = [q for q in residual_levels if len(ladder.file(q)) <= target_bytes]
    quality = max(fitting)
    if quality == residual_levels[-1]:
        return _whole(ladder, quality)
    coarse, fine = ladder.plans[quality - 1].residual_step, ladder.plans[quality].residual_step
    best = ladder.file(quality)
    low, high = math.log(coarse), math.log(fine)  # low fits, high does not
    for _ in range(STEP_SEARCH_TRIES):
        middle = (low + high) / 2
        data = ladder.residual_file(quality, round(math.exp(middle) * 16) / 16)
        if len(data) <= target_bytes:
            low, best = middle, max(best, data, key=len)
        else:
            high = middle
    return RateChoice(best, quality, 8 * len(best) / ladder.pixels, None, True)


def _stages(ladder: QualityLadder, stages: int) -> RateChoice:
    data = ladder.stage_file(stages)
    return RateChoice(data, ladder.stage_level(stages), 8 * len(data) / ladder.pixels, None, True, stages=stages)


#: Blocks beyond the longest fitting prefix tried one by one to fill what is left of the budget.
FILL_TRIES = 8


def _best_mask(ladder: QualityLadder, quality: int, target_bytes: int) -> bytes | None:
    """The block mask of stage ``quality - 1`` whose file fits: the longest prefix of the ranking by
    gain per bit that fits (binary search over exact sizes), then the next blocks of the ranking whose
    estimated cost fits what is left, each measured (at most ``FILL_TRIES`` tries); ``None`` if no
    block fits."""
    from vqz.codec.stage_context import pack_mask

    scores = ladder.block_scores(quality)
    ranking = scores.ranking

    def prefix(k: int) -> np.ndarray:
        selected = np.zeros(ranking.size, dtype=bool)
        selected[ranking[:k]] = True
        return selected

    # low: 0 blocks (stands for the whole level quality - 1, which fits); high: every block (it does not fit:
    # larger than the whole level quality). The size grows with k, not strictly everywhere; each candidate
    # is measured, so the mask returned always fits.
    low, high = 0, ranking.size
    while high - low > 1:
        middle = (low + high) // 2
        if ladder.partial_size(quality, pack_mask(prefix(middle))) <= target_bytes:
            low = middle
        else:
            high = middle
    if low == 0:
        return None
    selected = prefix(low)
    size = ladder.partial_size(quality, pack_mask(selected))
    tries = 0
    for block in ranking[low:]:
        if tries == FILL_TRIES:
            break
        if scores.block_bits[block] > 8 * (target_bytes - size) + 32:  # an ANS word of slack at most
            continue
        tries += 1
        trial = selected.copy()
        trial[block] = True
        trial_size = ladder.partial_size(quality, pack_mask(trial))
        if trial_size <= target_bytes:
            selected, size = trial, trial_size
    return pack_mask(selected)


def _most_cells(ladder: QualityLadder, quality: int, target_bytes: int) -> int:
    """The largest n whose part-way file (the first n cells of stage ``quality - 1`` in priority order) fits.

    n = 0 stands for the whole level ``quality - 1`` (it fits), n = cells is the whole level
    ``quality`` (it does not); the size grows with n (not strictly everywhere, so every candidate
    is measured and the one returned always fits).
    """
    low, high = 0, ladder.cells
    while high - low > 1:
        middle = (low + high) // 2
        if ladder.partial_size(quality, middle) <= target_bytes:
            low = middle
        else:
            high = middle
    return low


def _whole(ladder: QualityLadder, quality: int, met: bool = True) -> RateChoice:
    return RateChoice(ladder.file(quality), quality, ladder.bpp(quality), None, met)


def choose_for_bpp(ladder: QualityLadder, target_bpp: float, kinds: tuple[str, ...] = PARTWAY_KINDS) -> RateChoice:
    """The best file of at most ``target_bpp`` bits per pixel (:func:`choose_for_size`)."""
    if not target_bpp > 0:
        raise ValueError(f"target_bpp must be positive, got {target_bpp}")
    budget = budget_for_bpp(target_bpp, ladder.pixels)
    if budget < 1:
        return _whole(ladder, ladder.levels[0], met=False)
    return choose_for_size(ladder, budget, kinds)


def choose_for_psnr(ladder: QualityLadder, target_psnr: float) -> RateChoice:
    """The smallest file whose decoded image reaches ``target_psnr`` dB; the maximum if none does.

    Binary search, assuming PSNR does not fall as stages are added; the level returned
    always reaches the target (it was measured), whatever the model.
    """
    if not target_psnr > 0:
        raise ValueError(f"target_psnr must be positive, got {target_psnr}")
    low, high = ladder.levels[0], ladder.levels[-1]
    if ladder.psnr(high) < target_psnr:
        return RateChoice(ladder.file(high), high, ladder.bpp(high), ladder.psnr(high), False)
    while low < high:  # invariant: psnr(high) >= target
        middle = (low + high) // 2
        if ladder.psnr(middle) >= target_psnr:
            high = middle
        else:
            low = middle + 1
    return RateChoice(ladder.file(high), high, ladder.bpp(high), ladder.psnr(high), True)


def encode_for_target(
    weights: LoadedWeights, rgb: np.ndarray, *, target_bpp: float | None = None, target_psnr: float | None = None,
    target_size: int | None = None, alpha: np.ndarray | None = None, metadata: Metadata | None = None,
) -> RateChoice:
    """Encode (H, W, 3) uint8 ``rgb`` (+ optional alpha plane and metadata chunks, counted in
    the size) for exactly one of ``target_bpp``, ``target_size`` (bytes) or ``target_psnr``."""
    if sum(target is not None for target in (target_bpp, target_psnr, target_size)) != 1:
        raise ValueError("give exactly one of target_bpp, target_size and target_psnr")
    ladder = QualityLadder(weights, rgb, alpha, metadata)
    if target_size is not None:
        return choose_for_size(ladder, target_size)
    if target_bpp is not None:
        return choose_for_bpp(ladder, target_bpp)
    return choose_for_psnr(ladder, target_psnr)
