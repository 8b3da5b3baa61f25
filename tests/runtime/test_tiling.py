"""Tiled transforms match the untiled ones: no seams, bounded memory for large images."""

from __future__ import annotations

import numpy as np

from vqz.training.model import torch_model

from vqz.codec.padding import pad_rgb, to_input
from vqz.codec.tiling import tiled_analysis, tiled_synthesis_uint8, to_uint8
from vqz.codec.vq import dequantize, quantize

from conftest import smooth_image


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def test_tiled_analysis_and_synthesis_match_untiled_within_0_05_db(model):
    rgb = pad_rgb(smooth_image(200, 264, seed=11), 8)
    d, dim = model.config.downsampling, model.config.latent_dim
    whole = model.analysis(to_input(rgb))
    tiled = tiled_analysis(model.analysis, rgb, d, dim, core=8)
    assert np.allclose(whole, tiled, atol=1e-3 * np.abs(whole).max())
    reference = to_uint8(model.synthesis(whole))
    pieces = tiled_synthesis_uint8(model.synthesis, whole, d, core=8)
    assert pieces.shape == reference.shape
    assert _psnr(pieces, reference) > 45.0  # vs the untiled decode: differences far below visibility


def test_tiled_round_trip_quality_matches_untiled(model):
    rgb = pad_rgb(smooth_image(136, 200, seed=12), 8)
    d, dim = model.config.downsampling, model.config.latent_dim

    def decode(latent: np.ndarray, tiled: bool) -> np.ndarray:
        indices = quantize(latent[0].transpose(1, 2, 0), model.codebooks, 3)
        rebuilt = np.ascontiguousarray(dequantize(indices, model.codebooks).transpose(2, 0, 1)[None])
        return tiled_synthesis_uint8(model.synthesis, rebuilt, d, core=6) if tiled else to_uint8(model.synthesis(rebuilt))

    whole = decode(model.analysis(to_input(rgb)), tiled=False)
    pieces = decode(tiled_analysis(model.analysis, rgb, d, dim, core=6), tiled=True)
    assert abs(_psnr(whole, rgb) - _psnr(pieces, rgb)) < 0.05


def test_split_passes_compute_what_the_whole_graph_computes(model, monkeypatch):
    """Large images run head and tail graphs tile by tile, two tiles at a time, each with its own margin:
    the same latent and the same pixels as one pass of the whole graph (small tiles here)."""
    from vqz.codec import tiling
    from vqz.codec.tiling import split_analysis, split_margins, split_synthesis_uint8

    monkeypatch.setattr(tiling, "PIXEL_CORE_CELLS", 7)
    monkeypatch.setattr(tiling, "LATENT_CORE_CELLS", 9)
    rgb = pad_rgb(smooth_image(200, 264, seed=11), 8)
    d, margins = model.config.downsampling, split_margins(model.config)
    whole = model.analysis(to_input(rgb))
    split = split_analysis(model.analysis.split, rgb, d, margins)
    assert np.allclose(whole, split, rtol=0, atol=1e-5 * np.abs(whole).max())
    reference = to_uint8(model.synthesis(whole))
    pieces = split_synthesis_uint8(model.synthesis.split, whole, d, margins)
    assert np.abs(pieces.astype(int) - reference.astype(int)).max() <= 1
    assert np.mean(pieces != reference) < 1e-3


def test_split_synthesis_of_a_row_range_is_those_rows_of_the_whole(model, monkeypatch):
    """The encoder's post-filter decision renders row windows of a large image from the context they need only:
    the same pixels as those rows of the whole split synthesis (and as :func:`render`)."""
    from vqz.codec import pipeline, tiling
    from vqz.codec.tiling import split_margins, split_synthesis_uint8

    monkeypatch.setattr(tiling, "PIXEL_CORE_CELLS", 7)
    monkeypatch.setattr(tiling, "LATENT_CORE_CELLS", 9)
    d, margins = model.config.downsampling, split_margins(model.config)
    latent = model.analysis(to_input(pad_rgb(smooth_image(240, 96, seed=12), 8)))
    whole = split_synthesis_uint8(model.synthesis.split, latent, d, margins)
    for y0, y1 in ((0, 3), (4, 9), (13, 30), (25, 30)):
        rows = split_synthesis_uint8(model.synthesis.split, latent, d, margins, rows=(y0, y1))
        assert np.array_equal(rows, whole[y0 * d : y1 * d])
    monkeypatch.setattr(tiling, "MAX_UNTILED_PIXELS", 128 * 128)  # rendered in split tiles
    image = smooth_image(300, 172, seed=13)
    indices = pipeline.encode_indices(model, image, 2)
    full = pipeline.render(model, indices, *image.shape[:2])
    for r0, r1 in ((0, 64), (101, 180), (236, 300)):
        assert np.array_equal(pipeline.render_rows(model, indices, *image.shape[:2], r0, r1), full[r0:r1])


def test_the_nearest_code_search_is_the_same_in_threads(model):
    from vqz.codec.vq import nearest

    vectors = np.random.default_rng(3).standard_normal((5000, model.config.latent_dim)).astype(np.float32)
    one = nearest(vectors, model.codebooks[0], chunk=vectors.shape[0])
    assert np.array_equal(nearest(vectors, model.codebooks[0], chunk=600), one)  # 9 chunks on two threads


def test_split_margins_cover_each_parts_receptive_field(model):
    """The margins of the split passes reach at least as far as one latent cell's influence, measured
    through the PyTorch network by gradients."""
    import torch

    from vqz.codec.tiling import analysis_split, split_margins, synthesis_split

    config = model.config
    latent_margin, pixel_margin = split_margins(config)
    d = config.downsampling
    net = torch_model(model)

    def reach(part, channels, scale_in, cells=24):
        x = torch.randn(1, channels, cells * scale_in, cells * scale_in, requires_grad=True)
        y = part(x)
        s = y.shape[2] // cells  # output pixels per cell
        c = cells // 2
        y[0, :, c * s : (c + 1) * s, c * s : (c + 1) * s].sum().backward()
        rows = np.nonzero(x.grad.abs().sum((0, 1, 3)).numpy())[0] // scale_in
        return max(c - rows.min(), rows.max() - c)

    with torch.enable_grad():
        assert reach(net.g_a[: analysis_split(config)], 3, d) <= pixel_margin
        assert reach(net.g_a[analysis_split(config):], config.channels, 1) <= latent_margin
        assert reach(net.g_s[: synthesis_split(config)], config.latent_dim, 1) <= latent_margin
        assert reach(net.g_s[synthesis_split(config):], config.channels, 1) <= pixel_margin
