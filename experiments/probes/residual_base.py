"""Shared by the residual-layer probes: a held-out photo and the four stages the layer builds on."""
from pathlib import Path

import numpy as np

from vqz.codec.photos import load_rgb
from vqz.codec.padding import compute_padding
from vqz.codec.pipeline import encode_indices, render, whole_stage_activity
from vqz.training.train_postfilter import _centre_crop

HELDOUT_LIST = "checkpoints/vqz-rvq16-f8/validation_files.txt"


def heldout_names(first: int, count: int) -> list[str]:
    """Every second held-out name from ``first`` (1: the held-out bench's photos, 0: the others)."""
    return [line.strip() for line in open(HELDOUT_LIST)][first::2][:count]


def four_stage_base(weights, name: str):
    """(rgb, indices, base, activity, top, left): the centre crop (at most 512 x 768) of training photo
    ``name``, its 4-stage indices (4, gh, gw), what they decode to, their latent activity, and where the
    image sits in the padded frame."""
    rgb = _centre_crop(load_rgb(Path("../shared/data/train") / name), 512 * 768)
    height, width = rgb.shape[:2]
    idx = encode_indices(weights, rgb, 4)
    (left, _, top, _), _ = compute_padding(height, width, min_div=8)
    return rgb, idx, render(weights, idx, height, width), whole_stage_activity(weights, idx, 4), top, left
