"""Turn a training checkpoint into shippable weights with frozen entropy tables.

The tables are symbol counts of every stage's indices over the *training* split
(never Kodak, never the validation split), smoothed and stored as integers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from vqz.codec.config import ModelConfig
from vqz.codec.data import is_validation, list_images, load_rgb
from vqz.codec.entropy import frequencies_from_counts
from vqz.codec.model import VQCodecModel
from vqz.codec.pipeline import _to_tensor
from vqz.codec.weights import LoadedWeights, save_weights


def load_checkpoint_model(checkpoint: Path) -> tuple[VQCodecModel, dict[str, str]]:
    with safe_open(str(checkpoint), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
    model = VQCodecModel(ModelConfig.from_json(metadata["config"]))
    tensors = load_file(str(checkpoint))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    return model.eval(), metadata


@torch.no_grad()
def count_indices(model: VQCodecModel, data: Path, validation_fraction: float, limit: int | None = None) -> np.ndarray:
    """(S, K) int64 counts of each stage's indices over the training split of ``data``."""
    config = model.config
    counts = np.zeros((config.num_stages, config.codebook_size), dtype=np.int64)
    paths = [p for p in list_images(data) if not is_validation(p.name, validation_fraction)]
    for path in paths[:limit]:
        fake = LoadedWeights(model, "", b"", None, {}, 0)
        x, _ = _to_tensor(load_rgb(path), fake)
        indices = model.encode_indices(x, config.num_stages)
        for stage in range(config.num_stages):
            counts[stage] += np.bincount(indices[stage].ravel().numpy(), minlength=config.codebook_size)
    return counts


def finalize(checkpoint: Path, output: Path, data: Path, validation_fraction: float = 0.05,
             facts: dict[str, object] | None = None, limit: int | None = None) -> Path:
    """Write ``output`` (safetensors) = checkpoint weights + entropy tables + metadata."""
    model, metadata = load_checkpoint_model(checkpoint)
    counts = count_indices(model, data, validation_fraction, limit)
    frequencies = np.stack([frequencies_from_counts(c) for c in counts])
    extra = {"training": json.dumps({"checkpoint_step": int(metadata.get("step", 0)), **(facts or {})}, sort_keys=True)}
    save_weights(output, model, metadata["model_id"], torch.from_numpy(frequencies), extra)
    return output
