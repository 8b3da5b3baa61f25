"""Entropy coding with constriction: exact round trips, and bits written match the model's estimate."""

from __future__ import annotations

import numpy as np
import pytest

from vqz.codec.entropy import cross_entropy_bits, decode_symbols, encode_symbols, frequencies_from_counts
from vqz.errors import FormatError


def _skewed(size: int, alphabet: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    probabilities = rng.dirichlet(np.full(alphabet, 0.3))
    symbols = rng.choice(alphabet, size=size, p=probabilities)
    frequencies = frequencies_from_counts(np.bincount(symbols, minlength=alphabet))
    return symbols, frequencies


@pytest.mark.parametrize("size", [0, 1, 7, 6144])
def test_round_trip_is_exact(size):
    symbols, frequencies = _skewed(size, 512, seed=size)
    assert np.array_equal(decode_symbols(encode_symbols(symbols, frequencies), frequencies, size), symbols)


def test_bits_written_are_within_one_percent_of_the_estimate():
    symbols, frequencies = _skewed(6144, 512, seed=1)
    written = 8 * len(encode_symbols(symbols, frequencies))
    estimate = cross_entropy_bits(symbols, frequencies)
    assert estimate <= written <= 1.01 * estimate + 64


def test_skewed_model_beats_fixed_length():
    symbols, frequencies = _skewed(6144, 512, seed=2)
    assert 8 * len(encode_symbols(symbols, frequencies)) < 0.9 * 6144 * 9


def test_every_symbol_stays_codable():
    frequencies = frequencies_from_counts(np.array([1_000_000, 0, 0, 0]))
    assert (frequencies > 0).all()
    symbols = np.array([1, 2, 3, 0])
    assert np.array_equal(decode_symbols(encode_symbols(symbols, frequencies), frequencies, 4), symbols)


def test_bad_payloads_raise_format_error():
    symbols, frequencies = _skewed(100, 16, seed=3)
    data = encode_symbols(symbols, frequencies)
    with pytest.raises(FormatError):
        decode_symbols(data[:-1], frequencies, 100)
    with pytest.raises(FormatError):
        decode_symbols(data, frequencies, 50)


def test_symbols_outside_the_alphabet_are_refused():
    with pytest.raises(ValueError):
        encode_symbols(np.array([0, 16]), np.ones(16, dtype=np.int64))
