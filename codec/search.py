"""Encoder-side search (``--effort``): better indices for the same decoder, at more encoding time.

Effort 1 is the greedy residual quantizer (:func:`vqz.codec.vq.quantize`: the nearest code at
each stage). Effort 0 is the greedy quantizer on the latent of the model's light analysis head
(:mod:`vqz.codec.light`): about half the analysis' work, slightly worse codes; effort 1 where the model
has none. Higher efforts search the indices with a *rate-aware beam* over the stages
(:func:`vqz.codec.vq.beam_quantize`): each latent cell keeps the ``B`` best paths by

    squared latent error + lambda * bits,

``bits`` being -log2 of each code's probability under the model's frozen tables (stage 0: its
marginal; stage ``s >= 1``: the row of the cell's context, whose activity bin is taken from the
greedy indices of the stages before and whose previous-code bin from the path's own code), and
``lambda = RATE_WEIGHT *`` the image's own error-rate slope of the greedy quantizer at the last
stage coded (error removed per estimated bit). The decoder is unchanged: a searched file is a
normal file. Quality 1 is always coded greedily (see :func:`search_indices`). The file at
quality ``q > 1`` is then no longer a prefix of the file at a higher
quality, so rate control (``--target-*``) keeps the greedy quantizer.

Measured on the held-out split (``python experiments/encoder_search.py``; results in
``benchmarks/results/encoder_search/``).
"""

from __future__ import annotations

import numpy as np

from vqz.codec.stage_context import PREVIOUS_BINS, latent_activity
from vqz.codec.vq import beam_quantize, dequantize, quantize

__all__ = ["DEFAULT_EFFORT", "EFFORT_BEAMS", "EFFORT_LEVELS", "LIGHT_EFFORT", "RATE_WEIGHT", "SEARCH_EFFORTS",
           "check_effort", "search_indices"]

DEFAULT_EFFORT = 1
#: The effort whose latent comes from the model's light analysis head (greedy quantizer).
LIGHT_EFFORT = 0
#: Beam width of each effort level (0 and 1: greedy, no rate term).
EFFORT_BEAMS = {0: 1, 1: 1, 2: 2, 3: 4, 4: 8}
EFFORT_LEVELS = range(0, max(EFFORT_BEAMS) + 1)
#: The efforts that search (a rate-aware beam).
SEARCH_EFFORTS = range(2, max(EFFORT_BEAMS) + 1)
#: lambda as a multiple of the greedy quantizer's error-rate slope at the last stage coded.
RATE_WEIGHT = 0.5


def check_effort(effort: object) -> int:
    """``effort`` as an int, or ``ValueError`` naming the valid levels."""
    if isinstance(effort, bool) or not isinstance(effort, (int, np.integer)) or int(effort) not in EFFORT_LEVELS:
        raise ValueError(f"effort must be an integer in {EFFORT_LEVELS.start}..{EFFORT_LEVELS.stop - 1}, "
                         f"got {effort!r}")
    return int(effort)


class _BitCost:
    """lambda * -log2 p(code) of each code for the beam (:func:`vqz.codec.vq.beam_quantize`'s ``code_cost``)."""

    def __init__(self, entropy, greedy: np.ndarray, lam: float) -> None:
        self.lam = np.float32(lam)
        self.stage0 = self.lam * (-np.log2(entropy._probabilities["marginal"][0])).astype(np.float32)
        stages = entropy.stages
        self.rows = None if stages is None else self.lam * (-np.log2(entropy._stage_probabilities)).astype(np.float32)
        self.marginal = self.lam * (-np.log2(entropy._probabilities["marginal"])).astype(np.float32)
        self.previous_bins = None if stages is None else stages.previous_bins
        # activity bin of every cell at every stage s >= 1, from the greedy prefix (integers, exact)
        self.activity_bins: list[np.ndarray | None] = [None]
        if stages is not None and greedy.shape[0] > 1:
            latent = np.zeros(greedy.shape[1:] + (stages.context_codebooks.shape[2],), dtype=np.int64)
            for s in range(1, greedy.shape[0]):
                latent += stages.context_codebooks[s - 1][greedy[s - 1]]
                bins = np.searchsorted(stages.activity_edges[s], latent_activity(latent), side="left")
                self.activity_bins.append(bins.ravel().astype(np.int64))

    def __call__(self, stage: int, cells: np.ndarray, previous: np.ndarray) -> np.ndarray:
        if stage == 0:
            return np.broadcast_to(self.stage0, (cells.size, self.stage0.size))
        if self.rows is None:
            return np.broadcast_to(self.marginal[stage], (cells.size, self.marginal.shape[1]))
        contexts = self.activity_bins[stage][cells] * PREVIOUS_BINS + self.previous_bins[stage][previous]
        return self.rows[stage][contexts]


def rate_weight(entropy, codebooks: np.ndarray, latent: np.ndarray, greedy: np.ndarray) -> float:
    """lambda: ``RATE_WEIGHT`` * (squared error per cell removed by the last greedy stage) /
    (its estimated bits per cell). latent (h, w, M), greedy (q, h, w)."""
    q = greedy.shape[0]
    cells = greedy[0].size
    before = np.square(latent - dequantize(greedy[: q - 1], codebooks)).sum(dtype=np.float64) / cells
    after = np.square(latent - dequantize(greedy, codebooks)).sum(dtype=np.float64) / cells
    bits = entropy.estimate_bits(greedy[q - 1], q - 1, greedy[: q - 1] if q > 1 else None) / cells
    return RATE_WEIGHT * max(before - after, 0.0) / max(bits, 1e-9)


def search_indices(weights, latent: np.ndarray, num_stages: int, effort: int = DEFAULT_EFFORT) -> np.ndarray:
    """latent (h, w, M) float32 -> indices (num_stages, h, w) int64 at ``effort``
    (0 and 1: greedy, exactly :func:`vqz.codec.vq.quantize`)."""
    effort = check_effort(effort)
    greedy = quantize(latent, weights.codebooks, num_stages)
    if effort not in SEARCH_EFFORTS or num_stages == 1 or weights.entropy is None:
        # one stage: the beam alone is the nearest code, and the rate term (lambda from the
        # first stage's average slope, far steeper than the tangent) lost 0.64 dB at equal
        # rate on the held-out split; quality 1 stays greedy
        return greedy
    lam = rate_weight(weights.entropy, weights.codebooks, latent, greedy)
    cost = _BitCost(weights.entropy, greedy, lam)
    return beam_quantize(latent, weights.codebooks, num_stages, EFFORT_BEAMS[effort], cost)
