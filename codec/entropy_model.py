"""The probability model over index planes, built only from frozen integer tables.

Stage 0 (the coarse image) is spatially redundant, so it is coded in four passes over
a 2x2 subsampling of the grid, each pass conditioned on an already-decoded neighbour::

    A = plane[0::2, 0::2]   marginal table of stage 0
    B = plane[0::2, 1::2]   conditioned on its left neighbour (in A)   -> table ``left``
    C = plane[1::2, 0::2]   conditioned on its upper neighbour (in A)  -> table ``up``
    D = plane[1::2, 1::2]   conditioned on its upper neighbour (in B)  -> table ``up``

Every pass is one vectorised constriction call (no raster loop). Stages 1.. are coded
under one of a few tables per stage, selected per cell by a context computed in integers
from the stages already decoded (:mod:`vqz.codec.stage_context`): the cells are grouped by
context and each group is one constriction call. A model without those tables codes
stages 1.. under their marginal tables.

Tables (all positive integers, stored in the weights file):

* ``marginal``: (S, K) int64;
* ``left``, ``up``: (K, K) int32, row ``i`` = frequencies of the index given neighbour ``i``;
* ``stages`` (optional): :class:`~vqz.codec.stage_context.StageContexts`, the per-stage
  context tables of stages 1.. and the integer data their contexts are computed from.

Both sides turn a row of integers into float64 probabilities by one exact division, so
the models are bit-identical on every machine (see docs/FORMAT.md).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import constriction
import numpy as np

from vqz.codec.stage_context import NUM_CONTEXTS, StageContexts, priority_order
from vqz.errors import FormatError

_WORD = np.dtype("<u4")
#: The index of a cell a part-way stage leaves uncoded (it adds no code vector: :func:`vqz.codec.vq.dequantize`).
UNCODED = -1
CONDITIONAL_TOTAL = 1 << 15
# Symbols per constriction call in a conditional pass (encoder and decoder): bounds its (chunk, K)
# float64 probability table (16 MiB for K = 512) whatever grid size a header declares.
DECODE_CHUNK = 1 << 12


def _normalise(rows: np.ndarray) -> np.ndarray:
    rows = rows.astype(np.float64)
    return rows / rows.sum(axis=-1, keepdims=True)


def _phase_views(plane: np.ndarray) -> list[np.ndarray]:
    return [plane[0::2, 0::2], plane[0::2, 1::2], plane[1::2, 0::2], plane[1::2, 1::2]]


def _contexts(plane: np.ndarray, phase: int) -> np.ndarray:
    """Context indices for pass ``phase`` (1..3), taken from passes already decoded."""
    a, b, _, _ = _phase_views(plane)
    if phase == 1:
        return a[:, : plane[0::2, 1::2].shape[1]]
    if phase == 2:
        return a[: plane[1::2, 0::2].shape[0], :]
    return b[: plane[1::2, 1::2].shape[0], :]


@dataclass(frozen=True)
class EntropyModel:
    marginal: np.ndarray  # (S, K) int64
    left: np.ndarray | None = None  # (K, K) int32
    up: np.ndarray | None = None  # (K, K) int32
    stages: StageContexts | None = None

    def __post_init__(self) -> None:
        if self.marginal.ndim != 2 or (self.marginal <= 0).any():
            raise ValueError("marginal tables must be a positive (S, K) array")
        k = self.marginal.shape[1]
        for name in ("left", "up"):
            table = getattr(self, name)
            if table is not None and (table.shape != (k, k) or (table <= 0).any()):
                raise ValueError(f"`{name}` must be a positive ({k}, {k}) array")
        if self.stages is not None and self.stages.tables.shape[::2] != self.marginal.shape:
            raise ValueError(f"stage context tables must be ({self.marginal.shape[0]}, C, {k})")

    @functools.cached_property
    def _probabilities(self) -> dict[str, np.ndarray]:
        """Every table turned into float64 probabilities once (same exact division as per row)."""
        out = {"marginal": _normalise(self.marginal)}
        for name in ("left", "up"):
            if getattr(self, name) is not None:
                out[name] = _normalise(getattr(self, name))
        return out

    @functools.cached_property
    def _stage_probabilities(self) -> np.ndarray:
        """(S, C, K) float64 rows of the stage context tables (same exact division as the coder)."""
        assert self.stages is not None
        return _normalise(self.stages.tables)

    @functools.cached_property
    def _stage_models(self) -> list[list]:
        """[stage][context] constriction models of stages 1.. (row 0 unused), built once."""
        assert self.stages is not None
        rows = self._stage_probabilities
        return [[constriction.stream.model.Categorical(rows[s, c], perfect=False) for c in range(NUM_CONTEXTS)]
                if s else [] for s in range(rows.shape[0])]

    @property
    def spatial(self) -> bool:
        return self.left is not None and self.up is not None

    def _uses_contexts(self, stage: int, prefix: np.ndarray | None) -> bool:
        if stage == 0 or self.stages is None:
            return False
        if prefix is None or prefix.shape[0] != stage:
            raise ValueError(f"stage {stage} is coded given the {stage} planes before it (`prefix`)")
        return True

    def _context_groups(self, prefix: np.ndarray, stage: int, coded: int | None = None,
                        activity: np.ndarray | None = None,
                        cells: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Cells grouped by context: (raster positions sorted by context (stable), start of each group + end).

        ``coded``: only the first ``coded`` cells in :func:`~vqz.codec.stage_context.priority_order`
        (a part-way stage), still grouped by context, each group in raster order. ``cells``: instead,
        exactly these raster positions (ascending, distinct: a block mask's,
        :func:`~vqz.codec.stage_context.mask_cells`). ``activity``: the stage's activity if the caller
        has it already (it must equal ``stages.activity(prefix, stage)``).
        """
        assert self.stages is not None
        if activity is None:
            activity = self.stages.activity(prefix, stage)
        contexts = self.stages.contexts(prefix, stage, activity).ravel()
        if cells is not None:
            positions = np.asarray(cells, dtype=np.int64)
            if positions.size and (positions[0] < 0 or positions[-1] >= contexts.size
                                   or (np.diff(positions) <= 0).any()):
                raise FormatError("coded cells must be distinct raster positions of the grid, ascending")
        elif coded is None:
            positions = np.arange(contexts.size)
        else:
            if not 0 <= coded <= contexts.size:
                raise FormatError(f"{coded} coded cells exceed the stage's {contexts.size}")
            positions = np.sort(priority_order(activity)[:coded])
        contexts = contexts[positions]
        grouped = positions[np.argsort(contexts, kind="stable")]
        bounds = np.concatenate([[0], np.cumsum(np.bincount(contexts, minlength=NUM_CONTEXTS))])
        return grouped, bounds

    def _check_partial(self, stage: int, coded: int | None, cells: np.ndarray | None) -> None:
        if coded is not None and cells is not None:
            raise ValueError("give a part-way stage's cell count or its cells, not both")
        if (coded is not None or cells is not None) and (stage == 0 or self.stages is None):
            raise FormatError("only a stage s >= 1 coded under stage context tables can stop part-way"
                              if stage else "stage 0 cannot stop part-way")

    # -------------------------------------------------------------- per-pass models
    def _passes(self, plane: np.ndarray, stage: int) -> list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]:
        """(symbols, probability table or None for the marginal, context per symbol) per pass."""
        if stage > 0 or not self.spatial:
            return [(plane.ravel(), None, None)]
        views = _phase_views(plane)
        tables = [None, self._probabilities["left"], self._probabilities["up"], self._probabilities["up"]]
        return [(view.ravel(), table, None if table is None else _contexts(plane, phase).ravel())
                for phase, (view, table) in enumerate(zip(views, tables))]

    def _marginal_model(self, stage: int):
        return constriction.stream.model.Categorical(self._probabilities["marginal"][stage], perfect=False)

    # -------------------------------------------------------------- coding
    def encode_plane(self, plane: np.ndarray, stage: int, prefix: np.ndarray | None = None,
                     coded: int | None = None, activity: np.ndarray | None = None,
                     cells: np.ndarray | None = None) -> bytes:
        """(gh, gw) int indices of one stage -> payload bytes.

        ``prefix``: (stage, gh, gw) indices of the stages before it; needed for ``stage >= 1``
        when the model has stage context tables. ``coded``: code only the first ``coded`` cells
        in priority order (a part-way stage; ``None``: all of them); ``cells``: instead, exactly
        these ascending raster positions (a part-way stage with a block mask). ``activity``: the (gh, gw)
        activity of ``prefix`` if already known (:class:`~vqz.codec.stage_context.PrefixLatent`);
        it must equal ``stages.activity(prefix, stage)``, which is computed otherwise.
        """
        self._check_partial(stage, coded, cells)
        coder = constriction.stream.stack.AnsCoder()
        if self._uses_contexts(stage, prefix):
            grouped, bounds = self._context_groups(prefix, stage, coded, activity, cells)
            symbols = np.ascontiguousarray(plane.ravel()[grouped], dtype=np.int32)
            models = self._stage_models[stage]
            for context in reversed(range(NUM_CONTEXTS)):  # reversed: the decoder reads groups forwards
                if bounds[context + 1] > bounds[context]:
                    coder.encode_reverse(symbols[bounds[context] : bounds[context + 1]], models[context])
            return coder.get_compressed().astype(_WORD).tobytes()
        family = constriction.stream.model.Categorical(perfect=False)
        for symbols, table, contexts in reversed(self._passes(plane, stage)):
            symbols = np.ascontiguousarray(symbols, dtype=np.int32)
            if not symbols.size:
                continue
            if table is None:
                coder.encode_reverse(symbols, self._marginal_model(stage))
                continue
            # chunks in reverse so the decoder reads them forwards; bounds the (chunk, K) table
            for start in reversed(range(0, symbols.size, DECODE_CHUNK)):
                part = slice(start, start + DECODE_CHUNK)
                coder.encode_reverse(symbols[part], family, table[contexts[part]])
        return coder.get_compressed().astype(_WORD).tobytes()

    def decode_plane(self, data: bytes, stage: int, height: int, width: int, prefix: np.ndarray | None = None,
                     coded: int | None = None, activity: np.ndarray | None = None,
                     cells: np.ndarray | None = None) -> np.ndarray:
        """Payload bytes -> (height, width) int64 indices of stage ``stage`` (``prefix``, ``coded``, ``activity``,
        ``cells`` as in encode_plane); a cell a part-way stage leaves uncoded holds ``UNCODED``."""
        self._check_partial(stage, coded, cells)
        if len(data) % _WORD.itemsize:
            raise FormatError("payload length is not a multiple of 4 bytes")
        words = np.frombuffer(data, dtype=_WORD).astype(np.uint32)
        if words.size and words[-1] == 0:
            raise FormatError("payload is not a valid ANS stream")
        plane = np.zeros((height, width), dtype=np.int64)
        contextual = self._uses_contexts(stage, prefix)
        try:
            coder = constriction.stream.stack.AnsCoder(words)
            if contextual:
                grouped, bounds = self._context_groups(prefix, stage, coded, activity, cells)
                models = self._stage_models[stage]
                values = np.zeros(grouped.size, dtype=np.int64)
                if coded is not None or cells is not None:
                    plane[:] = UNCODED
                for context in range(NUM_CONTEXTS):
                    if bounds[context + 1] > bounds[context]:
                        values[bounds[context] : bounds[context + 1]] = coder.decode(
                            models[context], int(bounds[context + 1] - bounds[context]))
                plane.ravel()[grouped] = values
            elif stage > 0 or not self.spatial:
                plane[:] = np.asarray(coder.decode(self._marginal_model(stage), height * width)).reshape(height, width)
            else:
                family = constriction.stream.model.Categorical(perfect=False)
                slices = [(slice(0, None, 2), slice(0, None, 2)), (slice(0, None, 2), slice(1, None, 2)),
                          (slice(1, None, 2), slice(0, None, 2)), (slice(1, None, 2), slice(1, None, 2))]
                tables = [None, self._probabilities["left"], self._probabilities["up"], self._probabilities["up"]]
                for phase, (rows, cols) in enumerate(slices):
                    shape = plane[rows, cols].shape
                    count = shape[0] * shape[1]
                    if not count:
                        continue
                    if tables[phase] is None:
                        values = coder.decode(self._marginal_model(stage), count)
                    else:
                        contexts = _contexts(plane, phase).ravel()
                        values = np.concatenate([
                            coder.decode(family, tables[phase][contexts[start : start + DECODE_CHUNK]])
                            for start in range(0, count, DECODE_CHUNK)
                        ])
                    plane[rows, cols] = np.asarray(values).reshape(shape)
            leftover = not coder.is_empty()
        except (ValueError, RuntimeError, AssertionError) as exc:
            raise FormatError(f"payload does not decode: {exc}") from None
        if leftover:
            raise FormatError("payload has data left over after the last symbol")
        return plane

    def cell_bits(self, plane: np.ndarray, stage: int, prefix: np.ndarray,
                  activity: np.ndarray | None = None) -> np.ndarray:
        """(gh, gw) float64: each index's code length under its context, ``-log2 p(index | context)``
        (a stage ``s >= 1`` under stage context tables; ``activity`` as in encode_plane). The contexts
        depend on the stages before only, so a cell costs the same whichever cells of the stage are coded."""
        if not self._uses_contexts(stage, prefix):
            raise ValueError("per-cell code lengths need a stage s >= 1 under stage context tables")
        assert self.stages is not None
        contexts = self.stages.contexts(prefix, stage, activity)
        return -np.log2(self._stage_probabilities[stage][contexts, plane])

    def estimate_bits(self, plane: np.ndarray, stage: int, prefix: np.ndarray | None = None,
                      activity: np.ndarray | None = None) -> float:
        """The model's own code length for a plane: sum of -log2 p(index) (``activity`` as in encode_plane)."""
        if self._uses_contexts(stage, prefix):
            assert self.stages is not None
            rows = self._stage_probabilities[stage]
            contexts = self.stages.contexts(prefix, stage, activity).ravel()
            return float(-np.log2(rows[contexts, plane.ravel()]).sum())
        total = 0.0
        for symbols, table, contexts in self._passes(plane, stage):
            if table is None:
                p = self._probabilities["marginal"][stage][symbols]
            else:
                p = table[contexts, symbols]
            total += float(-np.log2(p).sum())
        return total


# ------------------------------------------------------------------ building tables
def marginal_from_counts(counts: np.ndarray, total: int = 1 << 16) -> np.ndarray:
    """Observed counts (..., K) -> positive integer frequencies summing to about ``total``."""
    counts = np.asarray(counts, dtype=np.float64) + 0.5
    probabilities = counts / counts.sum(axis=-1, keepdims=True)
    return np.floor(probabilities * (total - counts.shape[-1])).astype(np.int64) + 1


def conditional_from_counts(pairs: np.ndarray, prior: np.ndarray, strength: float) -> np.ndarray:
    """Pair counts (K, K) [context, symbol] -> (K, K) int32 rows, backed off to ``prior``.

    p(j | i) = (count(i, j) + strength * prior(j)) / (count(i) + strength)
    """
    prior = np.asarray(prior, dtype=np.float64)
    prior = prior / prior.sum()
    probabilities = (pairs + strength * prior[None, :]) / (pairs.sum(1, keepdims=True) + strength)
    k = pairs.shape[1]
    return (np.floor(probabilities * (CONDITIONAL_TOTAL - k)) + 1).astype(np.int32)


def neighbour_pairs(plane: np.ndarray, num_codes: int) -> tuple[np.ndarray, np.ndarray]:
    """(left, up) pair counts (K, K) of one stage-0 plane, using every neighbour pair."""
    left = np.zeros((num_codes, num_codes), dtype=np.int64)
    up = np.zeros((num_codes, num_codes), dtype=np.int64)
    np.add.at(left, (plane[:, :-1].ravel(), plane[:, 1:].ravel()), 1)
    np.add.at(up, (plane[:-1, :].ravel(), plane[1:, :].ravel()), 1)
    return left, up
