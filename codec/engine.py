"""The transforms on ONNX Runtime: sessions over the exported graphs, weights from the safetensors file.

A model's graphs (``<stem>.analysis.onnx`` and ``<stem>.synthesis.onnx`` beside
``<stem>.safetensors``, written by ``vqz export-model``, :mod:`vqz.training.export`) hold the
structure only: every weight is an *external* initializer named after its safetensors
tensor, and its data is handed to ONNX Runtime from the loaded safetensors tensors when the
session is created. The weights therefore exist once, in the file whose SHA-256 is the
model's identity; each graph also records that SHA-256 (metadata ``vqz.weights_sha256``),
checked here, so a graph is never run with weights it was not exported from.

Sessions run a fixed number of intra-op threads (``CODING_THREADS``) whatever the caller's
setting: another thread count could round the convolutions differently and change a file.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np

from vqz.errors import ModelError

#: Threads of every transform run by the coding path, whatever the caller's setting: the
#: convolutions could round differently with another thread count, which moves a near-tie
#: between two codes (a different, still valid, file) and decoded samples by one level.
CODING_THREADS = 2
#: Graph roles and the prefix of the safetensors tensors each one uses.
#: graph role -> prefix of the weights-file tensors it uses (the post-filter has its own weights file)
ROLES = {"analysis": "g_a.", "synthesis": "g_s.", "postfilter": "pf.",
         "analysis-head": "g_a.", "analysis-tail": "g_a.", "synthesis-head": "g_s.", "synthesis-tail": "g_s."}
#: the roles of a model's weights file
MODEL_ROLES = ("analysis", "synthesis")
#: each transform of a model is also exported as two graphs (head, tail) for large images (:mod:`vqz.codec.tiling`)
SPLIT_ROLES = {"analysis": ("analysis-head", "analysis-tail"), "synthesis": ("synthesis-head", "synthesis-tail")}
#: Tiles of a large image coded at once, each on a one-thread session of the split graphs: the tiles of
#: an image are independent, so its result does not depend on this number (nor on the machine's cores).
TILE_THREADS = 2
SHA_KEY = "vqz.weights_sha256"
EXTERNAL_KEY = "vqz.external"
#: Weights larger than this are external initializers (their data comes from the safetensors
#: file); smaller ones (GDN's scalar bounds and pedestals) are embedded in the graph, where the
#: exporter may merge equal ones.
MAX_EMBEDDED_BYTES = 64


def external_tensors(tensors: dict[str, np.ndarray], role: str) -> dict[str, np.ndarray]:
    """The tensors a graph of ``role`` may take from the weights file (those of its transform; the graph
    names the ones it takes: every weight but the scalars of at most ``MAX_EMBEDDED_BYTES``, or, in a graph
    whose weights are interpolated at run time (a realistic synthesis), every weight)."""
    return {k: v for k, v in tensors.items() if k.startswith(ROLES[role])}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _fields(data: bytes) -> list[tuple[int, int, bytes | int]]:
    """Top-level (field number, wire type, value) of a protobuf message (wire types 0, 1, 2, 5)."""
    out, pos = [], 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated field")
            value, pos = data[pos : pos + length], pos + length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = data[pos : pos + size], pos + size
        else:
            raise ValueError(f"unsupported wire type {wire}")
        out.append((number, wire, value))
    return out


def graph_metadata(model_bytes: bytes) -> dict[str, str]:
    """``metadata_props`` of an ONNX model (ModelProto field 14), read without onnx or a session."""
    props = {}
    for number, wire, value in _fields(model_bytes):
        if number == 14 and wire == 2:
            entry = {n: v for n, w, v in _fields(value) if w == 2}
            props[entry.get(1, b"").decode()] = entry.get(2, b"").decode()
    return props


def graph_path(weights_path: Path, role: str) -> Path:
    """``<dir>/<stem>.<role>.onnx`` for ``<dir>/<stem>.safetensors``."""
    return weights_path.with_name(f"{weights_path.stem}.{role}.onnx")


class Transform:
    """One exported transform: (1, C, H, W) float32 -> (1, C', H', W') float32 (dynamic H, W).

    The session is created on the first call (so decoding never builds the analysis graph).
    """

    def __init__(self, path: Path, tensors: dict[str, np.ndarray], role: str, weights_sha256: str,
                 memory_arena: bool = True, input_dtype: type = np.float32, threads: int | None = None) -> None:
        """``memory_arena``: ONNX Runtime's CPU arena (faster; it keeps its peak allocation for the
        session's lifetime, so a graph that runs after another one adds its peak to theirs);
        ``input_dtype``: what ``x`` is converted to (the graph's input type); ``threads``: intra-op
        threads (default ``CODING_THREADS``; 1 for the tiles of a split graph, run ``TILE_THREADS`` at once)."""
        self.path = path
        self.threads = threads
        #: the same transform as two graphs for tiled coding of large images, or None (:func:`split_graphs`)
        self.split: SplitGraphs | None = None
        #: (latent, pixel) context margins in cells of a transform whose layers differ from its model's (a light
        #: synthesis, :mod:`vqz.codec.light`), or None: the model's (:func:`vqz.codec.tiling.split_margins`)
        self.margins: tuple[int, int] | None = None
        self.role = role
        self._arena = memory_arena
        self._dtype = input_dtype
        self._tensors = external_tensors(tensors, role)
        #: SHA-256 (hex) of the weights file whose tensors the graph takes
        self.sha256 = weights_sha256
        self._session = None
        self._lock = threading.Lock()

    def _create(self):
        import onnxruntime as ort

        try:
            model_bytes = self.path.read_bytes()
        except OSError:
            raise ModelError(f"model graph {self.path} is missing (write it with `vqz export-model`)") from None
        try:
            props = graph_metadata(model_bytes)
            recorded = props.get(SHA_KEY)
            names = json.loads(props.get(EXTERNAL_KEY, "null"))
        except (ValueError, UnicodeDecodeError):
            raise ModelError(f"model graph {self.path} is not a valid ONNX file") from None
        if recorded != self.sha256:
            # checked before the session exists: the graph's external weights are supplied below
            # only for the file it was exported from, so ONNX Runtime never reads them elsewhere
            raise ModelError(f"graph {self.path.name} was not exported from these weights "
                             f"(it names sha256 {str(recorded)[:16]}, the weights file is {self.sha256[:16]})")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads or CODING_THREADS
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # idle worker threads sleep instead of spinning: the machine is shared with the caller
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.enable_cpu_mem_arena = self._arena
        if not isinstance(names, list) or not set(names) <= set(self._tensors):
            raise ModelError(f"model graph {self.path} names weights that the weights file lacks")
        values = [ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(self._tensors[n])) for n in names]
        options.add_external_initializers(names, values)
        try:
            session = ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"cannot load graph {self.path}: {str(exc).splitlines()[0]}") from None
        self._values = values  # ORT may keep pointers to the supplied initializers: keep them alive
        return session

    def release(self) -> None:
        """Drop the session and its memory arena (the next call creates it again, a few tens of ms): a
        large image's tiles leave the arena at their peak, which would add to the next transform's."""
        with self._lock:
            self._session = None
            self._values = None

    def __call__(self, x: np.ndarray, **inputs: np.ndarray) -> np.ndarray:
        """Run the graph on ``x`` (and any further named float32 ``inputs`` it declares)."""
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = self._create()
        feeds = {"x": np.ascontiguousarray(x, dtype=self._dtype)}
        feeds.update({name: np.ascontiguousarray(value, dtype=np.float32) for name, value in inputs.items()})
        return self._session.run(None, feeds)[0]


class SplitGraphs:
    """A transform as two graphs, ``head`` then ``tail``, split where its resolution reaches the latent grid
    (analysis: after the strided convolutions; synthesis: before the transposed ones), each on one-thread
    sessions. Large images are coded tile by tile with each part's own context margin
    (:func:`vqz.codec.tiling.split_margins`): the costly full-resolution part needs only a few cells."""

    def __init__(self, head: Transform, tail: Transform) -> None:
        self.head, self.tail = head, tail


def split_graphs(weights_path: Path, tensors: dict[str, np.ndarray], role: str, weights_sha256: str,
                 graph_stem: Path | None = None) -> SplitGraphs | None:
    """The split graphs of ``role`` ("analysis" or "synthesis") beside ``graph_stem`` (default ``weights_path``),
    or None when they were not exported (the transform then tiles with its whole graph)."""
    stem = graph_stem or weights_path
    head_role, tail_role = SPLIT_ROLES[role]
    head, tail = graph_path(stem, head_role), graph_path(stem, tail_role)
    if not (head.is_file() and tail.is_file()):
        return None
    return SplitGraphs(Transform(head, tensors, head_role, weights_sha256, threads=1),
                       Transform(tail, tensors, tail_role, weights_sha256, threads=1))
