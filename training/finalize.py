"""Turn a training checkpoint into shippable weights with frozen entropy tables.

The tables are index statistics over the *training* split (never Kodak); the free
parameters, the back-off strengths of the stage-0 neighbour tables and of the stage
context tables, are chosen on the held-out *validation* split of the training folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from vqz.codec.config import ModelConfig
from vqz.training.data import is_validation, list_images, load_rgb
from vqz.codec.entropy_model import EntropyModel, conditional_from_counts, marginal_from_counts, neighbour_pairs
from vqz.training.model import VQCodecModel
from vqz.codec.padding import pad_rgb, to_input
from vqz.codec.stage_context import (
    ACTIVITY_BINS,
    NUM_CONTEXTS,
    StageContexts,
    activity_edges_from,
    context_of,
    integer_codebooks,
    prefix_activity,
    previous_bins_from,
)
from vqz.training.model import save_weights

BACKOFF_STRENGTHS = (2.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0, 1280.0)


def load_checkpoint_model(checkpoint: Path) -> tuple[VQCodecModel, dict[str, str]]:
    """The model of a training checkpoint (eval mode) and the checkpoint's metadata."""
    with safe_open(str(checkpoint), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
    model = VQCodecModel(ModelConfig.from_json(metadata["config"]))
    tensors = load_file(str(checkpoint))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    return model.eval(), metadata


@dataclass
class IndexStatistics:
    marginal: np.ndarray  # (S, K) counts
    left: np.ndarray  # (K, K) stage-0 pair counts
    up: np.ndarray  # (K, K)
    planes: list[np.ndarray]  # (S, h, w) int16 index planes of every image
    positions: int


@torch.no_grad()
def collect(model: VQCodecModel, paths: list[Path]) -> IndexStatistics:
    config = model.config
    k = config.codebook_size
    stats = IndexStatistics(np.zeros((config.num_stages, k), np.int64), np.zeros((k, k), np.int64),
                            np.zeros((k, k), np.int64), [], 0)
    for path in paths:
        x = torch.from_numpy(to_input(pad_rgb(load_rgb(path), config.downsampling)))
        indices = model.encode_indices(x, config.num_stages)[:, 0].numpy()
        for stage in range(config.num_stages):
            stats.marginal[stage] += np.bincount(indices[stage].ravel(), minlength=k)
        left, up = neighbour_pairs(indices[0], k)
        stats.left += left
        stats.up += up
        stats.planes.append(indices.astype(np.int16))
        stats.positions += indices[0].size
    return stats


def _stage_samples(int_codebooks: np.ndarray, planes: list[np.ndarray], stage: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Per image, the (h*w,) int64 activities of stage ``stage``; and its symbols over all images, (P,) int64."""
    activities = [prefix_activity(int_codebooks, p[:stage].astype(np.int64)).ravel() for p in planes]
    return activities, np.concatenate([p[stage].ravel().astype(np.int64) for p in planes])


def _contexts(activities: list[np.ndarray], planes: list[np.ndarray], stage: int, edges: np.ndarray,
              previous: np.ndarray) -> np.ndarray:
    """Contexts of stage ``stage`` over all images, (P,) int64, from activities computed once."""
    return np.concatenate([context_of(a, p[stage - 1].ravel().astype(np.int64), edges[stage], previous[stage])
                           for a, p in zip(activities, planes)])


def build_stage_contexts(model: VQCodecModel, train: IndexStatistics, validation: IndexStatistics | None,
                         report: dict[str, float]) -> StageContexts | None:
    """Context tables of stages 1..S-1: thresholds and counts on the training split, back-off on validation."""
    s, k = train.marginal.shape
    if s < 2:
        return None
    codebooks = model.quantizer.codebooks.detach().cpu().numpy()
    int_codebooks = integer_codebooks(codebooks)
    previous = previous_bins_from(codebooks, train.marginal)
    edges = np.zeros((s, ACTIVITY_BINS - 1), dtype=np.int64)
    tables = np.ones((s, NUM_CONTEXTS, k), dtype=np.int32)
    held_out = (validation or train).planes
    for stage in range(1, s):
        activities, symbols = _stage_samples(int_codebooks, train.planes, stage)
        edges[stage] = activity_edges_from([np.zeros(0, np.int64), np.concatenate(activities)])[1]
        counts = np.zeros((NUM_CONTEXTS, k), np.int64)
        np.add.at(counts, (_contexts(activities, train.planes, stage, edges, previous), symbols), 1)
        val_activities, val_symbols = _stage_samples(int_codebooks, held_out, stage)
        val_contexts = _contexts(val_activities, held_out, stage, edges, previous)
        best: tuple[float, float, np.ndarray] | None = None
        for strength in BACKOFF_STRENGTHS:
            rows = conditional_from_counts(counts, train.marginal[stage], strength)
            p = rows.astype(np.float64) / rows.sum(1, keepdims=True)
            bits = float(-np.log2(p[val_contexts, val_symbols]).mean())
            if best is None or bits < best[0]:
                best = (bits, strength, rows)
        assert best is not None
        tables[stage] = best[2]
        marginal = marginal_from_counts(train.marginal[stage])
        report[f"stage{stage}_bits_per_index_marginal"] = float(
            -np.log2(marginal[val_symbols] / marginal.sum()).mean())
        report[f"stage{stage}_bits_per_index_context"] = best[0]
        report[f"stage{stage}_chosen_strength"] = best[1]
    return StageContexts(int_codebooks, edges, previous, tables)


def build_entropy_model(model: VQCodecModel, train: IndexStatistics,
                        validation: IndexStatistics | None) -> tuple[EntropyModel, dict[str, float]]:
    """Tables from training statistics; back-off strengths picked on validation bits."""
    marginal = marginal_from_counts(train.marginal)
    best: tuple[float, float, EntropyModel] | None = None
    report: dict[str, float] = {}
    stage0 = [p[0].astype(np.int64) for p in (validation or train).planes]
    for strength in BACKOFF_STRENGTHS:
        candidate = EntropyModel(marginal, conditional_from_counts(train.left, train.marginal[0], strength),
                                 conditional_from_counts(train.up, train.marginal[0], strength))
        bits = sum(candidate.estimate_bits(p, 0) for p in stage0) / sum(p.size for p in stage0)
        report[f"stage0_bits_per_index_strength_{strength:g}"] = bits
        if best is None or bits < best[0]:
            best = (bits, strength, candidate)
    assert best is not None
    report["chosen_strength"] = best[1]
    if validation is not None:
        plain = EntropyModel(marginal)
        report["stage0_bits_per_index_marginal"] = sum(plain.estimate_bits(p, 0) for p in stage0) / validation.positions
    stages = build_stage_contexts(model, train, validation, report)
    chosen = best[2]
    return EntropyModel(chosen.marginal, chosen.left, chosen.up, stages), report


def finalize(checkpoint: Path, output: Path, data: Path, validation_fraction: float = 0.05,
             facts: dict[str, object] | None = None, limit: int | None = None,
             model_id: str | None = None) -> dict[str, float]:
    """Write ``output`` (safetensors) = checkpoint weights + entropy tables + metadata.

    ``model_id``: the id the weights ship under (default: the checkpoint's ``model_id``). A
    retrained model needs a new id when the weights it replaces stay installed: the registry
    finds a model by id, and files name the id and weights hash of the model that wrote them.
    """
    model, metadata = load_checkpoint_model(checkpoint)
    paths = list_images(data)
    train_paths = [p for p in paths if not is_validation(p.name, validation_fraction)][:limit]
    validation_paths = [p for p in paths if is_validation(p.name, validation_fraction)]
    train = collect(model, train_paths)
    validation = collect(model, validation_paths) if validation_paths else None
    entropy, report = build_entropy_model(model, train, validation)
    facts = {"checkpoint_step": int(metadata.get("step", 0)), "table_images": len(train_paths), **(facts or {})}
    extra = {"training": json.dumps(facts, sort_keys=True), "entropy_report": json.dumps(report, sort_keys=True)}
    save_weights(output, model, model_id or metadata["model_id"], entropy, extra)
    return report
