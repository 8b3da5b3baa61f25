"""Bounded-memory transforms: run the analysis / synthesis transform tile by tile (numpy).

Each tile is processed with a margin of context on every side that covers the
transform's receptive field, and only its core is kept, so a tiled result matches the
untiled one up to floating-point rounding (tested: within 0.05 dB PSNR on real photos)
while peak memory depends on the tile size, not on the image size.

The transforms are plain callables on float32 numpy arrays, so the ONNX Runtime engine
(:mod:`vqz.codec.engine`) and the PyTorch reference (:mod:`vqz.training.model`) share this code.

A transform of the runtime that carries split graphs (``transform.split``, :class:`vqz.codec.engine.SplitGraphs`)
tiles a large image in two passes instead: its head, then its tail, each with the margin its own
receptive field needs (:func:`split_margins`). The full-resolution part (the analysis' strided
convolutions, the synthesis' transposed ones: about 90% of the work) needs a margin of 2 cells where
the whole transform needs 10. The tiles of each pass run ``TILE_THREADS`` at a time on one-thread sessions, so both cores
work on one image; each tile is computed alone, so the result does not depend on that number.
Images up to ``MAX_UNTILED_PIXELS`` run in one piece through the whole graph, as before.

Shapes: padded images (H, W, 3) uint8 with H, W multiples of the downsampling ``d``;
transform inputs (1, 3, H, W) float32; latents (1, M, H/d, W/d). Tile sizes and margins are
in latent cells.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from vqz.codec.padding import to_input
from vqz.codec.config import ModelConfig

CORE_CELLS = 64  # 512x512 pixels per tile core with d = 8
MARGIN_CELLS = 6  # receptive-field margin, in latent cells, on every side
MAX_UNTILED_PIXELS = 1024 * 1024  # images up to this size run in one piece

Transform = Callable[[np.ndarray], np.ndarray]


def tile_margin(config: ModelConfig) -> int:
    """Context margin (latent cells) of a tile for a model: each latent-resolution residual
    block adds two 3x3 convolutions, one cell of receptive field each, to both transforms."""
    return MARGIN_CELLS + 2 * config.latent_blocks


#: Tile cores (latent cells) of the split passes: the latent-resolution part (cheap, margin 8) and the
#: full-resolution part (margin 2). 32 cells (256 pixels) is as fast as 64 on a 13-megapixel photo (13.5 vs
#: 13.9 s for the synthesis, two tiles at a time: small tiles stay in cache) and holds the peak at 0.86 GB
#: against 1.57 GB (ONNX Runtime's transposed convolution keeps a column buffer of 3200 floats per input
#: pixel of the half-resolution layer: 512 MB for a 96-cell tile).
LATENT_CORE_CELLS = 128
PIXEL_CORE_CELLS = 32


def analysis_split(config: ModelConfig) -> int:
    """Layers of the analysis head: the strided convolutions and their GDNs (the rest is at latent resolution)."""
    return 2 * config.downsampling_log2


def synthesis_split(config: ModelConfig) -> int:
    """Layers of the synthesis head: the first convolution and the residual blocks at latent resolution."""
    return 2 + config.latent_blocks


def split_margins(config: ModelConfig) -> tuple[int, int]:
    """(latent-resolution margin, full-resolution margin) in latent cells for the split passes: a 3x3
    convolution per cell of radius at latent resolution (1 + 2 per residual block) plus one; the strided
    and transposed 5x5 convolutions of a d = 8 model reach 2 cells (``tests/runtime/test_tiling.py`` measures both)."""
    return 1 + 2 * (1 + config.latent_blocks) + 1, 2


def _spans(length: int, core: int, margin: int) -> list[tuple[int, int, int, int]]:
    """(start, stop) of each core along one axis and the (lo, hi) of its context window."""
    spans = []
    for start in range(0, length, core):
        stop = min(start + core, length)
        spans.append((start, stop, max(0, start - margin), min(length, stop + margin)))
    return spans


def analysis(g_a: Transform, rgb: np.ndarray, d: int, latent_dim: int,
             core: int = CORE_CELLS, margin: int = MARGIN_CELLS, margins: tuple[int, int] | None = None) -> np.ndarray:
    """g_a over a padded (H, W, 3) uint8 image -> (1, M, H/d, W/d) float32; tiled when the
    image has more than ``MAX_UNTILED_PIXELS`` pixels (each tile converted to float on its own),
    in two passes when ``g_a`` has split graphs (``margins``: :func:`split_margins`)."""
    if rgb.shape[0] * rgb.shape[1] > MAX_UNTILED_PIXELS:
        split = getattr(g_a, "split", None)
        if split is not None and margins is not None:
            return split_analysis(split, rgb, d, margins)
        return tiled_analysis(g_a, rgb, d, latent_dim, core, margin)
    return g_a(to_input(rgb))


def _tile_grid(gh: int, gw: int, core: int, margin: int) -> list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]:
    return [(ys, xs) for ys in _spans(gh, core, margin) for xs in _spans(gw, core, margin)]


def _parallel_tiles(run_tile: Callable[[tuple, tuple], None], grid: list) -> None:
    """``run_tile(ys, xs)`` for every tile of ``grid``, ``TILE_THREADS`` at a time (each writes its own core)."""
    from concurrent.futures import ThreadPoolExecutor  # only large images need it: `vqz decode` starts faster

    from vqz.codec.engine import TILE_THREADS

    if TILE_THREADS <= 1 or len(grid) == 1:
        for ys, xs in grid:
            run_tile(ys, xs)
        return
    with ThreadPoolExecutor(TILE_THREADS) as pool:
        for future in [pool.submit(run_tile, ys, xs) for ys, xs in grid]:
            future.result()


def _split_pass(part: Transform, source: Callable[[int, int, int, int], np.ndarray], gh: int, gw: int, scale: int,
                core: int, margin: int, out_shape: Callable[[int], tuple[int, ...]],
                store: Callable[[np.ndarray, int, int], None] | None = None) -> np.ndarray | None:
    """Run ``part`` tile by tile over a grid of ``gh`` x ``gw`` latent cells: ``source(ylo, yhi, xlo, xhi)`` is
    the tile's input (with its margin); the output has ``scale`` pixels per cell. Returns the assembled
    (1, C, gh * scale, gw * scale) float32 (``out_shape(C)``), or writes each core through ``store``."""
    result: dict[str, np.ndarray] = {}

    def run_tile(ys, xs):
        (y0, y1, ylo, yhi), (x0, x1, xlo, xhi) = ys, xs
        tile = part(source(ylo, yhi, xlo, xhi))
        core_tile = tile[:, :, (y0 - ylo) * scale : (y1 - ylo) * scale, (x0 - xlo) * scale : (x1 - xlo) * scale]
        if store is not None:
            store(core_tile, y0 * scale, x0 * scale)
            return
        if "out" not in result:
            result.setdefault("out", np.empty(out_shape(tile.shape[1]), dtype=np.float32))
        result["out"][:, :, y0 * scale : y1 * scale, x0 * scale : x1 * scale] = core_tile

    grid = _tile_grid(gh, gw, core, margin)
    run_tile(*grid[0])  # the first tile alone: it fixes the output's channels
    _parallel_tiles(run_tile, grid[1:])
    return result.get("out")


def split_analysis(split, rgb: np.ndarray, d: int, margins: tuple[int, int]) -> np.ndarray:
    """g_a over a padded (H, W, 3) uint8 image in two tiled passes (:class:`vqz.codec.engine.SplitGraphs`)
    -> (1, M, H/d, W/d) float32."""
    latent_margin, pixel_margin = margins
    gh, gw = rgb.shape[0] // d, rgb.shape[1] // d
    features = _split_pass(split.head, lambda ylo, yhi, xlo, xhi: to_input(rgb[ylo * d : yhi * d, xlo * d : xhi * d]),
                           gh, gw, 1, PIXEL_CORE_CELLS, pixel_margin, lambda c: (1, c, gh, gw))
    split.head.release()  # each pass's arena would otherwise stay at its peak beside the next one's
    latent = _split_pass(split.tail, lambda ylo, yhi, xlo, xhi: np.ascontiguousarray(features[:, :, ylo:yhi, xlo:xhi]),
                         gh, gw, 1, LATENT_CORE_CELLS, latent_margin, lambda c: (1, c, gh, gw))
    split.tail.release()
    return latent


def split_synthesis_uint8(split, latent: np.ndarray, d: int, margins: tuple[int, int],
                          rows: tuple[int, int] | None = None) -> np.ndarray:
    """g_s over (1, M, h, w) float32 in two tiled passes -> (h*d, w*d, 3) uint8 (clamped, rounded).

    ``rows`` = (y0, y1): only the pixels of latent rows y0 .. y1 - 1, ((y1 - y0)*d, w*d, 3), the same values,
    computed from the context they need: the head over ``margins[0] + margins[1]`` more cells on each side,
    the tail over ``margins[1]`` more (the encoder's post-filter decision on row windows of a large image)."""
    latent_margin, pixel_margin = margins
    if rows is not None:
        y0, y1 = rows
        lo, hi = max(0, y0 - pixel_margin), min(latent.shape[2], y1 + pixel_margin)  # the tail's input rows
        a, b = max(0, lo - latent_margin), min(latent.shape[2], hi + latent_margin)  # the head's input rows
        features = _head_features(split, np.ascontiguousarray(latent[:, :, a:b]), latent_margin)[:, :, lo - a : hi - a]
        pixels = _tail_uint8(split, np.ascontiguousarray(features), d, pixel_margin)
        return np.ascontiguousarray(pixels[(y0 - lo) * d : (y1 - lo) * d])
    features = _head_features(split, latent, latent_margin)
    split.head.release()  # each pass's arena would otherwise stay at its peak beside the next one's (0.35 GB at 13 MP)
    out = _tail_uint8(split, features, d, pixel_margin)
    split.tail.release()
    return out


def _head_features(split, latent: np.ndarray, latent_margin: int) -> np.ndarray:
    _, _, gh, gw = latent.shape
    return _split_pass(split.head, lambda ylo, yhi, xlo, xhi: np.ascontiguousarray(latent[:, :, ylo:yhi, xlo:xhi]),
                       gh, gw, 1, LATENT_CORE_CELLS, latent_margin, lambda c: (1, c, gh, gw))


def _tail_uint8(split, features: np.ndarray, d: int, pixel_margin: int) -> np.ndarray:
    _, _, gh, gw = features.shape
    out = np.empty((gh * d, gw * d, 3), dtype=np.uint8)

    def store(core_tile: np.ndarray, top: int, left: int) -> None:
        out[top : top + core_tile.shape[2], left : left + core_tile.shape[3]] = to_uint8(core_tile)

    _split_pass(split.tail, lambda ylo, yhi, xlo, xhi: np.ascontiguousarray(features[:, :, ylo:yhi, xlo:xhi]),
                gh, gw, d, PIXEL_CORE_CELLS, pixel_margin, lambda c: (1, c, gh * d, gw * d), store)
    return out


def _tiled_latent(run_tile: Callable[[int, int, int, int], np.ndarray], gh: int, gw: int, latent_dim: int,
                  core: int, margin: int) -> np.ndarray:
    """Assemble (1, M, gh, gw) from the cores of tiles; ``run_tile(ylo, yhi, xlo, xhi)`` runs g_a
    on the pixels of latent cells [ylo, yhi) x [xlo, xhi)."""
    out = np.empty((1, latent_dim, gh, gw), dtype=np.float32)
    for y0, y1, ylo, yhi in _spans(gh, core, margin):
        for x0, x1, xlo, xhi in _spans(gw, core, margin):
            tile = run_tile(ylo, yhi, xlo, xhi)
            out[:, :, y0:y1, x0:x1] = tile[:, :, y0 - ylo : y1 - ylo, x0 - xlo : x1 - xlo]
    return out


def tiled_analysis(g_a: Transform, rgb: np.ndarray, d: int, latent_dim: int,
                   core: int = CORE_CELLS, margin: int = MARGIN_CELLS) -> np.ndarray:
    """g_a over a padded (H, W, 3) uint8 image in tiles -> (1, M, H/d, W/d) float32."""
    return _tiled_latent(lambda ylo, yhi, xlo, xhi: g_a(to_input(rgb[ylo * d : yhi * d, xlo * d : xhi * d])),
                         rgb.shape[0] // d, rgb.shape[1] // d, latent_dim, core, margin)


def tiled_analysis_float(g_a: Transform, x: np.ndarray, d: int, latent_dim: int,
                         core: int = CORE_CELLS, margin: int = MARGIN_CELLS) -> np.ndarray:
    """g_a over a (1, 3, H, W) float32 image in tiles -> (1, M, H/d, W/d) float32."""
    return _tiled_latent(lambda ylo, yhi, xlo, xhi: g_a(np.ascontiguousarray(x[:, :, ylo * d : yhi * d, xlo * d : xhi * d])),
                         x.shape[2] // d, x.shape[3] // d, latent_dim, core, margin)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """(1, 3, H, W) float -> (H, W, 3) uint8: clamped to [0, 1], x * 255 rounded half to even
    (as torch's ``x.clamp(0, 1).mul(255).round()``)."""
    y = np.clip(x[0], np.float32(0.0), np.float32(1.0)).astype(np.float32, copy=False)
    y *= np.float32(255.0)
    np.rint(y, out=y)
    return y.astype(np.uint8).transpose(1, 2, 0)


def synthesis_uint8(g_s: Transform, latent: np.ndarray, d: int,
                    core: int = CORE_CELLS, margin: int = MARGIN_CELLS, margins: tuple[int, int] | None = None) -> np.ndarray:
    """g_s over (1, M, h, w) float32 -> (h*d, w*d, 3) uint8 (clamped, rounded); tiled when the
    image has more than ``MAX_UNTILED_PIXELS`` pixels, so a large image never exists as floats;
    in two passes when ``g_s`` has split graphs (``margins``: :func:`split_margins`)."""
    _, _, gh, gw = latent.shape
    if gh * gw * d * d <= MAX_UNTILED_PIXELS:
        return to_uint8(g_s(latent))
    split = getattr(g_s, "split", None)
    if split is not None and margins is not None:
        return split_synthesis_uint8(split, latent, d, margins)
    return tiled_synthesis_uint8(g_s, latent, d, core, margin)


def tiled_synthesis_uint8(g_s: Transform, latent: np.ndarray, d: int,
                          core: int = CORE_CELLS, margin: int = MARGIN_CELLS) -> np.ndarray:
    """g_s over (1, M, h, w) in tiles -> (h*d, w*d, 3) uint8; each tile goes straight to uint8."""
    _, _, gh, gw = latent.shape
    out = np.empty((gh * d, gw * d, 3), dtype=np.uint8)
    for y0, y1, ylo, yhi in _spans(gh, core, margin):
        for x0, x1, xlo, xhi in _spans(gw, core, margin):
            tile = g_s(np.ascontiguousarray(latent[:, :, ylo:yhi, xlo:xhi]))
            core_tile = tile[:, :, (y0 - ylo) * d : (y1 - ylo) * d, (x0 - xlo) * d : (x1 - xlo) * d]
            out[y0 * d : y1 * d, x0 * d : x1 * d] = to_uint8(core_tile)
    return out


def tiled_synthesis(g_s: Transform, latent: np.ndarray, d: int,
                    core: int = CORE_CELLS, margin: int = MARGIN_CELLS) -> np.ndarray:
    """g_s over (1, M, h, w) in tiles -> (1, 3, h*d, w*d) float32 clamped to [0, 1]."""
    _, _, gh, gw = latent.shape
    out = np.empty((1, 3, gh * d, gw * d), dtype=np.float32)
    for y0, y1, ylo, yhi in _spans(gh, core, margin):
        for x0, x1, xlo, xhi in _spans(gw, core, margin):
            tile = np.clip(g_s(np.ascontiguousarray(latent[:, :, ylo:yhi, xlo:xhi])), 0.0, 1.0)
            out[:, :, y0 * d : y1 * d, x0 * d : x1 * d] = tile[
                :, :, (y0 - ylo) * d : (y1 - ylo) * d, (x0 - xlo) * d : (x1 - xlo) * d
            ]
    return out
