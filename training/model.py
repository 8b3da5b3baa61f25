"""The vqz network: analysis transform -> residual VQ -> synthesis transform.

One model contract (as in CompressAI's ``models/google.py``):

* training: ``forward(x, stages_per_sample)`` returns ``{"x_hat", "commitment"}``;
* coding: ``encode_indices(x, num_stages)`` returns the index planes and
  ``decode_indices(indices)`` the image, clamped to [0, 1].

Images are ``(B, 3, H, W)`` float tensors in [0, 1] whose height and width are
multiples of ``config.downsampling``; padding and cropping are the caller's job
(see :mod:`vqz.codec.padding`).

This is the training world (PyTorch, CompressAI). The coding runtime does not import it: it
runs the exported graphs of ``g_a`` / ``g_s`` (:mod:`vqz.training.export`, :mod:`vqz.codec.engine`)
and the numpy quantizer (:mod:`vqz.codec.vq`). The coding methods here are the PyTorch
reference the runtime is compared with (``tests/runtime/test_runtime.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from vqz.training.compressai_layers import GDN, ResidualBlock, conv, deconv
from vqz.codec.config import ModelConfig
from vqz.codec.entropy_model import EntropyModel
from vqz.codec.weights import ENTROPY_KEYS, STAGE_CONTEXT_KEYS, LoadedWeights
from vqz.errors import ModelError
from vqz.training.quantizer import ResidualVectorQuantizer
from vqz.codec.tiling import (
    MAX_UNTILED_PIXELS,
    tiled_analysis_float,
    tiled_synthesis,
    tiled_synthesis_uint8,
    tile_margin,
    to_uint8,
)


def _numpy_transform(module: nn.Module):
    """``module`` as a numpy (1, C, H, W) float32 -> numpy float32 callable (for the shared tiling)."""
    def run(x):
        with torch.no_grad():
            return module(_nhwc(torch.from_numpy(x))).contiguous().numpy()
    return run


def _analysis(config: ModelConfig) -> nn.Sequential:
    n, layers, in_ch = config.channels, [], 3
    for _ in range(config.downsampling_log2):
        layers += [conv(in_ch, n, kernel_size=5, stride=2), GDN(n)]
        in_ch = n
    layers += [ResidualBlock(n, n) for _ in range(1 + config.latent_blocks)]
    layers.append(conv(n, config.latent_dim, kernel_size=3, stride=1))
    return nn.Sequential(*layers)


def _synthesis(config: ModelConfig) -> nn.Sequential:
    n = config.channels
    layers: list[nn.Module] = [conv(config.latent_dim, n, kernel_size=3, stride=1)]
    layers += [ResidualBlock(n, n) for _ in range(1 + config.latent_blocks)]
    for step in range(config.downsampling_log2):
        last = step == config.downsampling_log2 - 1
        layers.append(deconv(n, 3 if last else n, kernel_size=5, stride=2))
        if not last:
            layers.append(GDN(n, inverse=True))
    return nn.Sequential(*layers)


def _nhwc(x: Tensor) -> Tensor:
    """The same tensor in channels_last memory order: oneDNN's convolutions and transposed
    convolutions run about 1.5x faster on CPU in that layout (measured on a 2-core EPYC)."""
    return x.contiguous(memory_format=torch.channels_last)


class VQCodecModel(nn.Module):
    """VQ-VAE with a residual quantizer; quality level ``q`` uses the first ``q`` stages."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.g_a = _analysis(config)
        self.g_s = _synthesis(config)
        self.quantizer = ResidualVectorQuantizer(config.num_stages, config.codebook_size, config.latent_dim)
        # every path (training and coding) feeds the transforms channels_last tensors (_nhwc);
        # weights loaded later with load_state_dict keep this layout
        self.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor, stages_per_sample: Tensor | None = None) -> dict[str, Tensor]:
        """Training path. x: (B, 3, H, W) in [0, 1]; stages_per_sample: (B,) in [1, S] or None.

        ``stages_per_sample=None`` bypasses quantization (continuous warm-up).
        """
        latent = self.g_a(_nhwc(x))
        if stages_per_sample is None:
            return {"x_hat": self.g_s(latent), "commitment": latent.new_zeros(())}
        # the quantizer always runs in float32, also under bf16 autocast: nearest-code
        # distances and EMA statistics in bf16 would pick wrong codes and drift
        with torch.autocast(device_type=latent.device.type, enabled=False):
            quantized, commitment = self.quantizer(latent.float(), stages_per_sample)
        return {"x_hat": self.g_s(quantized), "commitment": commitment}

    @torch.no_grad()
    def encode_indices(self, x: Tensor, num_stages: int) -> Tensor:
        """x: (B, 3, H, W) in [0, 1], H and W multiples of the downsampling -> (S', B, H/d, W/d) int64.

        Images larger than ``MAX_UNTILED_PIXELS`` (batch 1) run in tiles with bounded memory.
        """
        d = self.config.downsampling
        if x.shape[0] == 1 and x.shape[2] * x.shape[3] > MAX_UNTILED_PIXELS:
            tiled = tiled_analysis_float(_numpy_transform(self.g_a), x.contiguous().numpy(), d, self.config.latent_dim,
                                         margin=tile_margin(self.config))
            latent = torch.from_numpy(tiled)
        else:
            latent = self.g_a(_nhwc(x))
        return self.quantizer.encode(latent, num_stages)

    @torch.no_grad()
    def decode_indices(self, indices: Tensor) -> Tensor:
        """indices: (S', B, h, w) int64 -> image (B, 3, h*d, w*d) clamped to [0, 1]."""
        latent = _nhwc(self.quantizer.dequantize(indices))
        d = self.config.downsampling
        if latent.shape[0] == 1 and latent.shape[2] * latent.shape[3] * d * d > MAX_UNTILED_PIXELS:
            return torch.from_numpy(tiled_synthesis(_numpy_transform(self.g_s), latent.contiguous().numpy(), d,
                                                    margin=tile_margin(self.config)))
        return self.g_s(latent).clamp_(0.0, 1.0)

    @torch.no_grad()
    def decode_indices_uint8(self, indices: Tensor) -> Tensor:
        """indices: (S', 1, h, w) int64 -> image (h*d, w*d, 3) uint8 (x * 255 rounded), tiled when large."""
        latent = _nhwc(self.quantizer.dequantize(indices))
        d = self.config.downsampling
        if latent.shape[2] * latent.shape[3] * d * d > MAX_UNTILED_PIXELS:
            return torch.from_numpy(tiled_synthesis_uint8(_numpy_transform(self.g_s), latent.contiguous().numpy(), d,
                                                          margin=tile_margin(self.config)))
        return torch.from_numpy(to_uint8(self.g_s(latent).contiguous().numpy()))


def model_from_tensors(config: ModelConfig, tensors: dict[str, object]) -> VQCodecModel:
    """The network of ``config`` (eval mode) with the given state dict (numpy arrays or tensors).

    Raises ``ValueError`` (from ``load_state_dict``: RuntimeError) when they do not match.
    """
    model = VQCodecModel(config)
    state = {k: v if isinstance(v, Tensor) else torch.from_numpy(np.array(v, copy=True)) for k, v in tensors.items()}
    model.load_state_dict(state, strict=True)
    return model.eval()


_TORCH_MODELS: dict[tuple[str, bytes], VQCodecModel] = {}


def torch_model(weights: LoadedWeights) -> VQCodecModel:
    """The PyTorch network of a loaded model (eval mode, built once per weights file): the reference coding
    path the runtime is compared with, and the start of fine-tunes. ``ModelError`` when the file's tensors do
    not match its configuration."""
    key = (str(weights.path), weights.weights_hash)
    if key not in _TORCH_MODELS:
        try:
            _TORCH_MODELS[key] = model_from_tensors(weights.config, weights.tensors)
        except RuntimeError as exc:
            raise ModelError(f"weights file {weights.path} does not match its configuration: {exc}") from None
    return _TORCH_MODELS[key]


def save_weights(
    path: Path,
    model: VQCodecModel,
    model_id: str,
    entropy: EntropyModel | None = None,
    extra_metadata: dict[str, str] | None = None,
) -> None:
    """Write ``model`` (and optional entropy tables) to ``path`` atomically (training world)."""
    import torch
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if entropy is not None:
        for name in ENTROPY_KEYS:
            table = getattr(entropy, name)
            if table is not None:
                tensors[f"entropy.{name}"] = torch.from_numpy(np.ascontiguousarray(table))
        if entropy.stages is not None:
            for field_name, stored in STAGE_CONTEXT_KEYS.items():
                tensors[f"entropy.{stored}"] = torch.from_numpy(np.ascontiguousarray(getattr(entropy.stages, field_name)))
    metadata = dict(extra_metadata or {})
    metadata.update({"model_id": model_id, "config": model.config.to_json(), "format": "vqz-weights-1"})
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)


