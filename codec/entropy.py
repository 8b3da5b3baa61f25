"""Entropy coding of index planes with constriction's ANS coder.

The probability model of each quantizer stage is a categorical distribution built
from frozen integer frequencies ``(S, K) int64`` stored in the weights file. Encoder and
decoder both convert the same integers to float64 probabilities by one IEEE division
and hand them to ``constriction.stream.model.Categorical(..., perfect=False)``, whose
quantization to fixed point is deterministic, so both sides build bit-identical
models on every machine. No probability ever depends on floating-point network output.

Compressed words are constriction's ``uint32`` arrays, stored little-endian.
"""

from __future__ import annotations

import constriction
import numpy as np

from vqz.errors import FormatError

_WORD = np.dtype("<u4")


def _model(frequencies: np.ndarray) -> "constriction.stream.model.Categorical":
    freq = np.asarray(frequencies, dtype=np.int64)
    if freq.ndim != 1 or freq.size < 2 or (freq <= 0).any():
        raise ValueError("frequencies must be a 1-D array of at least 2 positive integers")
    probabilities = freq.astype(np.float64) / float(freq.sum())
    return constriction.stream.model.Categorical(probabilities, perfect=False)


def encode_symbols(symbols: np.ndarray, frequencies: np.ndarray) -> bytes:
    """Code a 1-D array of ints in ``[0, K)`` i.i.d. under ``frequencies`` (K,) -> bytes."""
    symbols = np.ascontiguousarray(symbols, dtype=np.int32).ravel()
    if symbols.size and (symbols.min() < 0 or symbols.max() >= len(frequencies)):
        raise ValueError("symbol outside the alphabet")
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(symbols, _model(frequencies))
    return coder.get_compressed().astype(_WORD).tobytes()


def decode_symbols(data: bytes, frequencies: np.ndarray, count: int) -> np.ndarray:
    """Inverse of :func:`encode_symbols`: ``count`` symbols (int64) from ``data``.

    Raises FormatError if the bytes are not a whole number of words, or if they do not
    decode to exactly ``count`` symbols with nothing left over.
    """
    if len(data) % _WORD.itemsize:
        raise FormatError("payload length is not a multiple of 4 bytes")
    words = np.frombuffer(data, dtype=_WORD).astype(np.uint32)
    if words.size and words[-1] == 0:
        raise FormatError("payload is not a valid ANS stream")
    try:
        coder = constriction.stream.stack.AnsCoder(words)
        symbols = coder.decode(_model(frequencies), count)
        leftover = not coder.is_empty()
    except (ValueError, RuntimeError, AssertionError) as exc:
        raise FormatError(f"payload does not decode: {exc}") from None
    if leftover:
        raise FormatError("payload has data left over after the last symbol")
    return np.asarray(symbols, dtype=np.int64)


def cross_entropy_bits(symbols: np.ndarray, frequencies: np.ndarray) -> float:
    """Ideal code length (bits) of ``symbols`` under the model: sum of -log2 p(symbol)."""
    freq = np.asarray(frequencies, dtype=np.float64)
    log_p = np.log2(freq / freq.sum())
    return float(-log_p[np.asarray(symbols).ravel()].sum())


def frequencies_from_counts(counts: np.ndarray, total: int = 1 << 16) -> np.ndarray:
    """Turn observed symbol counts (K,) into positive integer frequencies summing to ~``total``.

    Every symbol keeps a frequency >= 1 so that nothing is ever uncodable.
    """
    counts = np.asarray(counts, dtype=np.float64) + 0.5  # add-half smoothing
    scaled = np.floor(counts / counts.sum() * (total - len(counts))).astype(np.int64) + 1
    return scaled
