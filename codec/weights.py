"""Loading model weights from safetensors (never pickle) with numpy only (saving them is the training
world's: :func:`vqz.training.model.save_weights`).

A weights file holds the network's tensors, the frozen entropy tables
(``entropy.marginal``, ``entropy.left``, ``entropy.up``: see entropy_model.py; the stage
context tables ``entropy.context_codebooks``, ``entropy.activity_edges``,
``entropy.previous_bins``, ``entropy.stage_tables``: see stage_context.py), and metadata: the model id, the
architecture (JSON) and free-form training facts. A model's *identity* in a
``.vqz`` file is its id plus the first 8 bytes of the SHA-256 of the weights file; the
exported graphs beside it (``<stem>.analysis.onnx``, ``<stem>.synthesis.onnx``) hold no
weights of their own and are bound to that file by its full SHA-256 (docs/RUNTIME.md).

The coding runtime uses :class:`LoadedWeights` (numpy, ONNX Runtime); the PyTorch network of the
same file is the training world's (:func:`vqz.training.model.torch_model`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vqz.codec.config import ModelConfig
from vqz.codec.engine import Transform, graph_path, split_graphs
from vqz.codec.entropy_model import EntropyModel
from vqz.codec.stage_context import StageContexts
from vqz.errors import ModelError

ENTROPY_KEYS = ("marginal", "left", "up")  # stored as "entropy.<name>"
#: StageContexts field -> stored name ("entropy.<name>"); all four or none
STAGE_CONTEXT_KEYS = {"context_codebooks": "context_codebooks", "activity_edges": "activity_edges",
                      "previous_bins": "previous_bins", "tables": "stage_tables"}
MAX_WEIGHTS_BYTES = 256 * 1024 * 1024
CODEBOOKS_KEY = "quantizer.codebooks"


@dataclass(frozen=True)
class LoadedWeights:
    """A model ready to code: configuration, codebooks, entropy tables and transforms.

    ``codebooks``: (S, K, M) float32; ``analysis`` / ``synthesis``: the exported graphs on ONNX
    Runtime, (1, 3, H, W) -> (1, M, H/d, W/d) and back; ``tensors``: every network tensor of
    the file (numpy), from which the training world builds the PyTorch network
    (:func:`vqz.training.model.torch_model`).
    """

    model_id: str
    weights_hash: bytes  # 8 bytes
    config: ModelConfig
    codebooks: np.ndarray
    entropy: EntropyModel | None  # None before the tables are built (``vqz export-model``)
    metadata: dict[str, str]
    size_bytes: int
    path: Path
    analysis: Transform = field(repr=False)
    synthesis: Transform = field(repr=False)
    tensors: dict[str, np.ndarray] = field(repr=False)



def read_metadata(path: Path) -> dict[str, str]:
    """The metadata of a safetensors file, without loading its tensors."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        return dict(handle.metadata() or {})


def weights_hash(path: Path) -> bytes:
    """First 8 bytes of the SHA-256 of the file: the weights' identity."""
    return hashlib.sha256(Path(path).read_bytes()).digest()[:8]


def _expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    return {CODEBOOKS_KEY: (config.num_stages, config.codebook_size, config.latent_dim)}


def load_weights(path: Path) -> LoadedWeights:
    """Load a model from a safetensors file (numpy only); raises ModelError if invalid.

    The transforms' graphs are opened on first use (a missing or mismatched graph raises
    ``ModelError`` then).
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ModelError(f"cannot read weights {path}: {exc.strerror}") from None
    if size > MAX_WEIGHTS_BYTES:
        raise ModelError(f"weights file {path} is larger than {MAX_WEIGHTS_BYTES} bytes")
    try:
        data = path.read_bytes()
        metadata = read_metadata(path)
        tensors = load(data)
    except (SafetensorError, OSError, ValueError, TypeError) as exc:
        raise ModelError(f"invalid weights file {path}: {exc}") from None
    if "config" not in metadata or "model_id" not in metadata:
        raise ModelError(f"weights file {path} lacks the model id or configuration")
    config = ModelConfig.from_json(metadata["config"])
    tables = {name: tensors.pop(f"entropy.{name}", None) for name in ENTROPY_KEYS}
    stage_tables = {f: tensors.pop(f"entropy.{stored}", None) for f, stored in STAGE_CONTEXT_KEYS.items()}
    for key, shape in _expected_shapes(config).items():
        if key not in tensors or tuple(tensors[key].shape) != shape or tensors[key].dtype != np.float32:
            raise ModelError(f"weights file {path} does not match its configuration: {key} must be float32 {shape}")
    entropy = None
    if tables["marginal"] is not None:
        if tuple(tables["marginal"].shape) != (config.num_stages, config.codebook_size):
            raise ModelError(f"entropy tables in {path} do not match the model's stages and codebook size")
        present = [v is not None for v in stage_tables.values()]
        if any(present) and not all(present):
            raise ModelError(f"weights file {path} has only some of the stage context tables")
        try:
            stages = StageContexts(**stage_tables) if all(present) else None
            if stages is not None and stages.context_codebooks.shape != (config.num_stages, config.codebook_size, config.latent_dim):
                raise ValueError("stage context codebooks do not match the model")
            entropy = EntropyModel(**tables, stages=stages)
        except ValueError as exc:
            raise ModelError(f"invalid entropy tables in {path}: {exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    analysis = Transform(graph_path(path, "analysis"), tensors, "analysis", digest)
    synthesis = Transform(graph_path(path, "synthesis"), tensors, "synthesis", digest)
    analysis.split = split_graphs(path, tensors, "analysis", digest)
    synthesis.split = split_graphs(path, tensors, "synthesis", digest)
    return LoadedWeights(
        model_id=metadata["model_id"],
        weights_hash=bytes.fromhex(digest)[:8],
        config=config,
        codebooks=np.ascontiguousarray(tensors[CODEBOOKS_KEY]),
        entropy=entropy,
        metadata=metadata,
        size_bytes=size,
        path=path,
        analysis=analysis,
        synthesis=synthesis,
        tensors=tensors,
    )
