"""Entropy coding with constriction: exact round trips, bits written match the model's estimate."""

from __future__ import annotations

import numpy as np
import pytest

from vqz.codec.entropy_model import EntropyModel, conditional_from_counts, marginal_from_counts, neighbour_pairs
from vqz.errors import FormatError

K = 64


def _model(seed: int = 0, spatial: bool = True) -> tuple[EntropyModel, np.ndarray]:
    """A model fitted to a smooth random plane (neighbours often share an index)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, K, (12, 16))
    plane = np.repeat(np.repeat(coarse, 3, 0), 3, 1)
    noise = rng.random(plane.shape) < 0.2
    plane[noise] = rng.integers(0, K, noise.sum())
    marginal_counts = np.stack([np.bincount(plane.ravel(), minlength=K)] * 3)
    left, up = neighbour_pairs(plane, K)
    marginal = marginal_from_counts(marginal_counts)
    if not spatial:
        return EntropyModel(marginal), plane
    return EntropyModel(marginal, conditional_from_counts(left, marginal_counts[0], 5.0),
                        conditional_from_counts(up, marginal_counts[0], 5.0)), plane


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (2, 2), (5, 9), (36, 48)])
@pytest.mark.parametrize("stage", [0, 1])
def test_round_trip_is_exact_for_every_grid_shape(shape, stage):
    model, plane = _model()
    part = np.ascontiguousarray(plane[: shape[0], : shape[1]])
    data = model.encode_plane(part, stage)
    assert np.array_equal(model.decode_plane(data, stage, *shape), part)


def test_bits_written_are_within_one_percent_of_the_estimate():
    model, plane = _model(1)
    for stage in (0, 1):
        written = 8 * len(model.encode_plane(plane, stage))
        estimate = model.estimate_bits(plane, stage)
        assert estimate <= written <= 1.01 * estimate + 64


def test_neighbour_context_saves_bits_on_smooth_planes():
    spatial, plane = _model(2)
    plain, _ = _model(2, spatial=False)
    assert len(spatial.encode_plane(plane, 0)) < 0.8 * len(plain.encode_plane(plane, 0))


def test_every_symbol_stays_codable():
    marginal = marginal_from_counts(np.array([[1_000_000, 0, 0, 0]]))
    assert (marginal > 0).all()
    table = conditional_from_counts(np.array([[9, 0, 0, 0]] * 4), np.array([1, 0, 0, 0]), 1.0)
    assert (table > 0).all()
    model = EntropyModel(marginal, table, table)
    plane = np.array([[1, 2], [3, 0]])
    assert np.array_equal(model.decode_plane(model.encode_plane(plane, 0), 0, 2, 2), plane)


def test_bad_payloads_raise_format_error():
    model, plane = _model(3)
    data = model.encode_plane(plane, 1)
    with pytest.raises(FormatError):
        model.decode_plane(data[:-1], 1, *plane.shape)
    with pytest.raises(FormatError):
        model.decode_plane(data, 1, plane.shape[0] // 2, plane.shape[1])


def test_invalid_tables_are_refused():
    with pytest.raises(ValueError):
        EntropyModel(np.zeros((2, 4), np.int64))
    with pytest.raises(ValueError):
        EntropyModel(np.ones((2, 4), np.int64), np.ones((3, 3), np.int32), np.ones((4, 4), np.int32))
