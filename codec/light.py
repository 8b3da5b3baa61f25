"""The light transforms at run time: cheaper transforms of a model, ``vqz decode --fast`` and ``--effort 0``.

A light synthesis is a second, smaller synthesis transform for a model, trained on that model's frozen
codes (``vqz train-light``, :mod:`vqz.training.light`), so it decodes the same files: the analysis
transform, codebooks and entropy tables are the model's own. A light analysis is a smaller first half
of the model's analysis (its strided convolutions, ``vqz train-light-analysis``), distilled from the
model's so that the model's own latent-resolution layers after it give nearly the same latent: an encoder
choice (effort 0) that writes normal files of the model. Each is its own weights file (``<id>.safetensors``:
tensors ``g_s.*`` or ``g_a.*``; metadata ``light_id``, ``light_role`` ("synthesis" or "analysis"),
``base_model_id``, ``base_model_hash`` (the 8-byte weights hash a file's header names, hex) and
``light_config``) with its graphs beside it, bound to the file by SHA-256: ``<id>.synthesis.onnx`` and its
split ``-head`` / ``-tail`` graphs for large images, or ``<id>.analysis-head.onnx``.

``fast`` is a decoder choice, not part of a file, and it changes decoded pixels:

* it applies where the decoded image is the stages' synthesis alone (stage-only levels 1-4, part-way stage
  files of rate control, ``--stages`` previews): the light synthesis runs instead of the model's, and the
  file's post-filter is not applied (the light synthesis was trained against the original pixels, which
  is the filter's job too);
* a residual level's layer is coded against the model's own synthesis, so a light base would add its whole
  difference to the decoded image: such a file decodes with the model's synthesis whatever is asked
  (:func:`applies`), exactly as without ``fast``.

Effort 0 (:mod:`vqz.codec.search`) runs the light analysis head, then the model's analysis tail: other
(slightly worse) codes for the same decoder; a model without a light analysis encodes at effort 1.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vqz.codec.engine import SplitGraphs, Transform, graph_path, split_graphs
from vqz.codec.weights import LoadedWeights
from vqz.errors import ModelError

__all__ = ["LightAnalysis", "LightConfig", "LightSynthesis", "applies", "installed_light", "light_analysis_for",
           "light_for"]


@dataclass(frozen=True)
class LightConfig:
    """The shape of a light synthesis: a 3x3 convolution ``latent_dim -> channels`` and ``head_blocks``
    residual blocks at latent resolution (the head), then three stride-2 5x5 transposed convolutions
    ``channels -> tail_channels[0] -> tail_channels[1] -> 3`` with inverse GDNs between them (the tail)."""

    latent_dim: int
    channels: int
    head_blocks: int
    tail_channels: tuple[int, ...]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "LightConfig":
        try:
            values = json.loads(text)
            config = cls(latent_dim=int(values["latent_dim"]), channels=int(values["channels"]),
                         head_blocks=int(values["head_blocks"]),
                         tail_channels=tuple(int(v) for v in values["tail_channels"]))
        except (ValueError, TypeError, KeyError) as exc:
            raise ModelError(f"bad light synthesis configuration {text!r}") from exc
        if len(config.tail_channels) != 2 or config.head_blocks < 0:
            raise ModelError(f"bad light synthesis configuration {text!r}")
        return config

    @property
    def head_layers(self) -> int:
        """Layers of the head graph (the first convolution and the residual blocks)."""
        return 1 + self.head_blocks

    @property
    def margins(self) -> tuple[int, int]:
        """(latent-resolution margin, full-resolution margin) in latent cells for the split passes of
        :func:`vqz.codec.tiling.split_synthesis_uint8`: one cell per 3x3 convolution of the head plus one; the
        three 5x5 transposed convolutions reach 2 cells, as the model's own."""
        return 1 + 2 * self.head_blocks + 1, 2


class LightSynthesis:
    """One installed light synthesis: ``light_id``, ``base_model_hash`` (8 bytes), ``config`` and
    :meth:`synthesis`."""

    role = "synthesis"

    def __init__(self, path: Path, metadata: dict[str, str], tensors: dict[str, np.ndarray], sha256: str) -> None:
        self.path, self.sha256 = path, sha256
        self.light_id = metadata["light_id"]
        self.base_model_id = metadata.get("base_model_id", "")
        self.base_model_hash = bytes.fromhex(metadata["base_model_hash"])
        self.config = LightConfig.from_json(metadata["light_config"])
        self._tensors = tensors
        self._transform: Transform | None = None

    def synthesis(self, base: LoadedWeights) -> Transform:
        """The synthesis :class:`Transform` for files of ``base``: (1, latent_dim, h, w) -> (1, 3, 8h, 8w)."""
        if base.weights_hash != self.base_model_hash:
            raise ModelError(f"light synthesis {self.light_id} belongs to another model than {base.model_id}")
        if self._transform is None:
            transform = Transform(graph_path(self.path, "synthesis"), self._tensors, "synthesis", self.sha256)
            transform.split = split_graphs(self.path, self._tensors, "synthesis", self.sha256)
            transform.margins = self.config.margins
            self._transform = transform
        return self._transform


class _Composed:
    """A transform run as ``tail(head(x))`` (whole images), with split graphs for the tiles of large ones."""

    def __init__(self, head: Transform, tail: Transform, split: SplitGraphs) -> None:
        self.head, self.tail, self.split = head, tail, split
        self.margins: tuple[int, int] | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.tail(self.head(x))


class LightAnalysis:
    """One installed light analysis head: ``light_id``, ``base_model_hash`` (8 bytes) and :meth:`analysis`."""

    role = "analysis"

    def __init__(self, path: Path, metadata: dict[str, str], tensors: dict[str, np.ndarray], sha256: str) -> None:
        self.path, self.sha256 = path, sha256
        self.light_id = metadata["light_id"]
        self.base_model_id = metadata.get("base_model_id", "")
        self.base_model_hash = bytes.fromhex(metadata["base_model_hash"])
        self._tensors = tensors
        self._transform: _Composed | None = None

    def analysis(self, base: LoadedWeights) -> _Composed:
        """The analysis of ``base`` with this head: (1, 3, H, W) -> (1, latent_dim, H/8, W/8), tiled like the
        model's (the same strided-convolution layout, so the same margins)."""
        if base.weights_hash != self.base_model_hash:
            raise ModelError(f"light analysis {self.light_id} belongs to another model than {base.model_id}")
        model_split = base.analysis.split
        if model_split is None:
            raise ModelError(f"model {base.model_id} has no split analysis graphs (re-export it with `vqz export-model`)")
        if self._transform is None:
            head_graph = graph_path(self.path, "analysis-head")
            head = Transform(head_graph, self._tensors, "analysis-head", self.sha256)
            tail = Transform(model_split.tail.path, base.tensors, "analysis-tail", base.analysis.sha256)
            tile_head = Transform(head_graph, self._tensors, "analysis-head", self.sha256, threads=1)
            self._transform = _Composed(head, tail, SplitGraphs(tile_head, model_split.tail))
        return self._transform


def _load(path: Path) -> LightSynthesis | LightAnalysis:
    from safetensors import safe_open
    from safetensors.numpy import load

    data = path.read_bytes()
    with safe_open(str(path), framework="numpy") as handle:
        metadata = dict(handle.metadata() or {})
    if "light_id" not in metadata or "base_model_hash" not in metadata:
        raise ModelError(f"{path} is not a light transform weights file")
    role = metadata.get("light_role", "synthesis")
    if role == "synthesis" and "light_config" not in metadata:
        raise ModelError(f"{path} is not a light synthesis weights file")
    kind = {"synthesis": LightSynthesis, "analysis": LightAnalysis}.get(role)
    if kind is None:
        raise ModelError(f"{path}: unknown light transform role {role!r}")
    return kind(path, metadata, load(data), hashlib.sha256(data).hexdigest())  # the file is read once


@functools.lru_cache(maxsize=1)
def _installed() -> tuple[LightSynthesis | LightAnalysis, ...]:
    from vqz.codec.registry import weights_files

    return tuple(_load(path) for _, path in weights_files("light_id"))


def installed_light() -> list[LightSynthesis | LightAnalysis]:
    """Every installed light transform (``VQZ_MODEL_PATH`` folders before the bundled ones)."""
    return list(_installed())


def light_for(base: LoadedWeights) -> LightSynthesis | None:
    """The first installed light synthesis of ``base`` (by weights hash), or None."""
    for light in _installed():
        if light.role == "synthesis" and light.base_model_hash == base.weights_hash:
            return light
    return None


def light_analysis_for(base: LoadedWeights) -> LightAnalysis | None:
    """The first installed light analysis of ``base`` (by weights hash), or None."""
    for light in _installed():
        if light.role == "analysis" and light.base_model_hash == base.weights_hash:
            return light
    return None


def applies(has_residual: bool) -> bool:
    """Whether ``fast`` changes a decode: only where no residual layer is added to the stages' synthesis."""
    return not has_residual
