"""Saving and loading model weights as safetensors (never pickle).

A weights file holds the network's tensors, the frozen entropy tables
(``entropy.marginal``, ``entropy.left``, ``entropy.up``: see entropy_model.py; the stage
context tables ``entropy.context_codebooks``, ``entropy.activity_edges``,
``entropy.previous_bins``, ``entropy.stage_tables``: see stage_context.py), and metadata: the model id, the
architecture (JSON) and free-form training facts. A model's *identity* in a
``.vqz`` file is its id plus the first 8 bytes of the SHA-256 of the weights file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vqz.codec.config import ModelConfig
from vqz.codec.entropy_model import EntropyModel
from vqz.codec.model import VQCodecModel
from vqz.codec.stage_context import StageContexts
from vqz.errors import ModelError

ENTROPY_KEYS = ("marginal", "left", "up")  # stored as "entropy.<name>"
#: StageContexts field -> stored name ("entropy.<name>"); all four or none
STAGE_CONTEXT_KEYS = {"context_codebooks": "context_codebooks", "activity_edges": "activity_edges",
                      "previous_bins": "previous_bins", "tables": "stage_tables"}
MAX_WEIGHTS_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class LoadedWeights:
    model: VQCodecModel
    model_id: str
    weights_hash: bytes  # 8 bytes
    entropy: EntropyModel | None  # None before the tables are built (``vqz export-model``)
    metadata: dict[str, str]
    size_bytes: int


def save_weights(
    path: Path,
    model: VQCodecModel,
    model_id: str,
    entropy: EntropyModel | None = None,
    extra_metadata: dict[str, str] | None = None,
) -> None:
    """Write ``model`` (and optional entropy tables) to ``path`` atomically."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if entropy is not None:
        for name in ENTROPY_KEYS:
            table = getattr(entropy, name)
            if table is not None:
                tensors[f"entropy.{name}"] = torch.from_numpy(np.ascontiguousarray(table))
        if entropy.stages is not None:
            for field, stored in STAGE_CONTEXT_KEYS.items():
                tensors[f"entropy.{stored}"] = torch.from_numpy(np.ascontiguousarray(getattr(entropy.stages, field)))
    metadata = dict(extra_metadata or {})
    metadata.update({"model_id": model_id, "config": model.config.to_json(), "format": "vqz-weights-1"})
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)


def read_metadata(path: Path) -> dict[str, str]:
    """The metadata of a safetensors file, without loading its tensors."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


def weights_hash(path: Path) -> bytes:
    """First 8 bytes of the SHA-256 of the file: the weights' identity."""
    return hashlib.sha256(Path(path).read_bytes()).digest()[:8]


def load_weights(path: Path) -> LoadedWeights:
    """Build a model in eval mode from a safetensors file; raises ModelError if invalid."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ModelError(f"cannot read weights {path}: {exc.strerror}") from None
    if size > MAX_WEIGHTS_BYTES:
        raise ModelError(f"weights file {path} is larger than {MAX_WEIGHTS_BYTES} bytes")
    try:
        metadata = read_metadata(path)
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"invalid weights file {path}: {exc}") from None
    if "config" not in metadata or "model_id" not in metadata:
        raise ModelError(f"weights file {path} lacks the model id or configuration")
    config = ModelConfig.from_json(metadata["config"])
    model = VQCodecModel(config)
    tables = {name: tensors.pop(f"entropy.{name}", None) for name in ENTROPY_KEYS}
    stage_tables = {field: tensors.pop(f"entropy.{stored}", None) for field, stored in STAGE_CONTEXT_KEYS.items()}
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"weights file {path} does not match its configuration: {exc}") from None
    model.eval()
    entropy = None
    if tables["marginal"] is not None:
        if tuple(tables["marginal"].shape) != (config.num_stages, config.codebook_size):
            raise ModelError(f"entropy tables in {path} do not match the model's stages and codebook size")
        present = [v is not None for v in stage_tables.values()]
        if any(present) and not all(present):
            raise ModelError(f"weights file {path} has only some of the stage context tables")
        try:
            stages = StageContexts(**{k: v.numpy() for k, v in stage_tables.items()}) if all(present) else None
            if stages is not None and stages.context_codebooks.shape != (config.num_stages, config.codebook_size, config.latent_dim):
                raise ValueError("stage context codebooks do not match the model")
            entropy = EntropyModel(**{k: None if v is None else v.numpy() for k, v in tables.items()}, stages=stages)
        except ValueError as exc:
            raise ModelError(f"invalid entropy tables in {path}: {exc}") from None
    return LoadedWeights(
        model=model,
        model_id=metadata["model_id"],
        weights_hash=weights_hash(path),
        entropy=entropy,
        metadata=metadata,
        size_bytes=size,
    )
