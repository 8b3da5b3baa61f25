"""The bundled models: found by id in the package's ``weights/`` folder, loaded once.

A model is named by its stable string id (the weights file's ``model_id`` metadata);
the file name is ``<model_id>.safetensors``. ``DEFAULT_MODEL_ID`` is used when no
name is given. Extra folders can be searched by listing them in the
``VQZ_MODEL_PATH`` environment variable (``os.pathsep``-separated).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vqz.codec.weights import LoadedWeights, load_weights, read_metadata
from vqz.errors import ModelError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_MODEL_ID = "vqz-rvq16b-f8"


@dataclass(frozen=True)
class ModelEntry:
    model_id: str
    path: Path


def _search_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("VQZ_MODEL_PATH", "").split(os.pathsep) if p]
    return extra + [WEIGHTS_DIR]


def weights_files(kind: str, where: Callable[[dict[str, str]], bool] | None = None) -> list[tuple[str, Path]]:
    """``(name, path)`` of every weights file in the search folders (VQZ_MODEL_PATH before bundled,
    each folder sorted) whose metadata names it under ``kind`` (``model_id``; ``postfilter_id`` for the
    post-filters) and, with ``where``, passes that test of its metadata; unreadable files are skipped."""
    found = []
    for folder in _search_dirs():
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.safetensors")):
            try:
                metadata = read_metadata(path)
            except Exception:
                continue
            name = metadata.get(kind)
            if name and (where is None or where(metadata)):
                found.append((name, path))
    return found


#: The ``format`` metadata of a model's weights file (``vqz export-model``); other safetensors files that name a
#: ``model_id`` (a training checkpoint, a light or realistic transform's run) are not models.
WEIGHTS_FORMAT = "vqz-weights-1"


def available_models() -> list[ModelEntry]:
    """Every model file found (``format`` :data:`WEIGHTS_FORMAT`), first occurrence of an id wins (VQZ_MODEL_PATH
    before bundled)."""
    seen: dict[str, ModelEntry] = {}
    for model_id, path in weights_files("model_id", where=lambda metadata: metadata.get("format") == WEIGHTS_FORMAT):
        seen.setdefault(model_id, ModelEntry(model_id, path))
    return list(seen.values())


@functools.lru_cache(maxsize=8)
def _load(path: str) -> LoadedWeights:
    weights = load_weights(Path(path))
    if weights.entropy is None:
        raise ModelError(f"model {weights.model_id} ({path}) has no entropy tables; finalize it after training")
    return weights


def load_model(name: str | os.PathLike | None = None) -> LoadedWeights:
    """Load a model by id (default: DEFAULT_MODEL_ID) or by the path of a weights file."""
    if name is not None and (str(name).endswith(".safetensors") or Path(name).is_file()):
        return _load(str(Path(name).resolve()))
    wanted = DEFAULT_MODEL_ID if name is None else str(name)
    entries = available_models()
    for entry in entries:
        if entry.model_id == wanted:
            return _load(str(entry.path))
    have = ", ".join(e.model_id for e in entries) or "none"
    raise ModelError(f"model '{wanted}' is not installed (available: {have})")


def model_for_file(model_id: str, model_hash: bytes) -> LoadedWeights:
    """The installed model that wrote a file, checked by id and weights hash."""
    entries = [e for e in available_models() if e.model_id == model_id]
    for entry in entries:
        weights = _load(str(entry.path))
        if weights.weights_hash == model_hash:
            return weights
    if entries:
        raise ModelError(
            f"file needs model {model_id} with weights hash {model_hash.hex()}, "
            f"but the installed {model_id} has a different hash (a different vqz version?)"
        )
    raise ModelError(f"file needs model {model_id} (weights hash {model_hash.hex()}), which is not installed")
