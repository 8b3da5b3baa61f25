"""Saving and loading model weights as safetensors (never pickle).

A weights file holds the network's tensors, the frozen entropy tables
(``entropy.frequencies``: (S, K) int64 counts), and metadata: the model id, the
architecture (JSON) and free-form training facts. A model's *identity* in a
``.vqz`` file is its id plus the first 8 bytes of the SHA-256 of the weights file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vqz.codec.config import ModelConfig
from vqz.codec.model import VQCodecModel
from vqz.errors import ModelError

FREQUENCIES_KEY = "entropy.frequencies"
MAX_WEIGHTS_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class LoadedWeights:
    model: VQCodecModel
    model_id: str
    weights_hash: bytes  # 8 bytes
    frequencies: torch.Tensor | None  # (S, K) int64, None before tables are built
    metadata: dict[str, str]
    size_bytes: int


def save_weights(
    path: Path,
    model: VQCodecModel,
    model_id: str,
    frequencies: torch.Tensor | None = None,
    extra_metadata: dict[str, str] | None = None,
) -> None:
    """Write ``model`` (and optional entropy tables) to ``path`` atomically."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if frequencies is not None:
        tensors[FREQUENCIES_KEY] = frequencies.to(torch.int64).cpu().contiguous()
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
    frequencies = tensors.pop(FREQUENCIES_KEY, None)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"weights file {path} does not match its configuration: {exc}") from None
    model.eval()
    if frequencies is not None:
        expected = (config.num_stages, config.codebook_size)
        if tuple(frequencies.shape) != expected or bool((frequencies <= 0).any()):
            raise ModelError(f"entropy tables in {path} must be positive with shape {expected}")
    return LoadedWeights(
        model=model,
        model_id=metadata["model_id"],
        weights_hash=weights_hash(path),
        frequencies=frequencies,
        metadata=metadata,
        size_bytes=size,
    )


def parse_json_metadata(metadata: dict[str, str], key: str) -> object:
    try:
        return json.loads(metadata.get(key, "null"))
    except ValueError:
        return None
