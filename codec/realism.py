"""The realistic synthesis at run time: installed files, and the synthesis a decode at realism R runs.

A realistic synthesis is a second set of weights for a model's synthesis transform ``g_s``, trained
adversarially on that model's frozen codes (``vqz train-realism``, :mod:`vqz.training.realism`), so
it decodes the same files: the analysis transform, codebooks and entropy tables are the model's
own. It is its own weights file (``<id>.safetensors``: tensors ``g_s.*``; metadata ``realism_id``,
``base_model_id``, ``base_model_hash`` (the 8-byte weights hash a file's header names, hex) and the
model ``config``) with a graph beside it (``<id>.synthesis.onnx``, bound to the file by SHA-256).

Realism ``R`` in [0, 1] is a decoder choice, not part of a file:

* ``R = 0`` is the model's own synthesis: the decoder of every earlier vqz, byte for byte;
* ``0 < R <= 1`` runs the synthesis graph with every weight ``w0 + R * (w1 - w0)`` (float32), where
  ``w0`` is the model's weight and ``w1`` the realistic one: network interpolation between the two
  decoders, at the cost of one synthesis (the same graph, other weights);
* the post-filter a file asks for (trained on faithful decodings, it removes texture along with
  artifacts) is applied at weight ``1 - R`` (:func:`blend_postfilter`): in full at R = 0, not at R = 1;
* realism applies where the decoded image is the stages' synthesis alone: stage-only levels (1-4),
  part-way stage files of rate control, and ``--stages`` previews. A residual level's layer is coded
  against the faithful synthesis and already carries the fine detail, so such a file decodes at
  R = 0 whatever R is asked (:func:`applies`).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np

from vqz.codec.engine import Transform, graph_path, split_graphs
from vqz.codec.weights import LoadedWeights
from vqz.errors import ModelError

__all__ = ["RealisticSynthesis", "applies", "blend_postfilter", "check_realism", "installed_realistic",
           "realistic_for"]

#: What a realism value is rounded to before use (so equal requests share one set of weights).
REALISM_STEP = 1e-3


def check_realism(realism: object) -> float:
    """``realism`` as a float in [0, 1] rounded to :data:`REALISM_STEP`; ``ValueError`` / ``TypeError`` otherwise."""
    if isinstance(realism, bool) or not isinstance(realism, (int, float, np.floating, np.integer)):
        raise TypeError(f"realism must be a number in [0, 1], got {type(realism).__name__}")
    value = float(realism)
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise ValueError(f"realism must be in [0, 1], got {realism!r}")
    return round(round(value / REALISM_STEP) * REALISM_STEP, 6)


class RealisticSynthesis:
    """One installed realistic synthesis: ``realism_id``, ``base_model_hash`` (8 bytes) and :meth:`synthesis`."""

    def __init__(self, path: Path) -> None:
        from safetensors import safe_open
        from safetensors.numpy import load_file

        data = path.read_bytes()
        self.sha256 = hashlib.sha256(data).hexdigest()
        with safe_open(str(path), framework="numpy") as handle:
            metadata = dict(handle.metadata() or {})
        if "realism_id" not in metadata or "base_model_hash" not in metadata:
            raise ModelError(f"{path} is not a realistic synthesis weights file")
        self.path = path
        self.realism_id = metadata["realism_id"]
        self.base_model_id = metadata.get("base_model_id", "")
        self.base_model_hash = bytes.fromhex(metadata["base_model_hash"])
        self._tensors = load_file(str(path))
        self._cache: dict[float, Transform] = {}

    def synthesis(self, base: LoadedWeights, realism: float) -> Transform:
        """The synthesis :class:`Transform` of ``base`` at ``realism`` in (0, 1] (from :func:`check_realism`)."""
        if base.weights_hash != self.base_model_hash:
            raise ModelError(f"realistic synthesis {self.realism_id} belongs to another model than {base.model_id}")
        if realism not in self._cache:
            tensors = {}
            for name, w1 in self._tensors.items():
                w0 = base.tensors.get(name)
                if w0 is None or w0.shape != w1.shape:
                    raise ModelError(f"realistic synthesis {self.realism_id} does not match {base.model_id} ({name})")
                tensors[name] = w1 if realism == 1.0 else (w0 + np.float32(realism) * (w1 - w0)).astype(np.float32)
            transform = Transform(graph_path(self.path, "synthesis"), tensors, "synthesis", self.sha256)
            transform.split = split_graphs(self.path, tensors, "synthesis", self.sha256)
            self._cache = {realism: transform}
        return self._cache[realism]


@functools.lru_cache(maxsize=1)
def _installed() -> tuple[RealisticSynthesis, ...]:
    from vqz.codec.registry import weights_files

    return tuple(RealisticSynthesis(path) for _, path in weights_files("realism_id"))


def installed_realistic() -> list[RealisticSynthesis]:
    """Every installed realistic synthesis (``VQZ_MODEL_PATH`` folders before the bundled ones)."""
    return list(_installed())


def realistic_for(base: LoadedWeights) -> RealisticSynthesis | None:
    """The first installed realistic synthesis of ``base`` (by weights hash), or None."""
    for real in _installed():
        if real.base_model_hash == base.weights_hash:
            return real
    return None


def applies(has_residual: bool) -> bool:
    """Whether realism changes a decode: only where no residual layer is added to the stages' synthesis."""
    return not has_residual


def blend_postfilter(unfiltered: np.ndarray, filtered: np.ndarray, realism: float) -> np.ndarray:
    """The post-filter at weight ``1 - realism``: (H, W, 3) uint8 both -> uint8, rounded half to even."""
    if realism <= 0.0:
        return filtered
    if realism >= 1.0:
        return unfiltered
    a = unfiltered.astype(np.float32)
    return np.rint(a + np.float32(1.0 - realism) * (filtered.astype(np.float32) - a)).astype(np.uint8)
