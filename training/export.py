"""Export the transforms of a weights file to ONNX graphs for the coding runtime (training world).

``export_graphs(weights)`` writes ``<stem>.analysis.onnx`` (g_a) and ``<stem>.synthesis.onnx``
(g_s) beside ``<stem>.safetensors``. The graphs are traced from whatever ``nn.Sequential`` the
model's configuration builds (any number of layers, GDN, residual blocks), with dynamic height
and width. Each graph holds the structure only: every initializer that is a tensor of the
weights file keeps its safetensors name and, unless it is a scalar of at most
``MAX_EMBEDDED_BYTES`` (GDN's bounds and pedestals), becomes an ONNX *external* initializer
pointing at the tensor's bytes inside the safetensors file (location, offset, length); the
runtime supplies the data from the loaded weights (:mod:`vqz.codec.engine`). The export
checks that each initializer named after a weight equals it byte for byte, that the graph
takes only weights of its transform, and that no other large constant (a copy of a
weight) is left in the graph. Graph metadata: ``vqz.weights_sha256``
(SHA-256 of the weights file, checked by the runtime), ``vqz.external`` (JSON list of the
external initializers, which the runtime supplies), ``vqz.model_id``, ``vqz.role``,
``vqz.config``, ``vqz.exporter``.

GDN: CompressAI reparametrises beta and gamma through ``LowerBound``, an autograd function
the exporter cannot trace. For the export each GDN computes the same thing from its raw
parameters with plain operators: ``max(p, bound) * max(p, bound) - pedestal``, then
``conv1x1(x * x, gamma, beta)``, ``sqrt`` (inverse GDN) or ``1 / sqrt``, and ``x * norm``.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import struct
import types
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from vqz.codec.engine import (EXTERNAL_KEY, MAX_EMBEDDED_BYTES, MODEL_ROLES, ROLES, SHA_KEY, SPLIT_ROLES, external_tensors,
                              graph_path)
from vqz.errors import ModelError

OPSET = 17


def _gdn_forward(self: nn.Module, x: Tensor) -> Tensor:
    """CompressAI's GDN forward without its LowerBound autograd function (same values)."""
    channels = self.gamma.shape[0]
    beta = torch.max(self.beta, self.beta_reparam.lower_bound.bound)
    beta = beta * beta - self.beta_reparam.pedestal
    gamma = torch.max(self.gamma, self.gamma_reparam.lower_bound.bound)
    gamma = (gamma * gamma - self.gamma_reparam.pedestal).reshape(channels, channels, 1, 1)
    norm = nn.functional.conv2d(x * x, gamma, beta)
    norm = torch.sqrt(norm) if self.inverse else 1.0 / torch.sqrt(norm)
    return x * norm


class _Named(nn.Module):
    """Holds one transform under its attribute name, so parameter names match the state dict."""

    def __init__(self, name: str, module: nn.Module) -> None:
        super().__init__()
        self.name = name
        setattr(self, name, module)

    def forward(self, x: Tensor) -> Tensor:
        return getattr(self, self.name)(x)


def exportable(transform: nn.Sequential, name: str) -> nn.Module:
    """A copy of ``transform`` (contiguous layout, eval mode) whose GDNs trace to plain ops."""
    from vqz.training.compressai_layers import GDN

    module = copy.deepcopy(transform).to(memory_format=torch.contiguous_format).eval()
    for layer in module.modules():
        if isinstance(layer, GDN):
            layer.forward = types.MethodType(_gdn_forward, layer)
    return _Named(name, module)


def _safetensors_offsets(path: Path) -> dict[str, tuple[int, int]]:
    """Tensor name -> (absolute byte offset, length) inside a safetensors file."""
    with open(path, "rb") as handle:
        (header_len,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(header_len))
    base = 8 + header_len
    return {name: (base + info["data_offsets"][0], info["data_offsets"][1] - info["data_offsets"][0])
            for name, info in header.items() if name != "__metadata__"}


def _trace(module: nn.Module, channels: int) -> bytes:
    """ONNX bytes of a transform traced on a small (1, channels, h, w) input, dynamic height and width."""
    sample = torch.rand(1, channels, 64, 64) if channels == 3 else torch.rand(1, channels, 8, 8)
    return _export_onnx(module, (sample,), ["x"], {2: "height", 3: "width"})


def _export_onnx(module: nn.Module, inputs: tuple[Tensor, ...], names: list[str], spatial: dict[int, str]) -> bytes:
    """ONNX bytes of ``module`` traced on ``inputs`` (named ``names``; output ``y``), the axes ``spatial``
    of the first input and of the output dynamic."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, inputs, buffer, input_names=names, output_names=["y"],
                          dynamic_axes={names[0]: spatial, "y": spatial},
                          opset_version=OPSET, do_constant_folding=False, dynamo=False)
    return buffer.getvalue()


def export_graph(model: nn.Module, role: str, weights_path: Path, tensors: dict[str, np.ndarray],
                 metadata: dict[str, str], embed_max_bytes: int = MAX_EMBEDDED_BYTES) -> Path:
    """Write the graph of ``role`` ("analysis" or "synthesis", or a part of one: :data:`SPLIT_ROLES`) beside
    ``weights_path``; returns its path. Weights of at most ``embed_max_bytes`` stay in the graph (-1: none,
    for a graph whose weights the runtime replaces, as a realistic synthesis' interpolated ones). A head holds the transform's first layers (its split:
    :func:`vqz.codec.tiling.analysis_split` / :func:`vqz.codec.tiling.synthesis_split`), a tail the rest,
    with the layers' own names, so both take their weights from the same file."""
    import onnx

    from vqz.codec.tiling import analysis_split, synthesis_split

    name = ROLES[role].rstrip(".")
    transform = getattr(model, name)
    config = model.config
    in_channels = 3 if role.startswith("analysis") else config.latent_dim
    if role.endswith(("-head", "-tail")):
        split = analysis_split(config) if role.startswith("analysis") else synthesis_split(config)
        if role.endswith("-head"):
            transform = transform[:split]
        else:
            transform, in_channels = transform[split:], config.channels
    graph = onnx.load_from_string(_trace(exportable(transform, name), in_channels))
    return write_graph(graph, role, weights_path, tensors, metadata, embed_max_bytes)


def export_split_graphs(model: nn.Module, weights_path: Path, tensors: dict[str, np.ndarray],
                        metadata: dict[str, str], roles: tuple[str, ...] = MODEL_ROLES,
                        embed_max_bytes: int = MAX_EMBEDDED_BYTES) -> list[Path]:
    """The head and tail graphs of each transform of ``roles`` (:data:`SPLIT_ROLES`) beside ``weights_path``."""
    return [export_graph(model, part, weights_path, tensors, metadata, embed_max_bytes)
            for role in roles for part in SPLIT_ROLES[role]]


def write_graph(graph, role: str, weights_path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str],
                embed_max_bytes: int = MAX_EMBEDDED_BYTES) -> Path:
    """Make every weight initializer of a traced ``graph`` external (checked equal to the weights
    file's tensor), stamp the metadata (``sha256``, ``model_id``, ``config``) and write the graph of
    ``role`` beside ``weights_path``; returns its path."""
    import onnx
    from onnx import numpy_helper

    offsets = _safetensors_offsets(weights_path)
    used: set[str] = set()
    for init in graph.graph.initializer:
        if init.name in tensors:
            value = numpy_helper.to_array(init)
            expected = tensors[init.name]
            if value.dtype != expected.dtype or value.shape != expected.shape or value.tobytes() != expected.tobytes():
                raise ModelError(f"exported initializer {init.name} differs from the weights file")
            if expected.nbytes <= embed_max_bytes:
                continue  # a scalar: stays in the graph (checked equal above)
            offset, length = offsets[init.name]
            init.ClearField("raw_data")
            init.ClearField("float_data")
            init.data_location = onnx.TensorProto.EXTERNAL
            del init.external_data[:]
            for key, value_text in (("location", weights_path.name), ("offset", str(offset)), ("length", str(length))):
                entry = init.external_data.add()
                entry.key, entry.value = key, value_text
            used.add(init.name)
        elif len(init.raw_data) > MAX_EMBEDDED_BYTES or len(init.float_data) * 4 > MAX_EMBEDDED_BYTES:
            raise ModelError(f"the {role} graph embeds a constant {init.name} that is not a weight")
    # the exporter merges initializers of equal value (e.g. two GDNs fresh from initialisation),
    # so a graph may use a subset of its transform's weights; the runtime supplies those it names
    extra = used - set(external_tensors(tensors, role))
    if extra or not used:
        raise ModelError(f"the {role} graph uses {sorted(extra)} unlike the weights file")
    del graph.metadata_props[:]
    props = {SHA_KEY: metadata["sha256"], "vqz.model_id": metadata["model_id"], "vqz.role": role,
             "vqz.config": metadata["config"], EXTERNAL_KEY: json.dumps(sorted(used)),
             "vqz.exporter": f"torch {torch.__version__} torch.onnx.export(dynamo=False), opset {OPSET}"}
    for key, value_text in props.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value_text
    graph.producer_name = "vqz export-model"
    out = graph_path(weights_path, role)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(graph.SerializeToString())
    tmp.replace(out)
    return out


def export_graphs(weights_path: Path, whole: bool = True) -> list[Path]:
    """Export g_a and g_s of a weights file to ONNX graphs beside it (see the module docstring): the
    whole transforms (unless ``whole`` is False) and their head and tail graphs for large images."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    from vqz.codec.config import ModelConfig
    from vqz.training.model import model_from_tensors

    weights_path = Path(weights_path)
    data = weights_path.read_bytes()
    with safe_open(str(weights_path), framework="numpy") as handle:
        file_metadata = dict(handle.metadata() or {})
    tensors = load_file(str(weights_path))
    config = ModelConfig.from_json(file_metadata["config"])
    network = {k: v for k, v in tensors.items() if not k.startswith("entropy.")}
    model = model_from_tensors(config, network)
    metadata = {"sha256": hashlib.sha256(data).hexdigest(), "model_id": file_metadata["model_id"],
                "config": file_metadata["config"]}
    return ([export_graph(model, role, weights_path, network, metadata) for role in MODEL_ROLES if whole]
            + export_split_graphs(model, weights_path, network, metadata))


class _PostFilterGraph(nn.Module):
    """The post-filter under the attribute ``pf`` (so its parameter names match the weights file), on
    (H, W, 3) uint8 images: the conversions to and from [0, 1] floats run inside the graph."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.pf = net

    def forward(self, x: Tensor, strength: Tensor) -> Tensor:
        y = self.pf(x.permute(2, 0, 1).unsqueeze(0).float() * (1.0 / 255.0), strength)
        return (y.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)[0].permute(1, 2, 0)


def export_postfilter(checkpoint: Path, weights_path: Path, filter_id: str) -> list[Path]:
    """Ship a post-filter training checkpoint (:mod:`vqz.training.train_postfilter`): its network as
    ``weights_path`` (safetensors, tensors ``pf.*``, metadata ``postfilter_id`` and ``config``) and the
    graph beside it (:func:`export_postfilter_graph`)."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    from vqz.training.postfilter_net import BLOCK, STRENGTH_SCALE, PostFilterNet

    with safe_open(str(checkpoint), framework="pt") as handle:
        train_config = json.loads((handle.metadata() or {})["config"])
        state = {k[4:]: handle.get_tensor(k) for k in handle.keys() if k.startswith("net.")}
    net = PostFilterNet(train_config["channels"], train_config["layers"], train_config.get("quarter_channels", 0))
    net.load_state_dict(state)
    shape = {"channels": net.channels, "layers": net.layers}
    if net.quarter_channels:  # absent for the first filters' architecture (their files stay byte for byte)
        shape["quarter_channels"] = net.quarter_channels
    config = json.dumps({**shape, "block": BLOCK, "strength_scale": STRENGTH_SCALE,
                         "stage_levels": bool(train_config.get("stage_pairs_per_image", 0))})
    tensors = {f"pf.{k}": v.detach().numpy().copy() for k, v in net.state_dict().items()}
    weights_path = Path(weights_path)
    tmp = weights_path.with_name(weights_path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"postfilter_id": filter_id, "config": config})
    tmp.chmod(0o644)
    tmp.replace(weights_path)
    return [weights_path, export_postfilter_graph(weights_path)]


def export_postfilter_graph(weights_path: Path) -> Path:
    """Write ``<stem>.postfilter.onnx`` beside a post-filter weights file (the file is left untouched):
    inputs ``x`` (H, W, 3) uint8 with H, W multiples of the network's ``multiple`` and ``strength`` (1,) float32, output ``y`` (H, W, 3)
    uint8 (clamped, rounded half to even)."""
    import onnx
    from safetensors import safe_open
    from safetensors.numpy import load_file

    from vqz.training.postfilter_net import load_shipped_filter

    weights_path = Path(weights_path)
    net = load_shipped_filter(weights_path)  # refuses a file that is not a post-filter's
    with safe_open(str(weights_path), framework="numpy") as handle:
        metadata = dict(handle.metadata() or {})
    tensors = load_file(str(weights_path))
    sample = (torch.randint(0, 256, (32, 32, 3), dtype=torch.uint8), torch.tensor([30.0]))
    graph = onnx.load_from_string(_export_onnx(_PostFilterGraph(net), sample, ["x", "strength"], {0: "height", 1: "width"}))
    sha = hashlib.sha256(weights_path.read_bytes()).hexdigest()
    info = {"sha256": sha, "model_id": metadata["postfilter_id"], "config": metadata["config"]}
    return write_graph(graph, "postfilter", weights_path, tensors, info)


def export_realism(checkpoint: Path, weights_path: Path, realism_id: str, model: str | None = None,
                   strength: list[float] | None = None) -> list[Path]:
    """Ship a realistic synthesis training checkpoint (:mod:`vqz.training.realism`): its ``g_s`` as
    ``weights_path`` (safetensors, tensors ``g_s.*`` in float32; metadata ``realism_id``, ``base_model_id``,
    ``base_model_hash`` and ``config``) and the synthesis graph beside it (``<stem>.synthesis.onnx``).
    A stage-conditioned run's scales and shifts (``film.*``) are folded into per-level factors
    (``level<k>.mul.*`` / ``level<k>.add.*``, :func:`vqz.training.stage_film.folded_tensors`);
    ``strength`` (per level) goes into the metadata as ``level_strength`` (:mod:`vqz.codec.realism`)."""
    from safetensors.numpy import save_file

    from vqz.training.loop import read_checkpoint
    from vqz.training.model import model_from_tensors
    from vqz.training.stage_film import StageFilm, folded_tensors
    from vqz.codec.registry import load_model

    saved, checkpoint_metadata = read_checkpoint(Path(checkpoint))
    train_config = json.loads(checkpoint_metadata.get("config", "{}"))
    state = {k[4:]: v for k, v in saved.items() if k.startswith("g_s.") and ".opt." not in k}
    film_state = {k[5:]: v for k, v in saved.items() if k.startswith("film.") and ".opt." not in k}
    if not state:
        raise ModelError(f"{checkpoint} is not a realistic synthesis training checkpoint")
    base = load_model(model if model is not None else train_config.get("model"))
    tensors = {f"g_s.{k}": v.detach().float().numpy().copy() for k, v in state.items()}
    missing = {k for k in base.tensors if k.startswith("g_s.")} ^ set(tensors)
    if missing:
        raise ModelError(f"{checkpoint} does not match model {base.model_id}'s synthesis ({sorted(missing)[:3]})")
    network = {k: v for k, v in base.tensors.items() if not k.startswith("entropy.")} | tensors
    net = model_from_tensors(base.config, network)
    factors: dict[str, np.ndarray] = {}
    if film_state:
        levels = next(v for k, v in film_state.items() if k.startswith("scale.")).shape[0]
        film = StageFilm(net.g_s, levels)
        film.load_state_dict(film_state)
        factors = {k: v.numpy().copy() for k, v in folded_tensors(film, net.g_s, prefix="g_s.").items()}
    metadata = {"realism_id": realism_id, "base_model_id": base.model_id,
                "base_model_hash": base.weights_hash.hex(), "config": base.config.to_json()}
    if strength:
        if any(not (0.0 < v <= 4.0) for v in strength):
            raise ModelError(f"level strengths must be in (0, 4], got {strength}")
        metadata["level_strength"] = json.dumps([round(float(v), 4) for v in strength])
    weights_path = Path(weights_path)
    tmp = weights_path.with_name(weights_path.name + ".tmp")
    save_file(tensors | factors, str(tmp), metadata=metadata)
    tmp.chmod(0o644)
    tmp.replace(weights_path)
    info = {"sha256": hashlib.sha256(weights_path.read_bytes()).hexdigest(), "model_id": realism_id,
            "config": metadata["config"]}
    # every weight external: the runtime interpolates all of them (w0 + R s_k (w1_k - w0))
    return [weights_path, export_graph(net, "synthesis", weights_path, tensors, info, embed_max_bytes=-1),
            *export_split_graphs(net, weights_path, tensors, info, roles=("synthesis",), embed_max_bytes=-1)]


def export_light(checkpoint: Path, weights_path: Path, light_id: str) -> list[Path]:
    """Ship a light transform's training checkpoint (:mod:`vqz.training.light`) as ``weights_path`` (safetensors,
    float32 tensors ``g_s.*`` or ``g_a.*``; metadata ``light_id``, ``light_role``, ``base_model_id``,
    ``base_model_hash`` and ``light_config``) and its graphs beside it: for a light synthesis
    ``<stem>.synthesis.onnx`` and, for large images, its head (the latent-resolution layers) and tail (the
    transposed convolutions); for a light analysis head ``<stem>.analysis-head.onnx`` (the model's own
    analysis tail runs after it)."""
    import onnx
    from safetensors.numpy import save_file

    from vqz.codec.registry import load_model
    from vqz.training.light import light_analysis_head, load_light
    from vqz.training.loop import read_checkpoint

    saved, checkpoint_metadata = read_checkpoint(Path(checkpoint))
    base = load_model(checkpoint_metadata.get("base_model_id", checkpoint_metadata.get("model_id")))
    if checkpoint_metadata.get("light_role") == "analysis":
        widths = tuple(json.loads(checkpoint_metadata["light_widths"]))
        network = light_analysis_head(widths)
        network.load_state_dict({k[4:]: v for k, v in saved.items() if k.startswith("g_a.") and ".opt." not in k})
        network.eval()
        prefix, config_json = "g_a", json.dumps({"widths": list(widths)})
        graphs = [("analysis-head", network, 3)]
    else:
        network, config, _ = load_light(Path(checkpoint))
        if base.config.latent_dim != config.latent_dim:
            raise ModelError(f"{checkpoint} does not match model {base.model_id}'s latent ({config.latent_dim} channels)")
        prefix, config_json = "g_s", config.to_json()
        graphs = [("synthesis", network, config.latent_dim),
                  ("synthesis-head", network[: config.head_layers], config.latent_dim),
                  ("synthesis-tail", network[config.head_layers :], config.channels)]
    tensors = {f"{prefix}.{k}": v.detach().float().contiguous().numpy().copy() for k, v in network.state_dict().items()}
    role = "analysis" if prefix == "g_a" else "synthesis"
    metadata = {"light_id": light_id, "light_role": role,
                "base_model_id": base.model_id, "base_model_hash": base.weights_hash.hex(), "light_config": config_json}
    weights_path = Path(weights_path)
    tmp = weights_path.with_name(weights_path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.chmod(0o644)
    tmp.replace(weights_path)
    info = {"sha256": hashlib.sha256(weights_path.read_bytes()).hexdigest(), "model_id": light_id,
            "config": config_json}
    paths = [weights_path]
    for role, part, channels in graphs:
        graph = onnx.load_from_string(_trace(exportable(part, prefix), channels))
        paths.append(write_graph(graph, role, weights_path, tensors, info))
    return paths
