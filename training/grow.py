"""Grow a trained model into a larger architecture that starts out computing the same function.

Training a larger model from scratch on a CPU would spend thousands of steps re-learning
what the shipped model already knows. Every change here has a start that keeps the old
model's output exactly (tested in ``tests/training/test_grow.py``):

* **latent-resolution residual blocks** (``latent_blocks``): compressai's ResidualBlock is
  ``x + leaky_relu(conv2(leaky_relu(conv1(x))))``; with ``conv2``'s weight and bias at zero it
  is the identity, and ``conv2`` still receives a gradient from the first step;
* **a wider latent** (``latent_dim``): the analysis transform's last convolution gets new
  output channels (small random weights, zero bias) and the synthesis transform's first
  convolution zero weights for the new input channels, so the new channels carry no signal
  until training gives them one; the old stages' code vectors are zero in the new
  dimensions, which adds the same ``|r_new|^2`` to every code's distance and so leaves the
  greedy nearest-code choices of the old stages unchanged;
* **more stages** (``num_stages``): the new stages are initialised by k-means on the
  residuals that the old (zero-padded) stages leave on real training latents, as
  :meth:`ResidualVectorQuantizer._kmeans_init` does for a fresh model.

``hidden channels``, ``downsampling`` and ``codebook_size`` cannot grow this way and must match.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

from vqz.codec.config import ModelConfig
from vqz.training.model import VQCodecModel
from vqz.errors import VqzError

_NEW_CHANNEL_SCALE = 0.1  # new latent channels start at a tenth of a default init's scale


def _check_growable(old: ModelConfig, new: ModelConfig) -> None:
    for name in ("channels", "downsampling_log2", "codebook_size"):
        if getattr(old, name) != getattr(new, name):
            raise VqzError(f"cannot grow `{name}` ({getattr(old, name)} -> {getattr(new, name)}): it must match")
    for name in ("latent_dim", "num_stages", "latent_blocks"):
        if getattr(new, name) < getattr(old, name):
            raise VqzError(f"cannot shrink `{name}` ({getattr(old, name)} -> {getattr(new, name)})")


def _shift_key(key: str, prefix: str, first_moved: int, shift: int) -> str:
    """Renumber ``prefix.<i>.rest`` to ``prefix.<i+shift>.rest`` for every ``i >= first_moved``."""
    match = re.match(rf"{prefix}\.(\d+)\.(.*)", key)
    if not match or int(match.group(1)) < first_moved:
        return key
    return f"{prefix}.{int(match.group(1)) + shift}.{match.group(2)}"


@torch.no_grad()
def grow_model(old_state: dict[str, Tensor], old: ModelConfig, new: ModelConfig, seed: int = 0) -> VQCodecModel:
    """A ``new``-architecture model holding ``old_state`` (a state dict of an ``old`` model).

    The new stages' codebooks are *not* initialised here (they keep random values and the
    quantizer is marked initialised); call :func:`init_new_stages` with real latents.
    """
    _check_growable(old, new)
    torch.manual_seed(seed)
    model = VQCodecModel(new)
    target = model.state_dict()
    shift = new.latent_blocks - old.latent_blocks
    ds = old.downsampling_log2
    # g_a: [ (conv, GDN) x ds, ResidualBlock x (1 + blocks), conv ] -> modules after the old
    # residual blocks move by `shift`; g_s: [ conv, ResidualBlock x (1 + blocks), deconv/IGDN ... ]
    g_a_moved = 2 * ds + 1 + old.latent_blocks
    g_s_moved = 2 + old.latent_blocks
    mapped: dict[str, Tensor] = {}
    for key, value in old_state.items():
        key = _shift_key(key, "g_a", g_a_moved, shift)
        key = _shift_key(key, "g_s", g_s_moved, shift)
        mapped[key] = value
    g_a_last = f"g_a.{2 * ds + 1 + new.latent_blocks}"
    for key, value in mapped.items():
        if key not in target:
            raise VqzError(f"old weights hold {key}, which the grown model does not have")
        slot = target[key]
        if slot.shape == value.shape:
            slot.copy_(value)
        elif key == f"{g_a_last}.weight":  # (M', N, 3, 3): new output channels
            slot[: value.shape[0]].copy_(value)
            slot[value.shape[0] :].mul_(_NEW_CHANNEL_SCALE)
        elif key == f"{g_a_last}.bias":
            slot.zero_()
            slot[: value.shape[0]].copy_(value)
        elif key == "g_s.0.weight":  # (N, M', 3, 3): new input channels read nothing yet
            slot.zero_()
            slot[:, : value.shape[1]].copy_(value)
        elif key.startswith("quantizer."):
            _copy_quantizer_buffer(slot, value)
        else:
            raise VqzError(f"cannot grow {key}: {tuple(value.shape)} -> {tuple(slot.shape)}")
    # the new residual blocks start as identities
    first_new_a, first_new_s = 2 * ds + 1 + old.latent_blocks, 2 + old.latent_blocks
    for index in range(shift):
        for prefix, first in (("g_a", first_new_a), ("g_s", first_new_s)):
            target[f"{prefix}.{first + index}.conv2.weight"].zero_()
            target[f"{prefix}.{first + index}.conv2.bias"].zero_()
    target["quantizer.initialized"].fill_(True)
    model.load_state_dict(target)
    return model


def _copy_quantizer_buffer(slot: Tensor, value: Tensor) -> None:
    """Old stages into the first rows; old dimensions into the first columns, zeros beyond."""
    if value.dim() == 0:
        slot.copy_(value)
        return
    if value.dim() == 3:  # codebooks / ema_sums: (S, K, M)
        slot[value.shape[0] :].zero_()
        slot[: value.shape[0], :, value.shape[2] :].zero_()
        slot[: value.shape[0], :, : value.shape[2]].copy_(value)
    else:  # ema_counts: (S, K)
        slot[: value.shape[0]].copy_(value)


@torch.no_grad()
def init_new_stages(model: VQCodecModel, latents: Tensor, first_new_stage: int) -> None:
    """k-means-initialise stages ``first_new_stage..S-1`` on the residuals that the earlier
    stages leave on ``latents`` ((B, M, H, W) encoder outputs of real training crops)."""
    flat = latents.float().permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
    model.quantizer._kmeans_init(flat, first_stage=first_new_stage)
