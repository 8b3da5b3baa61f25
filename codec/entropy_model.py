"""The probability model over index planes, built only from frozen integer tables.

Stage 0 (the coarse image) is spatially redundant, so it is coded in four passes over
a 2x2 subsampling of the grid, each pass conditioned on an already-decoded neighbour::

    A = plane[0::2, 0::2]   marginal table of stage 0
    B = plane[0::2, 1::2]   conditioned on its left neighbour (in A)   -> table ``left``
    C = plane[1::2, 0::2]   conditioned on its upper neighbour (in A)  -> table ``up``
    D = plane[1::2, 1::2]   conditioned on its upper neighbour (in B)  -> table ``up``

Every pass is one vectorised constriction call (no raster loop). Stages 1.. are coded
i.i.d. under their own marginal tables (their indices are nearly independent of their
neighbours and of the previous stage, measured on held-out data).

Tables (all positive integers, stored in the weights file):

* ``marginal``: (S, K) int64;
* ``left``, ``up``: (K, K) int32, row ``i`` = frequencies of the index given neighbour ``i``.

Both sides turn a row of integers into float64 probabilities by one exact division, so
the models are bit-identical on every machine (see docs/FORMAT.md).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import constriction
import numpy as np

from vqz.errors import FormatError

_WORD = np.dtype("<u4")
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

    def __post_init__(self) -> None:
        if self.marginal.ndim != 2 or (self.marginal <= 0).any():
            raise ValueError("marginal tables must be a positive (S, K) array")
        k = self.marginal.shape[1]
        for name in ("left", "up"):
            table = getattr(self, name)
            if table is not None and (table.shape != (k, k) or (table <= 0).any()):
                raise ValueError(f"`{name}` must be a positive ({k}, {k}) array")

    @functools.cached_property
    def _probabilities(self) -> dict[str, np.ndarray]:
        """Every table turned into float64 probabilities once (same exact division as per row)."""
        out = {"marginal": _normalise(self.marginal)}
        for name in ("left", "up"):
            if getattr(self, name) is not None:
                out[name] = _normalise(getattr(self, name))
        return out

    @property
    def spatial(self) -> bool:
        return self.left is not None and self.up is not None

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
    def encode_plane(self, plane: np.ndarray, stage: int) -> bytes:
        """(gh, gw) int indices of one stage -> payload bytes."""
        coder = constriction.stream.stack.AnsCoder()
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

    def decode_plane(self, data: bytes, stage: int, height: int, width: int) -> np.ndarray:
        """Payload bytes -> (height, width) int64 indices of stage ``stage``."""
        if len(data) % _WORD.itemsize:
            raise FormatError("payload length is not a multiple of 4 bytes")
        words = np.frombuffer(data, dtype=_WORD).astype(np.uint32)
        if words.size and words[-1] == 0:
            raise FormatError("payload is not a valid ANS stream")
        plane = np.zeros((height, width), dtype=np.int64)
        try:
            coder = constriction.stream.stack.AnsCoder(words)
            if stage > 0 or not self.spatial:
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

    def estimate_bits(self, plane: np.ndarray, stage: int) -> float:
        """The model's own code length for a plane: sum of -log2 p(index)."""
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
