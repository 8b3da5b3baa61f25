"""Tiled transforms match the untiled ones: no seams, bounded memory for large images."""

from __future__ import annotations

import numpy as np
import torch

from vqz.codec.pipeline import pad_image
from vqz.codec.tiling import tiled_analysis, tiled_synthesis

from conftest import smooth_image


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((torch.round(a * 255) - torch.round(b * 255)) ** 2).item()
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def test_tiled_analysis_and_synthesis_match_untiled_within_0_05_db(model):
    net = model.model
    x, _ = pad_image(smooth_image(200, 264, seed=11), 8)
    d = net.config.downsampling
    with torch.no_grad():
        whole = net.g_a(x)
        tiled = tiled_analysis(net.g_a, x, d, net.config.latent_dim, core=8)
        assert torch.allclose(whole, tiled, atol=1e-3 * whole.abs().max().item())
        reference = net.g_s(whole).clamp(0, 1)
        pieces = tiled_synthesis(net.g_s, whole, d, core=8)
    assert pieces.shape == reference.shape
    assert _psnr(pieces, reference) > 45.0  # vs the untiled decode: differences far below visibility


def test_tiled_round_trip_quality_matches_untiled(model):
    net = model.model
    image = smooth_image(136, 200, seed=12)
    x, _ = pad_image(image, 8)
    d = net.config.downsampling
    with torch.no_grad():
        whole = net.g_s(net.quantizer.dequantize(net.quantizer.encode(net.g_a(x), 3))).clamp(0, 1)
        latent = tiled_analysis(net.g_a, x, d, net.config.latent_dim, core=6)
        pieces = tiled_synthesis(net.g_s, net.quantizer.dequantize(net.quantizer.encode(latent, 3)), d, core=6)
    assert abs(_psnr(whole, x) - _psnr(pieces, x)) < 0.05
