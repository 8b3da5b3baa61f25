"""Image <-> ``.vqz`` bytes with a loaded model: pad, transform, quantize, entropy-code, pack.

Invariants shared by encoder and decoder:

* the image is padded (replicate, centred: compressai's ``compute_padding``) to a multiple
  of the model's downsampling ``d``; the latent grid is ``ceil(H/d) x ceil(W/d)``;
* a file codes the first ``n`` residual-VQ stages, one payload per stage, in stage
  order; payload ``s`` codes the ``grid_h * grid_w`` indices of stage ``s`` under the frozen
  integer tables of :mod:`vqz.codec.entropy_model`, selected by the indices of stages
  ``0..s-1`` only; the quantizer is greedy (effort 1, the default), so a file of ``n`` stages
  holds exactly the first ``n`` payloads of any file of more stages of the same image
  (an encoder-side search, effort > 1, picks other indices: a normal file, but not such a prefix);
* the decoder rebuilds the latent from indices alone, so the decoded indices are
  bit-exact on every machine whatever its floating-point behaviour;
* quality ``q`` is a plan (:mod:`vqz.codec.levels`): the low levels code ``q`` stages, the
  high ones a few stages plus a pixel residual layer (:mod:`vqz.codec.residual`) computed against
  exactly what the decoder shows for those stages (:func:`render`); its contexts use the latent
  activity of the file's whole stages (:func:`whole_stage_activity`), integers like the indices.

This is the coding runtime: numpy, constriction and ONNX Runtime, no torch. The transforms
are the model's exported graphs (:mod:`vqz.codec.engine`), run with ``CODING_THREADS``
threads whatever the caller's setting; the quantizer is :mod:`vqz.codec.vq`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from vqz.bitstream import Header, PostFilterRef, VqzFile, decode_alpha, encode_alpha, pack, unpack_file
from vqz.codec.engine import CODING_THREADS, Transform
from vqz.codec.metadata import Metadata
from vqz.codec.levels import (PURE_LEVELS, RESIDUAL_CHROMA, RESIDUAL_OFFSET, RESIDUAL_ROUNDING, RESIDUAL_TILT, LevelPlan,
                              level_plan, level_plans, stage_strength)
from vqz.codec.padding import compute_padding, pad_rgb
from vqz.codec.light import applies as light_applies
from vqz.codec.light import light_analysis_for, light_for
from vqz.codec.realism import applies, blend_postfilter, realistic_for
from vqz.codec.search import LIGHT_EFFORT
from vqz.codec.stage_context import PrefixLatent, mask_cells, prefix_activity
from vqz.codec.tiling import analysis, split_margins, split_synthesis_uint8, synthesis_uint8, tile_margin
from vqz.codec.vq import dequantize, quantize
from vqz.codec.weights import LoadedWeights
from vqz.errors import FormatError, ImageError

__all__ = ["CODING_THREADS", "DEFAULT_MAX_DECODE_PIXELS", "EncodeStats", "decode_bytes", "decode_image",
           "decode_indices", "encode_array", "encode_array_indices", "encode_indices", "encode_latent", "grid_shape",
           "quality_range", "quantize_latent", "render", "synthesize"]

#: Largest image the decoder builds unless told otherwise (the container allows 2^31).
DEFAULT_MAX_DECODE_PIXELS = 1 << 28


def quality_range(weights: LoadedWeights) -> range:
    """Valid quality levels of a model: 1 (smallest files) .. the number of its level plans (best)."""
    return range(1, len(level_plans(weights)) + 1)


def grid_shape(weights: LoadedWeights, height: int, width: int) -> tuple[int, int]:
    d = weights.config.downsampling
    return math.ceil(height / d), math.ceil(width / d)


@dataclass(frozen=True)
class EncodeStats:
    """What an encode produced: bits written per stage vs the model's own estimate."""

    payload_bits: list[int]
    estimated_bits: list[float]
    fixed_length_bits: list[float]


def encode_latent(weights: LoadedWeights, rgb: np.ndarray, light: bool = False) -> np.ndarray:
    """(H, W, 3) uint8 -> the (grid_h, grid_w, M) float32 latent: pad, analysis (tiled when large); with
    ``light``, the model's light analysis head where one is installed (:mod:`vqz.codec.light`)."""
    config = weights.config
    transform = weights.analysis
    if light:
        light_analysis = light_analysis_for(weights)
        if light_analysis is not None:
            transform = light_analysis.analysis(weights)
    latent = analysis(transform, pad_rgb(rgb, config.downsampling), config.downsampling, config.latent_dim,
                      margin=tile_margin(config), margins=split_margins(config))
    return np.ascontiguousarray(latent[0].transpose(1, 2, 0))


def quantize_latent(weights: LoadedWeights, latent: np.ndarray, num_stages: int, effort: int = 1) -> np.ndarray:
    """(grid_h, grid_w, M) float32 latent -> (num_stages, grid_h, grid_w) int64 indices: greedy residual
    VQ at ``effort`` 0 and 1, a rate-aware beam search above (:mod:`vqz.codec.search`)."""
    if effort in (LIGHT_EFFORT, 1):
        return quantize(latent, weights.codebooks, num_stages)
    from vqz.codec.search import search_indices

    return search_indices(weights, latent, num_stages, effort)


def encode_indices(weights: LoadedWeights, rgb: np.ndarray, num_stages: int, effort: int = 1) -> np.ndarray:
    """(H, W, 3) uint8 -> (num_stages, grid_h, grid_w) int64 indices: :func:`encode_latent` (light at effort 0),
    :func:`quantize_latent`."""
    return quantize_latent(weights, encode_latent(weights, rgb, light=effort == LIGHT_EFFORT), num_stages, effort)


def synthesize(weights: LoadedWeights, indices: np.ndarray, synthesis: Transform | None = None) -> np.ndarray:
    """(S', grid_h, grid_w) indices -> the padded image (H', W', 3) uint8 (tiled when large), by the
    model's synthesis or by ``synthesis`` (a realistic or a light one of the same model, :mod:`vqz.codec.realism`,
    :mod:`vqz.codec.light`; tiled with its own margins where it has them)."""
    latent = np.ascontiguousarray(dequantize(indices, weights.codebooks).transpose(2, 0, 1)[None])
    transform = synthesis or weights.synthesis
    margins = transform.margins or split_margins(weights.config)
    margin = sum(transform.margins) if transform.margins else tile_margin(weights.config)
    return synthesis_uint8(transform, latent, weights.config.downsampling, margin=margin, margins=margins)


def render(weights: LoadedWeights, indices: np.ndarray, height: int, width: int,
           synthesis: Transform | None = None) -> np.ndarray:
    """(S', grid_h, grid_w) indices (``UNCODED`` where a part-way stage codes nothing) -> the
    (height, width, 3) uint8 image: :func:`synthesize`, the padding cropped off. What the decoder
    shows for those indices (the encoder uses it to compare candidate files without decoding them)."""
    padded = synthesize(weights, indices, synthesis)  # (H', W', 3)
    (left, _, top, _), _ = compute_padding(height, width, min_div=weights.config.downsampling)
    return np.ascontiguousarray(padded[top : top + height, left : left + width])


def encode_array(weights: LoadedWeights, rgb: np.ndarray, quality: int,
                 alpha: np.ndarray | None = None, effort: int = 1, metadata: Metadata | None = None) -> tuple[bytes, EncodeStats]:
    """(H, W, 3) uint8 (+ optional (H, W) uint8 alpha, coded losslessly) -> ``.vqz`` bytes and statistics.

    ``effort``: 1 (greedy quantizer) .. ``vqz.codec.search.EFFORT_LEVELS[-1]`` (slower encoder-side
    search for better indices; the decoder and format are unchanged); ``metadata``: EXIF, XMP and ICC
    chunks the file carries."""
    data, stats, _, _ = encode_array_indices(weights, rgb, quality, alpha, effort, metadata=metadata)
    return data, stats


def encode_array_indices(weights: LoadedWeights, rgb: np.ndarray, quality: int,
                         alpha: np.ndarray | None = None, effort: int = 1, keep_latent: bool = False,
                         stages: int | None = None,
                         metadata: Metadata | None = None) -> tuple[bytes, EncodeStats, np.ndarray, np.ndarray | None]:
    """:func:`encode_array` (``effort`` as there), the (quality, grid_h, grid_w) indices it coded and,
    with ``keep_latent``, the (grid_h, grid_w, M) float32 latent they quantize (rate control codes
    part-way stages from them); else None, and the latent is freed before the entropy coding
    (133 MB at 8K, which would add to the coder's peak). ``stages``: code that many stages and no
    residual layer instead of the level's plan (a stage-only file whose header says ``quality``:
    rate control encodes every stage once and repacks prefixes)."""
    from vqz.codec.search import check_effort

    effort = check_effort(effort)
    levels = quality_range(weights)
    if quality not in levels:
        raise ImageError(f"quality must be in {levels.start}..{levels.stop - 1}, got {quality}")
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or 0 in rgb.shape:
        raise ImageError(f"expected a non-empty (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
    height, width = rgb.shape[:2]
    if alpha is not None and (alpha.shape != (height, width) or alpha.dtype != np.uint8):
        raise ImageError(f"alpha must be a ({height}, {width}) uint8 array, got {alpha.shape} {alpha.dtype}")
    plan = level_plan(weights, quality) if stages is None else LevelPlan(stages)
    if not 1 <= plan.stages <= weights.config.num_stages:
        raise ImageError(f"stages must be in 1..{weights.config.num_stages}, got {plan.stages}")
    latent = encode_latent(weights, rgb, light=effort == LIGHT_EFFORT)
    indices = quantize_latent(weights, latent, plan.stages, effort)  # (stages, gh, gw)
    if not keep_latent:
        latent = None
    payloads, estimated = [], []
    for s, activity in enumerate(stage_activities(weights, indices)):
        payloads.append(weights.entropy.encode_plane(indices[s], s, indices[:s], activity=activity))
        estimated.append(weights.entropy.estimate_bits(indices[s], s, indices[:s], activity=activity))
    grid_h, grid_w = indices.shape[1:]
    header = Header(weights.model_id, weights.weights_hash, width, height, quality, grid_h, grid_w)
    fixed = [indices[0].size * math.log2(weights.config.codebook_size)] * plan.stages
    alpha_payload = None if alpha is None else encode_alpha(np.ascontiguousarray(alpha))
    stats = EncodeStats([8 * len(p) for p in payloads], estimated, fixed)
    residual = None
    if plan.residual_step is not None:
        residual, postfilter = residual_coding(weights, rgb, indices, plan.residual_step)
        header = replace(header, postfilter=postfilter)
    elif stages is None:
        header = replace(header, postfilter=stage_postfilter_ref(weights, rgb, indices))
    chunks = metadata.chunks() if metadata else {}
    return pack(header, payloads, alpha_payload, residual=residual, **chunks), stats, indices, latent


def stage_postfilter_ref(weights: LoadedWeights, rgb: np.ndarray, indices: np.ndarray,
                         decoded: np.ndarray | None = None, stages: float | None = None) -> PostFilterRef | None:
    """The post-filter reference of a stage-only file of ``indices`` ((S, gh, gw), S <= ``PURE_LEVELS``)
    for the (H, W, 3) uint8 ``rgb``: the default filter at :func:`vqz.codec.levels.stage_strength` of
    ``stages`` (default S; rate control passes a fractional count for a part-way last stage) where it
    lowers the squared error of ``decoded`` (= :func:`render` of the indices, rendered here if None),
    else None, also without a default filter trained on the stage-only levels (then nothing is rendered)."""
    from vqz.codec.postfilter import choose_postfilter, sample_rows, stage_postfilter

    if indices.shape[0] > PURE_LEVELS or stage_postfilter() is None:
        return None
    strength = stage_strength(indices.shape[0] if stages is None else stages)
    if decoded is None:
        height, width = rgb.shape[:2]
        windows = sample_rows(height, width)
        if windows is not None:  # a large image: decide from row windows, not a second full synthesis
            decoded = np.concatenate([render_rows(weights, indices, height, width, r0, r1) for r0, r1 in windows])
            return choose_postfilter(rgb, decoded, strength, stage_only=True, rows=windows)
        decoded = render(weights, indices, height, width)
    return choose_postfilter(rgb, decoded, strength, stage_only=True)


def render_rows(weights: LoadedWeights, indices: np.ndarray, height: int, width: int, r0: int, r1: int) -> np.ndarray:
    """Rows ``r0 .. r1 - 1`` of :func:`render` (``(r1 - r0, width, 3)`` uint8): the latent rows they need plus the
    synthesis' context margins, synthesised alone (the same values as in the whole image). With split graphs
    the full-resolution layers run on the rows and a 2-cell margin only (:func:`split_synthesis_uint8`)."""
    d = weights.config.downsampling
    (left, _, top, _), _ = compute_padding(height, width, min_div=d)
    split = weights.synthesis.split
    if split is not None:
        y0, y1 = (r0 + top) // d, -(-(r1 + top) // d)
        latent_margin, pixel_margin = margins = split_margins(weights.config)
        a, b = max(0, y0 - latent_margin - pixel_margin), min(indices.shape[1], y1 + latent_margin + pixel_margin)
        latent = np.ascontiguousarray(dequantize(indices[:, a:b], weights.codebooks).transpose(2, 0, 1)[None])
        padded = split_synthesis_uint8(split, latent, d, margins, rows=(y0 - a, y1 - a))
        start = r0 + top - y0 * d
        return np.ascontiguousarray(padded[start : start + r1 - r0, left : left + width])
    margin = tile_margin(weights.config)
    c0 = max(0, (r0 + top) // d - margin)
    c1 = min(indices.shape[1], -(-(r1 + top) // d) + margin)
    padded = synthesize(weights, np.ascontiguousarray(indices[:, c0:c1]))
    start = r0 + top - c0 * d
    return np.ascontiguousarray(padded[start : start + r1 - r0, left : left + width])


def whole_stage_activity(weights: LoadedWeights, indices: np.ndarray, whole: int) -> np.ndarray | None:
    """(S', gh, gw) indices -> the (gh, gw) int64 latent activity of their first ``whole`` stages (the
    residual layer's contexts; a part-way last stage does not count), or None without stage context tables."""
    stages = weights.entropy.stages
    return None if stages is None else prefix_activity(stages.context_codebooks, indices[:whole])


def residual_layer(weights: LoadedWeights, rgb: np.ndarray, indices: np.ndarray, step: float,
                   base: np.ndarray | None = None) -> bytes:
    """The residual layer payload of a luma ``step`` for (H, W, 3) uint8 ``rgb`` over the whole stages
    ``indices`` (S', gh, gw); ``base`` = :func:`render` of them if already known."""
    return residual_coding(weights, rgb, indices, step, base, postfilter=False)[0]


def residual_coding(weights: LoadedWeights, rgb: np.ndarray, indices: np.ndarray, step: float,
                    base: np.ndarray | None = None, postfilter: bool = True) -> tuple[bytes, PostFilterRef | None]:
    """:func:`residual_layer`, and with ``postfilter`` the reference to the default post-filter at
    strength ``step`` (:mod:`vqz.codec.postfilter`) when filtering the image this file decodes to
    lowers its squared error against ``rgb``; else None (also when no post-filter is installed)."""
    from vqz.codec.residual import ResidualParams, encode_levels, quantize_residual, render_residual

    if weights.config.downsampling != 8:
        raise ImageError(f"model {weights.model_id} cannot carry a residual layer (its latent cells are not 8x8 blocks)")
    height, width = rgb.shape[:2]
    activity = whole_stage_activity(weights, indices, indices.shape[0])  # before the synthesis: a lower peak
    own_base = base is None  # then the decoded image may overwrite it (at 8K: 100 MB less at the peak)
    if own_base:
        base = render(weights, indices, height, width)
    (left, _, top, _), _ = compute_padding(height, width, min_div=8)
    params = ResidualParams(step, RESIDUAL_CHROMA, RESIDUAL_OFFSET, tilt=RESIDUAL_TILT)
    levels = quantize_residual(rgb, base, top, left, indices.shape[1:], params, RESIDUAL_ROUNDING)
    payload = encode_levels(levels, params, activity)
    if not postfilter:
        return payload, None
    from vqz.codec.postfilter import choose_postfilter

    decoded = render_residual(base, levels, params, top, left, out=base if own_base else None)
    del levels, base, activity  # (at 8K: 200 MB of coefficients) the filter's check needs only the images
    return payload, choose_postfilter(rgb, decoded, step)


def decode_indices(weights: LoadedWeights, header: Header, payloads: list[bytes], stages: int | None = None) -> np.ndarray:
    """Entropy-decode the first ``stages`` payloads -> (stages, grid_h, grid_w) int64.

    When the last payload is decoded and the header says it is part-way (``coded_cells`` in priority
    order, or the cells of its block ``mask``), the cells it does not code hold ``UNCODED`` (-1): they
    add no code vector.
    """
    config = weights.config
    if len(payloads) > config.num_stages:
        raise FormatError(f"file has {len(payloads)} stages, model {weights.model_id} has {config.num_stages}")
    if (header.grid_height, header.grid_width) != grid_shape(weights, header.height, header.width):
        raise FormatError("latent grid size does not match the image size")
    if not payloads:
        raise FormatError("file has no payload")
    use = len(payloads) if stages is None else max(1, min(stages, len(payloads)))
    planes = np.zeros((use, header.grid_height, header.grid_width), dtype=np.int64)
    latent = running_latent(weights, planes.shape[1:])
    for s in range(use):  # stage s is coded given stages 0..s-1
        last = s == len(payloads) - 1
        coded = header.coded_cells if last and header.mask is None else None
        cells = None
        if last and header.mask is not None:
            cells = mask_cells(header.mask, header.grid_height, header.grid_width)
        activity = latent.activity() if latent is not None and s else None
        planes[s] = weights.entropy.decode_plane(payloads[s], s, header.grid_height, header.grid_width, planes[:s],
                                                 coded, activity, cells=cells)
        if latent is not None and s + 1 < use:
            latent.add(planes[s])
    return planes


def running_latent(weights: LoadedWeights, shape: tuple[int, int]) -> PrefixLatent | None:
    """An empty running latent of a (gh, gw) grid for the stage contexts, or None (model without them)."""
    stages = weights.entropy.stages
    return None if stages is None else stages.running_latent(shape)


def stage_activities(weights: LoadedWeights, indices: np.ndarray) -> Iterator[np.ndarray | None]:
    """(q, gh, gw) indices -> for each stage ``s`` in turn, the activity of stages ``0..s-1``
    (None for stage 0, or without stage context tables), one codebook gather per stage."""
    latent = running_latent(weights, indices.shape[1:])
    for s in range(indices.shape[0]):
        yield latent.activity() if latent is not None and s else None
        if latent is not None and s + 1 < indices.shape[0]:
            latent.add(indices[s])


def decode_bytes(weights: LoadedWeights, data: bytes, stages: int | None = None,
                 max_pixels: int = DEFAULT_MAX_DECODE_PIXELS, realism: float = 0.0, fast: bool = False) -> np.ndarray:
    """``.vqz`` bytes -> (H, W, 3) uint8 RGB (optionally from only the first ``stages`` stages)."""
    return decode_image(weights, data, stages, max_pixels, realism, fast)[0]


def decode_image(weights: LoadedWeights, data: bytes, stages: int | None = None,
                 max_pixels: int = DEFAULT_MAX_DECODE_PIXELS,
                 realism: float = 0.0, fast: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """``.vqz`` bytes -> ((H, W, 3) uint8 RGB, (H, W) uint8 alpha or None): :func:`decode_parsed`."""
    rgb, alpha, _, _ = decode_parsed(weights, unpack_file(data), stages, max_pixels, realism, fast)
    return rgb, alpha


def decode_parsed(weights: LoadedWeights, parsed: VqzFile, stages: int | None = None,
                  max_pixels: int = DEFAULT_MAX_DECODE_PIXELS,
                  realism: float = 0.0, fast: bool = False) -> tuple[np.ndarray, np.ndarray | None, float, bool]:
    """A parsed ``.vqz`` file -> ((H, W, 3) uint8 RGB, (H, W) uint8 alpha or None, the realism used, whether
    the light synthesis was used).

    Files declaring more than ``max_pixels`` pixels are refused before any decoding. ``realism``
    (in [0, 1], from :func:`vqz.codec.realism.check_realism`): 0 is the model's own decoder; above,
    the model's realistic synthesis where one is installed and the file has no residual layer in use
    (:mod:`vqz.codec.realism`); otherwise 0 is used (:func:`realism_used`). ``fast`` (with realism 0):
    the model's light synthesis, without the post-filter, where one is installed and the file has no
    residual layer in use (:mod:`vqz.codec.light`, :func:`fast_used`); otherwise the model's own decoder.
    """
    header, payloads = parsed.header, parsed.payloads
    if header.width * header.height > max_pixels:
        raise FormatError(f"{header.width}x{header.height} image exceeds the decoder's cap of {max_pixels} pixels")
    if header.model_id != weights.model_id or header.model_hash != weights.weights_hash:
        raise FormatError(f"file was made by model {header.model_id} ({header.model_hash.hex()}), not {weights.model_id}")
    indices = decode_indices(weights, header, payloads, stages)
    whole = indices.shape[0] == len(payloads)  # fewer stages: the residual layer and the post-filter do not apply
    realism = realism_used(weights, parsed.residual is not None and whole, realism)
    fast = not realism and fast_used(weights, parsed.residual is not None and whole, fast)
    synthesis = realistic_for(weights).synthesis(weights, realism, indices.shape[0]) if realism else None
    if fast:
        synthesis = light_for(weights).synthesis(weights)
    rgb = render(weights, indices, header.height, header.width, synthesis)
    if parsed.residual is not None and whole:
        rgb = _add_residual(weights, header, parsed.residual, indices, rgb)
    if header.postfilter is not None and whole and realism < 1.0 and not fast:
        from vqz.codec.postfilter import postfilter_for_ref

        filtered = postfilter_for_ref(header.postfilter).apply(rgb, header.postfilter.strength)
        rgb = blend_postfilter(rgb, filtered, realism)
    alpha = None if parsed.alpha is None else decode_alpha(parsed.alpha, header.height, header.width)
    return rgb, alpha, realism, fast


def realism_used(weights: LoadedWeights, has_residual: bool, realism: float) -> float:
    """The realism a decode runs at: ``realism`` where it applies (no residual layer added,
    :func:`vqz.codec.realism.applies`) and ``weights`` has an installed realistic synthesis, else 0."""
    if realism <= 0.0 or not applies(has_residual) or realistic_for(weights) is None:
        return 0.0
    return realism


def fast_used(weights: LoadedWeights, has_residual: bool, fast: bool) -> bool:
    """Whether a decode asked to be ``fast`` runs the light synthesis: where it applies (no residual layer
    added, :func:`vqz.codec.light.applies`) and ``weights`` has an installed light synthesis."""
    return bool(fast) and light_applies(has_residual) and light_for(weights) is not None


def _add_residual(weights: LoadedWeights, header: Header, payload: bytes, indices: np.ndarray, base: np.ndarray) -> np.ndarray:
    from vqz.codec.residual import decode_residual

    if weights.config.downsampling != 8:
        raise FormatError(f"file has a residual layer, model {weights.model_id} cannot carry one")
    whole = indices.shape[0] - (header.coded_cells is not None)
    activity = whole_stage_activity(weights, indices, whole)
    (left, _, top, _), _ = compute_padding(header.height, header.width, min_div=8)
    return decode_residual(payload, base, top, left, (header.grid_height, header.grid_width), activity)
