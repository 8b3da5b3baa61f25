"""Entropy coding with constriction: exact round trips, bits written match the model's estimate."""

from __future__ import annotations

import numpy as np
import pytest

from vqz.codec.entropy_model import EntropyModel, conditional_from_counts, marginal_from_counts, neighbour_pairs
from vqz.codec.stage_context import (
    NUM_CONTEXTS,
    StageContexts,
    activity_edges_from,
    context_of,
    integer_codebooks,
    prefix_activity,
    previous_bins_from,
)
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


# ------------------------------------------------------------------ stage contexts (stages >= 1)
def _staged_model(seed: int = 4, stages: int = 3, k: int = 16, m: int = 4):
    """A model with stage context tables fitted to random index planes, and those planes."""
    rng = np.random.default_rng(seed)
    codebooks = rng.normal(size=(stages, k, m)) * np.array([1.0, 0.3, 0.1])[:stages, None, None]
    planes = rng.integers(0, k, (stages, 20, 24))
    marginal_counts = np.stack([np.bincount(p.ravel(), minlength=k) for p in planes])
    int_codebooks = integer_codebooks(codebooks)
    activities = [np.zeros(0, np.int64)] + [prefix_activity(int_codebooks, planes[:s]) for s in range(1, stages)]
    edges = activity_edges_from([a.ravel() for a in activities])
    previous = previous_bins_from(codebooks, marginal_counts)
    tables = np.ones((stages, NUM_CONTEXTS, k), np.int32)
    for s in range(1, stages):
        counts = np.zeros((NUM_CONTEXTS, k), np.int64)
        np.add.at(counts, (context_of(activities[s], planes[s - 1], edges[s], previous[s]).ravel(), planes[s].ravel()), 1)
        tables[s] = conditional_from_counts(counts, marginal_counts[s], 4.0)
    stage_contexts = StageContexts(int_codebooks, edges, previous, tables)
    return EntropyModel(marginal_from_counts(marginal_counts), stages=stage_contexts), planes


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (2, 2), (20, 24)])
def test_stage_context_round_trip_is_exact(shape):
    model, planes = _staged_model()
    part = np.ascontiguousarray(planes[:, : shape[0], : shape[1]])
    for s in range(1, part.shape[0]):
        data = model.encode_plane(part[s], s, part[:s])
        assert np.array_equal(model.decode_plane(data, s, *shape, part[:s]), part[s])


def test_stage_context_bits_match_the_estimate_and_beat_the_marginal():
    model, planes = _staged_model()
    plain = EntropyModel(model.marginal)
    for s in (1, 2):
        written = 8 * len(model.encode_plane(planes[s], s, planes[:s]))
        estimate = model.estimate_bits(planes[s], s, planes[:s])
        assert estimate <= written <= 1.01 * estimate + 64
        # tables fitted to these very planes must beat the marginal on them
        assert estimate < plain.estimate_bits(planes[s], s)


def test_contexts_are_integer_functions_of_the_prefix_only():
    model, planes = _staged_model()
    assert model.stages is not None
    contexts = model.stages.contexts(planes[:2], 2)
    assert contexts.dtype == np.int64 and contexts.min() >= 0 and contexts.max() < NUM_CONTEXTS
    assert len(np.unique(contexts)) > 1
    changed = planes.copy()
    changed[2] = (changed[2] + 1) % 16  # the plane being coded does not move its own contexts
    assert np.array_equal(model.stages.contexts(changed[:2], 2), contexts)
    changed[1, 5, 5] = (changed[1, 5, 5] + 3) % 16  # a prefix index does, around that cell only
    moved = np.argwhere(model.stages.contexts(changed[:2], 2) != contexts)
    assert len(moved) and (np.abs(moved - [5, 5]).sum(1) <= 1).all()


def test_activity_is_the_sum_of_squared_neighbour_distances():
    codebooks = np.zeros((2, 3, 2), np.int32)
    codebooks[0] = [[0, 0], [3, 4], [1, 0]]
    prefix = np.array([[[0, 1, 2]]])  # one row of three cells
    activity = prefix_activity(codebooks, prefix)
    assert activity.tolist() == [[25, 25 + 20, 20]]  # |(3,4)|^2 = 25, |(3,4)-(1,0)|^2 = 20


def test_running_latent_gives_every_stage_the_activity_of_its_whole_prefix():
    rng = np.random.default_rng(3)
    codebooks = rng.integers(-3000, 3000, size=(5, 16, 8)).astype(np.int32)
    planes = rng.integers(0, 16, size=(5, 7, 9))
    latent = StageContexts(codebooks, np.zeros((5, 7), np.int64), np.zeros((5, 16), np.int32),
                           np.ones((5, 32, 16), np.int32)).running_latent((7, 9))
    for stage in range(1, 5):
        latent.add(planes[stage - 1])
        # a direct float sum over the 4 neighbours, from scratch
        full = codebooks[np.arange(stage)[:, None, None], planes[:stage]].sum(0).astype(np.float64)
        padded = np.pad(full, ((1, 1), (1, 1), (0, 0)), mode="edge")
        expected = sum(((padded[1 + dy : 8 + dy, 1 + dx : 10 + dx] - full) ** 2).sum(-1)
                       for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)))
        assert np.array_equal(latent.activity(), expected.astype(np.int64))
        assert np.array_equal(prefix_activity(codebooks, planes[:stage]), latent.activity())


def test_coding_with_a_given_activity_equals_coding_from_the_prefix():
    model, planes = _staged_model()
    activity = model.stages.activity(planes[:2], 2)
    assert model.encode_plane(planes[2], 2, planes[:2], activity=activity) == model.encode_plane(planes[2], 2, planes[:2])
    assert model.estimate_bits(planes[2], 2, planes[:2], activity=activity) == model.estimate_bits(planes[2], 2, planes[:2])


def test_stage_coding_without_its_prefix_is_refused():
    model, planes = _staged_model()
    with pytest.raises(ValueError, match="prefix"):
        model.encode_plane(planes[1], 1)
    with pytest.raises(ValueError, match="prefix"):
        model.decode_plane(b"", 2, 20, 24, planes[:1])
