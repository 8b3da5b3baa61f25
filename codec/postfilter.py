"""The decoder's post-filter at run time: installed filters, and applying one to a decoded image.

A post-filter is a small convolutional network (trained by :mod:`vqz.training.train_postfilter`,
shipped by ``vqz export-postfilter``) that reduces coding artifacts of a decoded image. It is
its own weights file beside the models (``<id>.safetensors`` with metadata ``postfilter_id``,
tensors ``pf.*``) and graph (``<id>.postfilter.onnx``, bound to the weights by SHA-256).

A file asks for a filter in its header (:class:`PostFilterRef`: the first 8 bytes of the
filter weights' SHA-256 and a strength); the decoder applies exactly that filter, so a file
decodes the same for as long as its filter is installed, whatever filter is the default
later. The encoder sets the reference only where filtering lowers the squared error against
the source image, so a filtered file is never worse than the unfiltered one: on residual
levels with :data:`DEFAULT_POSTFILTER_ID`, on stage-only levels with :data:`STAGE_POSTFILTER_ID`
(a filter trained on them too: its config says ``stage_levels``).

The filter runs on row bands of about ``BAND_PIXELS`` pixels with ``MARGIN_ROWS`` rows of context above
and below (more than the network's receptive radius), so memory stays bounded on large images
and every band computes exactly what one pass over the whole image would. A band is padded (edge
rows and columns) to the filter's ``multiple`` (2, or 4 for a filter with a quarter-resolution
branch, whose bands also start on rows that are multiples of 4, so its stride-2 grid is the whole
image's).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vqz.bitstream.container import PostFilterRef
from vqz.errors import ModelError

__all__ = ["BAND_PIXELS", "DEFAULT_POSTFILTER_ID", "MARGIN_ROWS", "STAGE_POSTFILTER_ID", "PostFilter", "PostFilterRef", "choose_postfilter", "input_multiple", "sample_rows",
           "default_postfilter", "installed_postfilters", "postfilter_for_ref", "stage_postfilter"]

#: The filter the encoder offers on residual levels. On the held-out photos the 48-channel vqz-pf4 gains
#: +0.54 to +0.65 dB at levels 5-10 against vqz-pf3's +0.45 to +0.62, and the same from level 11 up
#: (MODEL_CARD-vqz-pf4.md). vqz-pf1 and vqz-pf3 stay installed for their files.
DEFAULT_POSTFILTER_ID = "vqz-pf4"
#: The filter the encoder offers on stage-only levels (it must have been trained on them: config
#: ``stage_levels``). On the held-out photos vqz-pf4 gains +0.32 to +0.46 dB there against vqz-pf2's
#: +0.24 to +0.36 (MODEL_CARD-vqz-pf4.md); vqz-pf2 stays installed for its files.
STAGE_POSTFILTER_ID = "vqz-pf4"
#: Pixels filtered per pass (a band of whole rows, at least ``MIN_BAND_ROWS``: at 8K 136 rows, a
#: Kodak image in one pass), and rows of context on each side (even: the filter works on 2x2 blocks).
BAND_PIXELS = 1 << 20
MIN_BAND_ROWS = 32
MARGIN_ROWS = 16
#: Images above this many pixels decide a file's post-filter from ``SAMPLE_WINDOWS`` windows of
#: whole rows (about ``SAMPLE_PIXELS`` pixels in all) instead of a synthesis of the whole image. The filter
#: pays on 183 of 184 held-out (photo, stage-only level) pairs (the other loses 0.06 of a gray level squared per
#: pixel): a megapixel in four windows decides as well as two and costs 0.9 s less at 13 MP.
SAMPLE_PIXELS = 1 << 20
SAMPLE_WINDOWS = 4


def sample_rows(height: int, width: int) -> list[tuple[int, int]] | None:
    """Row windows ``(r0, r1)`` (evenly spaced, ``SAMPLE_WINDOWS`` of them, ``SAMPLE_PIXELS`` pixels in all, 8-row
    aligned) that stand for an image of ``height`` x ``width`` in the encoder's post-filter decision, or None when the
    image is small enough to decide on the whole of it."""
    if height * width <= 2 * SAMPLE_PIXELS:
        return None
    rows = max(64, SAMPLE_PIXELS // SAMPLE_WINDOWS // width // 8 * 8)
    if rows * SAMPLE_WINDOWS * 2 > height:
        return None
    gap = (height - rows * SAMPLE_WINDOWS) // SAMPLE_WINDOWS
    return [(r0, r0 + rows) for r0 in (gap // 2 // 8 * 8 + i * (rows + gap) // 8 * 8 for i in range(SAMPLE_WINDOWS))]


class PostFilter:
    """One installed post-filter: ``filter_id``, ``filter_hash`` (8 bytes) and :meth:`apply`."""

    def __init__(self, path: Path) -> None:
        from safetensors import safe_open
        from safetensors.numpy import load_file

        from vqz.codec.engine import Transform, graph_path

        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        with safe_open(str(path), framework="numpy") as handle:
            metadata = dict(handle.metadata() or {})
        if "postfilter_id" not in metadata:
            raise ModelError(f"{path} is not a post-filter weights file")
        self.path = path
        self.filter_id = metadata["postfilter_id"]
        #: whether it was trained on the stage-only levels too (their strengths, vqz.codec.levels.postfilter_strength)
        config = json.loads(metadata.get("config", "{}"))
        self.stage_levels = bool(config.get("stage_levels", False))
        #: band sides are padded to a multiple of this (4 with a quarter-resolution branch)
        self.multiple = input_multiple(config.get("quarter_channels", 0))
        self.filter_hash = bytes.fromhex(digest[:16])
        # without ONNX Runtime's arena, which would keep the filter's peak on top of the transforms' (8K
        # encode at q6 peaked at 2.09 GiB with it), at no measurable cost in speed for this small graph
        self._graph = Transform(graph_path(path, "postfilter"), load_file(str(path)), "postfilter", digest,
                                memory_arena=False, input_dtype=np.uint8)

    def bands(self, rgb: np.ndarray, strength: float) -> Iterator[tuple[int, int, np.ndarray]]:
        """(H, W, 3) uint8 decoded image -> ``(r0, r1, rows)``: rows ``r0..r1 - 1`` filtered at ``strength``
        ((r1 - r0, W, 3) uint8), top to bottom."""
        height, width = rgb.shape[:2]
        m = self.multiple
        pad_w = -width % m
        level = np.array([strength], dtype=np.float32)
        rows = max(m, band_rows(width) // m * m)
        for r0 in range(0, height, rows):
            r1 = min(height, r0 + rows)
            lo, hi = max(0, r0 - MARGIN_ROWS), min(height, r1 + MARGIN_ROWS)
            band = rgb[lo:hi]
            pad_h = -(hi - lo) % m
            if pad_h or pad_w:
                band = np.pad(band, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
            yield r0, r1, self._graph(band, strength=level)[r0 - lo : r1 - lo, :width]

    def apply(self, rgb: np.ndarray, strength: float) -> np.ndarray:
        """(H, W, 3) uint8 decoded image -> (H, W, 3) uint8 filtered at ``strength`` (a new array)."""
        out = np.empty_like(rgb)
        for r0, r1, rows in self.bands(rgb, strength):
            out[r0:r1] = rows
        return out

    def gain(self, source: np.ndarray, decoded: np.ndarray, strength: float) -> int:
        """How much filtering ``decoded`` at ``strength`` lowers its summed squared error against the
        (H, W, 3) uint8 ``source`` (negative: filtering makes it worse), band by band."""
        gain = 0
        for r0, r1, rows in self.bands(decoded, strength):
            ref = source[r0:r1].astype(np.int32)
            gain += int(np.square(decoded[r0:r1].astype(np.int32) - ref).sum(dtype=np.int64))
            gain -= int(np.square(rows.astype(np.int32) - ref).sum(dtype=np.int64))
        return gain


def input_multiple(quarter_channels: int) -> int:
    """What a filter's input height and width must be multiples of: 2 (its 2x2 blocks), 4 with a
    quarter-resolution branch of ``quarter_channels`` > 0 (its stride-2 convolution on the blocks)."""
    return 4 if quarter_channels else 2


def band_rows(width: int) -> int:
    """Rows per band for an image ``width`` pixels wide (even)."""
    return max(MIN_BAND_ROWS, BAND_PIXELS // max(1, width)) // 2 * 2


@functools.lru_cache(maxsize=1)
def _installed() -> tuple[PostFilter, ...]:
    from vqz.codec.registry import weights_files

    found: dict[bytes, PostFilter] = {}
    for _, path in weights_files("postfilter_id"):
        pf = PostFilter(path)
        found.setdefault(pf.filter_hash, pf)
    return tuple(found.values())


def installed_postfilters() -> list[PostFilter]:
    """Every installed post-filter (``VQZ_MODEL_PATH`` folders before the bundled ones)."""
    return list(_installed())


def postfilter_for_ref(ref: PostFilterRef) -> PostFilter:
    """The installed filter a file asks for, or :class:`ModelError` naming it."""
    for pf in _installed():
        if pf.filter_hash == ref.filter_hash:
            return pf
    have = ", ".join(f"{pf.filter_id} ({pf.filter_hash.hex()})" for pf in _installed()) or "none"
    raise ModelError(f"file needs post-filter {ref.filter_hash.hex()}, which is not installed (installed: {have})")


def default_postfilter() -> PostFilter | None:
    """The encoder's filter (:data:`DEFAULT_POSTFILTER_ID`), or None when it is not installed."""
    for pf in _installed():
        if pf.filter_id == DEFAULT_POSTFILTER_ID:
            return pf
    return None


def stage_postfilter() -> PostFilter | None:
    """The encoder's filter for stage-only levels (:data:`STAGE_POSTFILTER_ID`, trained on them), or None
    when it is not installed."""
    for pf in _installed():
        if pf.filter_id == STAGE_POSTFILTER_ID and pf.stage_levels:
            return pf
    return None


def choose_postfilter(source: np.ndarray, decoded: np.ndarray, strength: float,
                      stage_only: bool = False, rows: list[tuple[int, int]] | None = None) -> PostFilterRef | None:
    """The encoder's choice: a reference to the default filter (:func:`stage_postfilter` for a
    ``stage_only`` file) at ``strength`` (rounded to what a file stores) when it lowers the squared
    error of ``decoded`` against ``source`` ((H, W, 3) uint8 both), else None (also when that filter
    is not installed). A large image is judged on the row windows of :func:`sample_rows`; ``rows``: those
    windows when ``decoded`` holds only them, one after the other."""
    pf = stage_postfilter() if stage_only else default_postfilter()
    if pf is None:
        return None
    ref = PostFilterRef.quantized(pf.filter_hash, strength)
    if rows is None:
        rows = sample_rows(*source.shape[:2])
        if rows is not None:
            decoded = np.concatenate([decoded[r0:r1] for r0, r1 in rows])
    if rows is not None:
        source = np.concatenate([source[r0:r1] for r0, r1 in rows])
    return ref if pf.gain(source, decoded, ref.strength) > 0 else None
