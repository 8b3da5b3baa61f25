"""Turn a training checkpoint into shippable weights with frozen entropy tables.

The tables are index statistics over the *training* split (never Kodak); the one free
parameter, the back-off strength of the stage-0 neighbour tables, is chosen on the
held-out *validation* split of the training folder.
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
from vqz.codec.data import is_validation, list_images, load_rgb
from vqz.codec.entropy_model import EntropyModel, conditional_from_counts, marginal_from_counts, neighbour_pairs
from vqz.codec.model import VQCodecModel
from vqz.codec.pipeline import pad_image
from vqz.codec.weights import save_weights

BACKOFF_STRENGTHS = (2.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0)


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
    planes: list[np.ndarray]  # stage-0 planes, kept for held-out evaluation
    positions: int


@torch.no_grad()
def collect(model: VQCodecModel, paths: list[Path]) -> IndexStatistics:
    config = model.config
    k = config.codebook_size
    stats = IndexStatistics(np.zeros((config.num_stages, k), np.int64), np.zeros((k, k), np.int64),
                            np.zeros((k, k), np.int64), [], 0)
    for path in paths:
        x, _ = pad_image(load_rgb(path), config.downsampling)
        indices = model.encode_indices(x, config.num_stages)[:, 0].numpy()
        for stage in range(config.num_stages):
            stats.marginal[stage] += np.bincount(indices[stage].ravel(), minlength=k)
        left, up = neighbour_pairs(indices[0], k)
        stats.left += left
        stats.up += up
        stats.planes.append(indices[0])
        stats.positions += indices[0].size
    return stats


def build_entropy_model(train: IndexStatistics, validation: IndexStatistics | None) -> tuple[EntropyModel, dict[str, float]]:
    """Tables from training statistics; back-off strength picked on validation bits."""
    marginal = marginal_from_counts(train.marginal)
    best: tuple[float, float, EntropyModel] | None = None
    report: dict[str, float] = {}
    for strength in BACKOFF_STRENGTHS:
        candidate = EntropyModel(marginal, conditional_from_counts(train.left, train.marginal[0], strength),
                                 conditional_from_counts(train.up, train.marginal[0], strength))
        planes = (validation or train).planes
        bits = sum(candidate.estimate_bits(p, 0) for p in planes) / sum(p.size for p in planes)
        report[f"stage0_bits_per_index_strength_{strength:g}"] = bits
        if best is None or bits < best[0]:
            best = (bits, strength, candidate)
    assert best is not None
    report["chosen_strength"] = best[1]
    if validation is not None:
        plain = EntropyModel(marginal)
        report["stage0_bits_per_index_marginal"] = sum(plain.estimate_bits(p, 0) for p in validation.planes) / validation.positions
    return best[2], report


def finalize(checkpoint: Path, output: Path, data: Path, validation_fraction: float = 0.05,
             facts: dict[str, object] | None = None, limit: int | None = None) -> dict[str, float]:
    """Write ``output`` (safetensors) = checkpoint weights + entropy tables + metadata."""
    model, metadata = load_checkpoint_model(checkpoint)
    paths = list_images(data)
    train_paths = [p for p in paths if not is_validation(p.name, validation_fraction)][:limit]
    validation_paths = [p for p in paths if is_validation(p.name, validation_fraction)]
    train = collect(model, train_paths)
    validation = collect(model, validation_paths) if validation_paths else None
    entropy, report = build_entropy_model(train, validation)
    facts = {"checkpoint_step": int(metadata.get("step", 0)), "table_images": len(train_paths), **(facts or {})}
    extra = {"training": json.dumps(facts, sort_keys=True), "entropy_report": json.dumps(report, sort_keys=True)}
    save_weights(output, model, metadata["model_id"], entropy, extra)
    return report
