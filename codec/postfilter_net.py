"""The decoder's post-filter network (training world; the runtime runs its ONNX graph).

A small convolutional network that takes a decoded image and returns it with coding artifacts
reduced: blocking and ringing of the pixel residual layer and the learned synthesis' blur.
It works at half resolution on space-to-depth blocks (each 2x2 pixel block becomes 12 channels),
so four 3x3 convolutions see 18x18 pixels for about 6.4 k multiply-adds per pixel (C = 32):
about 40 ms for a 768x512 image on two CPU cores.

Input ``x``: (N, 3, H, W) float32 RGB in [0, 1] with H, W even; ``strength``: (N,) float32, the
coarseness the filter should assume, in luma-step units of the residual layer (8 .. 57 for the
shipped ladder; the encoder stores it in the file). Output: (N, 3, H, W) float32, ``x`` plus a
learned correction (the last convolution starts at zero, so an untrained filter is the identity).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: ``strength`` is divided by this before it enters the network as a constant input plane.
STRENGTH_SCALE = 64.0
#: Pixels per side of the space-to-depth blocks.
BLOCK = 2


class PostFilterNet(nn.Module):
    """``layers`` 3x3 convolutions of ``channels`` channels at half resolution (LeakyReLU 0.1)."""

    def __init__(self, channels: int = 32, layers: int = 4) -> None:
        super().__init__()
        if layers < 2:
            raise ValueError("a post-filter needs at least 2 layers")
        packed = 3 * BLOCK * BLOCK
        self.channels, self.layers = channels, layers
        self.inp = nn.Conv2d(packed + 1, channels, 3, padding=1)
        self.mid = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in range(layers - 2))
        self.out = nn.Conv2d(channels, packed, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, strength: Tensor) -> Tensor:
        packed = F.pixel_unshuffle(x - 0.5, BLOCK)
        plane = torch.ones_like(packed[:, :1]) * (strength.reshape(-1, 1, 1, 1) / STRENGTH_SCALE)
        h = F.leaky_relu(self.inp(torch.cat([packed, plane], 1)), 0.1)
        for conv in self.mid:
            h = F.leaky_relu(conv(h), 0.1)
        return x + F.pixel_shuffle(self.out(h), BLOCK)

    @staticmethod
    def receptive_radius(layers: int) -> int:
        """Pixels beyond which an input change cannot reach an output pixel (tile margins)."""
        return BLOCK * (layers + 1)


def load_shipped_filter(path: Path) -> PostFilterNet:
    """The network of a shipped filter's weights file (tensors ``pf.*``; metadata ``postfilter_id`` and
    ``config`` with ``channels`` and ``layers``), float32, in eval mode."""
    from safetensors import safe_open

    from vqz.errors import ModelError

    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
        if "postfilter_id" not in metadata:
            raise ModelError(f"{path} is not a post-filter weights file")
        state = {k[3:]: handle.get_tensor(k).to(torch.float32) for k in handle.keys() if k.startswith("pf.")}
    config = json.loads(metadata["config"])
    net = PostFilterNet(config["channels"], config["layers"])
    net.load_state_dict(state)
    return net.eval()
