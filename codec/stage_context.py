"""Contexts for coding residual-VQ stages ``s >= 1`` from the stages already decoded.

The index of stage ``s`` at a latent cell depends on how large the residual entering
stage ``s`` is there: in flat regions it is small and short code vectors win, in textured
regions long ones do. Both sides know every stage ``t < s`` before stage ``s``, so the
coder selects, per cell, one of ``C = ACTIVITY_BINS * PREVIOUS_BINS`` probability tables:

    context(p) = activity_bin(p) * PREVIOUS_BINS + previous_bins[s, i_{s-1}(p)]

* ``activity(p) = sum over the 4 neighbours q of ||L(p) - L(q)||^2``, where
  ``L = sum_{t < s} codebooks[t, i_t]`` is the latent decoded so far, built from the
  **integer** context codebooks (``round(code vector * 2**CONTEXT_SCALE_LOG2)``, frozen in
  the weights); a neighbour outside the grid replicates the edge (contributes 0).
  ``activity_bin`` = number of thresholds in ``activity_edges[s]`` (ascending int64) that are
  strictly below ``activity(p)``.
* ``previous_bins[s, j]`` in ``[0, PREVIOUS_BINS)``: a frozen bin of the stage ``s-1`` code
  ``j`` (by its length), so long previous codes, which leave large residuals, select
  different tables than short ones.

Everything is integer arithmetic on frozen integer tables, so encoder and decoder derive
identical contexts on every machine. Row ``0`` of each per-stage array is unused.

Shapes: ``context_codebooks`` (S, K, M) int32; ``activity_edges`` (S, ACTIVITY_BINS - 1)
int64; ``previous_bins`` (S, K) int32; ``tables`` (S, C, K) int32, positive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vqz.bitstream.container import MASK_BLOCK, mask_shape

ACTIVITY_BINS = 8
PREVIOUS_BINS = 4
NUM_CONTEXTS = ACTIVITY_BINS * PREVIOUS_BINS
CONTEXT_SCALE_LOG2 = 10


def integer_codebooks(codebooks: np.ndarray) -> np.ndarray:
    """(S, K, M) float code vectors -> (S, K, M) int32, ``round(x * 2**CONTEXT_SCALE_LOG2)``."""
    return np.round(np.asarray(codebooks, dtype=np.float64) * (1 << CONTEXT_SCALE_LOG2)).astype(np.int32)


def prefix_activity(context_codebooks: np.ndarray, prefix: np.ndarray) -> np.ndarray:
    """Local variation of the latent decoded from ``prefix``.

    Args:
        context_codebooks: (S, K, M) int32.
        prefix: (s, H, W) int indices of stages ``0..s-1`` (``s >= 1``).

    Returns:
        (H, W) int64: sum over the 4 neighbours of the squared distance between latents.
    """
    latent = PrefixLatent(context_codebooks, prefix.shape[1:])
    for plane in prefix:
        latent.add(plane)
    return latent.activity()


#: Latent rows whose activity is computed at a time (an 8K grid's full-size int64 differences are 265 MB each).
ACTIVITY_ROWS = 64


def latent_activity(latent: np.ndarray) -> np.ndarray:
    """(H, W, M) int64 fixed-point latent -> (H, W) int64: sum over the 4 neighbours of the squared
    distance (:func:`prefix_activity` of the prefix that decodes to ``latent``)."""
    height = latent.shape[0]
    activity = np.zeros(latent.shape[:2], dtype=np.int64)
    for start in range(0, height, ACTIVITY_ROWS):  # row bands bound the temporaries (exact: int64 either way)
        stop = min(height, start + ACTIVITY_ROWS)
        across = np.diff(latent[start:stop], axis=1)
        energy = np.einsum("...m,...m->...", across, across)
        activity[start:stop, 1:] += energy  # each cell gets its left neighbour ...
        activity[start:stop, :-1] += energy  # ... and its right one
        down = latent[start + 1 : stop + 1] - latent[start : min(stop, height - 1)]  # rows r+1 - r, r < height - 1
        energy = np.einsum("...m,...m->...", down, down)
        activity[start + 1 : start + 1 + len(energy)] += energy  # the one above ...
        activity[start : start + len(energy)] += energy  # ... and the one below
    return activity


class PrefixLatent:
    """The integer latent decoded so far, ``L = sum_{t < s} context_codebooks[t, i_t]``, built one
    stage at a time, so that the activities of all stages cost one gather per stage instead of
    ``s`` gathers for stage ``s`` (quadratic in the number of stages).

    ``activity()`` after ``add`` of the planes of stages ``0..s-1`` equals
    :func:`prefix_activity` of those planes, bit for bit (same int64 arithmetic).
    """

    def __init__(self, context_codebooks: np.ndarray, shape: tuple[int, int]) -> None:
        self._codebooks = context_codebooks
        self._latent = np.zeros(tuple(shape) + (context_codebooks.shape[2],), dtype=np.int64)
        self.stages = 0  # planes added so far

    def add(self, plane: np.ndarray) -> None:
        """Add the (H, W) indices of the next stage (all cells coded: the prefix of a later stage)."""
        self._latent += self._codebooks[self.stages][plane]
        self.stages += 1

    def activity(self) -> np.ndarray:
        """(H, W) int64: sum over the 4 neighbours of the squared distance between latents."""
        return latent_activity(self._latent)


def context_of(activity: np.ndarray, previous: np.ndarray, edges: np.ndarray, previous_bins: np.ndarray) -> np.ndarray:
    """Contexts of one stage ``s``: (H, W) int64 in [0, C).

    Args:
        activity: (H, W) int64 from :func:`prefix_activity`.
        previous: (H, W) indices of stage ``s - 1``.
        edges: (ACTIVITY_BINS - 1,) int64, ``activity_edges[s]``.
        previous_bins: (K,) int, ``previous_bins[s]``.
    """
    return np.searchsorted(edges, activity, side="left") * PREVIOUS_BINS + previous_bins[previous]


@dataclass(frozen=True)
class StageContexts:
    """The frozen integer tables that select a probability row for each index of stage ``s >= 1``."""

    context_codebooks: np.ndarray  # (S, K, M) int32
    activity_edges: np.ndarray  # (S, ACTIVITY_BINS - 1) int64
    previous_bins: np.ndarray  # (S, K) int32 in [0, PREVIOUS_BINS)
    tables: np.ndarray  # (S, NUM_CONTEXTS, K) int32 > 0

    def __post_init__(self) -> None:
        s, k, _ = self.context_codebooks.shape
        expected = {"activity_edges": (s, ACTIVITY_BINS - 1), "previous_bins": (s, k), "tables": (s, NUM_CONTEXTS, k)}
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"`{name}` must have shape {shape}, got {getattr(self, name).shape}")
        if (self.tables <= 0).any():
            raise ValueError("`tables` must be positive")
        if self.previous_bins.min() < 0 or self.previous_bins.max() >= PREVIOUS_BINS:
            raise ValueError(f"`previous_bins` must lie in [0, {PREVIOUS_BINS})")
        if (np.diff(self.activity_edges, axis=1) < 0).any():
            raise ValueError("`activity_edges` must be ascending")

    def contexts(self, prefix: np.ndarray, stage: int, activity: np.ndarray | None = None) -> np.ndarray:
        """prefix: (stage, H, W) indices of the stages before ``stage`` -> (H, W) int64 in [0, C).

        ``activity``: :meth:`activity` of the same prefix, if already computed.
        """
        if activity is None:
            activity = self.activity(prefix, stage)
        return context_of(activity, prefix[stage - 1], self.activity_edges[stage], self.previous_bins[stage])

    def activity(self, prefix: np.ndarray, stage: int) -> np.ndarray:
        """(H, W) int64 :func:`prefix_activity` of the latent decoded from ``prefix`` (stages before ``stage``).

        A coder that goes through the stages in turn gets the same values cheaper from a
        :class:`PrefixLatent` (:meth:`running_latent`).
        """
        if stage < 1 or prefix.shape[0] != stage:
            raise ValueError(f"stage {stage} needs the {stage} planes before it, got {prefix.shape[0]}")
        return prefix_activity(self.context_codebooks, prefix)

    def running_latent(self, shape: tuple[int, int]) -> PrefixLatent:
        """An empty :class:`PrefixLatent` of an (H, W) grid, for the activities of stages in turn."""
        return PrefixLatent(self.context_codebooks, shape)


def priority_order(activity: np.ndarray) -> np.ndarray:
    """The order in which the cells of a part-way stage without a block mask are coded:
    (H, W) activity -> (H*W,) raster positions.

    Largest activity first (where the latent decoded so far varies most, the residual left for
    this stage is largest), ties by raster position: a stable sort on ``-activity``. Integer
    data the decoder has before the stage, so both sides derive the same order.
    """
    return np.argsort(-activity.ravel(), kind="stable")


def block_of_cells(height: int, width: int) -> np.ndarray:
    """(H, W) int64: the raster index of the ``MASK_BLOCK`` x ``MASK_BLOCK`` block of each cell of the grid."""
    _, columns = mask_shape(height, width)
    rows = np.arange(height) // MASK_BLOCK
    cols = np.arange(width) // MASK_BLOCK
    return rows[:, None] * columns + cols[None, :]


def pack_mask(selected: np.ndarray) -> bytes:
    """(blocks,) bool, one per block in raster order -> the packed block mask (bit j = byte j // 8, bit j % 8)."""
    return np.packbits(np.asarray(selected, dtype=bool), bitorder="little").tobytes()


def mask_cells(mask: bytes, height: int, width: int) -> np.ndarray:
    """Raster positions (ascending) of the cells of the blocks a packed block mask selects."""
    blocks = np.unpackbits(np.frombuffer(mask, dtype=np.uint8), bitorder="little").astype(bool)
    return np.flatnonzero(blocks[block_of_cells(height, width)])


# ------------------------------------------------------------------ building the tables
def previous_bins_from(codebooks: np.ndarray, marginal_counts: np.ndarray) -> np.ndarray:
    """(S, K, M) float codebooks, (S, K) index counts -> (S, K) int32 bins of the previous stage's codes.

    Row ``s`` bins the codes of stage ``s - 1`` by length into ``PREVIOUS_BINS`` bins of equal
    usage (by ``marginal_counts[s - 1]``).
    """
    codebooks = np.asarray(codebooks, dtype=np.float64)
    bins = np.zeros(marginal_counts.shape, dtype=np.int32)
    for stage in range(1, codebooks.shape[0]):
        lengths = np.linalg.norm(codebooks[stage - 1], axis=1)
        order = np.argsort(lengths, kind="stable")
        usage = np.cumsum(marginal_counts[stage - 1][order].astype(np.float64))
        usage /= max(usage[-1], 1.0)
        bins[stage][order] = np.minimum((usage * PREVIOUS_BINS - 1e-9).astype(np.int32).clip(0), PREVIOUS_BINS - 1)
    return bins


def activity_edges_from(activities: list[np.ndarray]) -> np.ndarray:
    """Per-stage activity samples (index 0 ignored) -> (S, ACTIVITY_BINS - 1) int64 quantile thresholds."""
    edges = np.zeros((len(activities), ACTIVITY_BINS - 1), dtype=np.int64)
    fractions = np.arange(1, ACTIVITY_BINS) / ACTIVITY_BINS
    for stage, values in enumerate(activities):
        if stage and values.size:
            edges[stage] = np.quantile(values, fractions, method="lower").astype(np.int64)
    return edges
