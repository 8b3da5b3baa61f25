"""The realistic synthesis at run time: installed files, and the synthesis a decode at realism R runs.

A realistic synthesis is a second set of weights for a model's synthesis transform ``g_s``, trained
adversarially on that model's frozen codes (``vqz train-realism``, :mod:`vqz.training.realism`), so
it decodes the same files: the analysis transform, codebooks and entropy tables are the model's
own. It is its own weights file (``<id>.safetensors``: tensors ``g_s.*``; metadata ``realism_id``,
``base_model_id``, ``base_model_hash`` (the 8-byte weights hash a file's header names, hex) and the
model ``config``) with a graph beside it (``<id>.synthesis.onnx``, bound to the file by SHA-256).

Realism ``R`` in [0, 1] is a decoder choice, not part of a file:

* ``R = 0`` is the model's own synthesis: the decoder of every earlier vqz, byte for byte;
* ``0 < R <= 1`` runs the synthesis graph with every weight ``w0 + R * s_k * (w1_k - w0)`` (float32),
  where ``w0`` is the model's weight and ``w1_k`` the realistic one for the ``k`` stages decoded:
  network interpolation between the two decoders, at the cost of one synthesis (the same graph,
  other weights). A file may condition its weights on the stage count (``level<k>.mul.<name>`` and
  ``level<k>.add.<name>``: ``w1_k = w1 * mul + add``, broadcast; a per-stage-count scale and shift of
  each convolution's output channels folded into its weights, :mod:`vqz.training.stage_film`) and
  scale the step per stage count (metadata ``level_strength``, a JSON list ``[s_1, s_2, ...]``,
  chosen on held-out photos so that R = 1 keeps the original's fine-detail energy at every level;
  values above 1 extrapolate). Stage counts past the last level use the last level's; a file without
  them has ``w1_k = w1`` and ``s_k = 1``;
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
import json
import re
from pathlib import Path

import numpy as np

from vqz.codec.engine import Transform, graph_path, split_graphs
from vqz.codec.weights import LoadedWeights
from vqz.errors import ModelError

__all__ = ["RealisticSynthesis", "applies", "blend_postfilter", "check_realism", "installed_realistic",
           "realistic_for"]

#: What a realism value is rounded to before use (so equal requests share one set of weights).
REALISM_STEP = 1e-3

_LEVEL_TENSOR = re.compile(r"level(\d+)\.(mul|add)\.(.+)")


def check_realism(realism: object) -> float:
    """``realism`` as a float in [0, 1] rounded to :data:`REALISM_STEP`; ``ValueError`` / ``TypeError`` otherwise."""
    if isinstance(realism, bool) or not isinstance(realism, (int, float, np.floating, np.integer)):
        raise TypeError(f"realism must be a number in [0, 1], got {type(realism).__name__}")
    value = float(realism)
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise ValueError(f"realism must be in [0, 1], got {realism!r}")
    return round(round(value / REALISM_STEP) * REALISM_STEP, 6)


class RealisticSynthesis:
    """One installed realistic synthesis: ``realism_id``, ``base_model_hash`` (8 bytes), ``levels`` (stage
    counts with weights of their own, 0 for none), ``strength`` (per level) and :meth:`synthesis`."""

    def __init__(self, path: Path) -> None:
        from safetensors import safe_open
        from safetensors.numpy import load

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
        tensors = load(data)  # the bytes hashed above: the file is read once
        self._factors: dict[int, dict[str, dict[str, np.ndarray]]] = {}
        self._tensors = {}
        for name, value in tensors.items():
            match = _LEVEL_TENSOR.fullmatch(name)
            if match:
                level, kind, target = int(match[1]), match[2], match[3]
                self._factors.setdefault(level, {}).setdefault(kind, {})[target] = value
            else:
                self._tensors[name] = value
        try:
            strength = [float(v) for v in json.loads(metadata.get("level_strength", "[]"))]
        except (ValueError, TypeError) as exc:
            raise ModelError(f"{path}: bad level_strength metadata") from exc
        self.levels = max([*self._factors, len(strength)], default=0)
        if sorted(self._factors) not in ([], list(range(1, self.levels + 1))) or \
                any(t not in self._tensors for f in self._factors.values() for d in f.values() for t in d):
            raise ModelError(f"{path}: per-level tensors do not cover levels 1..{self.levels} of its weights")
        self.strength = strength + [1.0] * (self.levels - len(strength))
        self._cache: dict[tuple[int, float], Transform] = {}

    def level_of(self, stages: int) -> int:
        """The level whose weights a decode from ``stages`` stages uses (0: the only ones)."""
        return min(max(stages, 1), self.levels) if self.levels else 0

    def synthesis(self, base: LoadedWeights, realism: float, stages: int = 1) -> Transform:
        """The synthesis :class:`Transform` of ``base`` at ``realism`` in (0, 1] (from :func:`check_realism`)
        for a decode from ``stages`` stages."""
        if base.weights_hash != self.base_model_hash:
            raise ModelError(f"realistic synthesis {self.realism_id} belongs to another model than {base.model_id}")
        level = self.level_of(stages)
        key = (level, realism)
        if key not in self._cache:
            step = np.float32(realism * (self.strength[level - 1] if level else 1.0))
            factors = self._factors.get(level, {})
            mul, add = factors.get("mul", {}), factors.get("add", {})
            tensors = {}
            for name, w1 in self._tensors.items():
                w0 = base.tensors.get(name)
                if w0 is None or w0.shape != w1.shape:
                    raise ModelError(f"realistic synthesis {self.realism_id} does not match {base.model_id} ({name})")
                if name in mul:
                    w1 = w1 * mul[name]
                if name in add:
                    w1 = w1 + add[name]
                tensors[name] = w1 if step == 1.0 else (w0 + step * (w1 - w0)).astype(np.float32)
            transform = Transform(graph_path(self.path, "synthesis"), tensors, "synthesis", self.sha256)
            transform.split = split_graphs(self.path, tensors, "synthesis", self.sha256)
            self._cache = {key: transform}
        return self._cache[key]


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
