"""The decoder's post-filter network (training world; the runtime runs its ONNX graph).

A small convolutional network that takes a decoded image and returns it with coding artifacts
reduced: blocking and ringing of the pixel residual layer and the learned synthesis' blur.
It works at half resolution on space-to-depth blocks (each 2x2 pixel block becomes 12 channels),
so four 3x3 convolutions see 18x18 pixels for about 6.4 k multiply-adds per pixel (C = 32):
about 40 ms for a 768x512 image on two CPU cores.

With ``quarter_channels`` > 0 one half-resolution layer is replaced by a branch at quarter resolution
(a stride-2 3x3 convolution to ``quarter_channels`` channels, one 3x3 convolution there, a 1x1 convolution
and depth-to-space back, added to the half-resolution features): about twice the receptive field for
about 29% more work at 48 / 96 channels (``experiments/probes/postfilter_architecture.txt``).

Input ``x``: (N, 3, H, W) float32 RGB in [0, 1] with H, W multiples of :attr:`PostFilterNet.multiple`
(2, or 4 with the quarter-resolution branch); ``strength``: (N,) float32, the
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

from vqz.codec.postfilter import input_multiple

#: ``strength`` is divided by this before it enters the network as a constant input plane.
STRENGTH_SCALE = 64.0
#: Pixels per side of the space-to-depth blocks.
BLOCK = 2


class PostFilterNet(nn.Module):
    """``layers`` 3x3 convolutions of ``channels`` channels at half resolution (LeakyReLU 0.1); with
    ``quarter_channels`` > 0 the second of them is the quarter-resolution branch (``layers`` >= 3)."""

    def __init__(self, channels: int = 32, layers: int = 4, quarter_channels: int = 0) -> None:
        super().__init__()
        if layers < 2 or (quarter_channels and layers < 3):
            raise ValueError("a post-filter needs at least 2 layers (3 with a quarter-resolution branch)")
        packed = 3 * BLOCK * BLOCK
        self.channels, self.layers, self.quarter_channels = channels, layers, quarter_channels
        #: H and W of an input must be multiples of this
        self.multiple = input_multiple(quarter_channels)
        self.inp = nn.Conv2d(packed + 1, channels, 3, padding=1)
        if quarter_channels:
            self.down = nn.Conv2d(channels, quarter_channels, 3, stride=2, padding=1)
            self.quarter = nn.Conv2d(quarter_channels, quarter_channels, 3, padding=1)
            self.up = nn.Conv2d(quarter_channels, 4 * channels, 1)
        half_layers = layers - 2 - (1 if quarter_channels else 0)
        self.mid = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in range(half_layers))
        self.out = nn.Conv2d(channels, packed, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, strength: Tensor) -> Tensor:
        packed = F.pixel_unshuffle(x - 0.5, BLOCK)
        plane = torch.ones_like(packed[:, :1]) * (strength.reshape(-1, 1, 1, 1) / STRENGTH_SCALE)
        h = F.leaky_relu(self.inp(torch.cat([packed, plane], 1)), 0.1)
        if self.quarter_channels:
            q = F.leaky_relu(self.down(h), 0.1)
            q = F.leaky_relu(self.quarter(q), 0.1)
            h = h + F.pixel_shuffle(self.up(q), 2)
        for conv in self.mid:
            h = F.leaky_relu(conv(h), 0.1)
        return x + F.pixel_shuffle(self.out(h), BLOCK)

    def receptive_radius(self) -> int:
        """Pixels beyond which an input change cannot reach an output pixel (band margins): one
        half-resolution pixel per half-resolution layer, four for the quarter-resolution branch
        (its stride-2 and 3x3 convolutions and the depth-to-space alignment), plus the 2x2 block."""
        half = len(self.mid) + 2 + (4 if self.quarter_channels else 0)
        return BLOCK * half + BLOCK - 1


def load_shipped_filter(path: Path) -> PostFilterNet:
    """The network of a shipped filter's weights file (tensors ``pf.*``; metadata ``postfilter_id`` and
    ``config`` with ``channels``, ``layers`` and, for a quarter-resolution branch, ``quarter_channels``), float32,
    in eval mode."""
    from safetensors import safe_open

    from vqz.errors import ModelError

    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
        if "postfilter_id" not in metadata:
            raise ModelError(f"{path} is not a post-filter weights file")
        state = {k[3:]: handle.get_tensor(k).to(torch.float32) for k in handle.keys() if k.startswith("pf.")}
    config = json.loads(metadata["config"])
    net = PostFilterNet(config["channels"], config["layers"], config.get("quarter_channels", 0))
    net.load_state_dict(state)
    return net.eval()
