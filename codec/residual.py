"""The pixel residual layer: what the residual-VQ stages leave, coded as 8x8 DCT coefficients.

The learned transforms cap what the stages can show (the decoder fed the unquantized latent is
within ~0.6 dB of 16 stages), so the high quality levels add a second, classic layer on top of
a few stages: the residual ``rgb - base`` (``base`` = the decoded stages, uint8) in YCbCr
(BT.601, full range), an orthonormal 8x8 DCT per block, a dead-zone uniform quantizer, and an
adaptive entropy model whose contexts come from integers the decoder already has.

Invariants shared by encoder and decoder (docs/FORMAT.md, "Residual layer"):

* blocks tile the padded frame of the latent grid: block ``(i, j)`` is latent cell ``(i, j)``
  (``downsampling == 8``), pixels ``[8i - top, 8i - top + 8) x [8j - left, 8j - left + 8)`` of the
  image, ``(left, top)`` the centred padding of :func:`vqz.codec.padding.compute_padding`; pixels
  outside the image are coded (the encoder fills them as it likes) and cropped by the decoder;
* coefficients ``k`` are integers in ``[-MAX_LEVEL, MAX_LEVEL]``; frequency ``(u, v)`` of channel ``c``
  (Y, Cb, Cr) has the step ``step_c (1 + tilt (u + v) / 14)``, ``step_c`` = ``step`` (Y) or
  ``step * chroma`` (Cb, Cr); the decoder rebuilds ``sign(k) max(|k| - offset, 0) step_c(u, v)``;
* the coefficients are coded channel by channel, then band by band (band = ``u + v`` of the
  frequency ``(u, v)``, 0..14), each band over the whole image; within a band, the blocks are
  grouped by a context class computed in integers from what is decoded already:
  ``lower`` = the sum of ``|k|`` of the block's lower bands (same channel), ``s = 2 lower(block) +
  sum of lower over its 4 neighbours`` (0 outside the grid), ``level(s)`` = the number of
  ``LOWER_EDGES`` at most ``s``, and ``activity class`` = the number of the layer's three
  ``activity_edges`` at most the block's latent activity after the file's stages
  (:func:`vqz.codec.stage_context.prefix_activity`, int64; 0 without stage context tables);
  ``class = level * 4 + activity class``. Per class present, in ascending order: its scale index
  (0: every coefficient of the class is 0 and none is coded; else a two-sided geometric law
  ``P(k) ~ (RATIOS[index - 1] / 2**32) ** |k|`` over ``[-MAX_LEVEL, MAX_LEVEL]``: :func:`_frequencies`),
  coded as the difference to the class's index in the last band where the class was present (same
  channel; 0 before the first), then its coefficients, blocks in raster order, frequencies in
  row-major order within the band;
* every probability table is built from integers (:data:`RATIOS`) by integer arithmetic and one
  exact division, so the entropy decoding is bit-identical on every machine.

Payload: ``u16`` step * 16, ``u8`` chroma multiplier * 16, ``u8`` reconstruction offset * 64, ``u8``
frequency tilt * 16, three ULEB128 activity edges (ascending), then the 32-bit words of one
constriction range coder.
"""

from __future__ import annotations

import functools
import struct

import constriction
import numpy as np

from vqz.bitstream.container import ByteReader, write_varint
from vqz.errors import FormatError

__all__ = ["BLOCK", "MIN_STEP", "ResidualParams", "decode_levels", "decode_residual", "encode_levels", "encode_residual",
           "quantize_residual", "render_residual"]

BLOCK = 8
#: Largest |coefficient|: with a luma step >= MIN_STEP and rounding offset <= 0.5 no coefficient of a
#: residual of 8-bit images (|Y|, |Cb|, |Cr| <= 255, so |DCT coefficient| <= 8 * 255) exceeds it.
MAX_LEVEL = 255
MIN_STEP = 8.0
NUM_BANDS = 2 * BLOCK - 1
LOWER_EDGES = np.array([1, 3, 7, 15, 31], dtype=np.int64)
ACTIVITY_CLASSES = 4
NUM_CLASSES = (len(LOWER_EDGES) + 1) * ACTIVITY_CLASSES
#: round(2**32 * exp(-1 / b)) for the scales b = 2 ** ((i - 1) / 4 - 4), i = 1..48 (1/16 .. 215 steps).
RATIOS = (483, 6163, 52418, 317125, 1440801, 5145013, 15004422, 36905875, 78665070, 148652826, 253857248,
          398132550, 581260615, 799036310, 1044178424, 1307656790, 1580030169, 1852521207, 2117713904, 2369882518,
          2605029347, 2820730047, 3015876649, 3190386796, 3344923893, 3480652712, 3599040369, 3701703250,
          3790295335, 3866431115, 3931635878, 3987316692, 4034748382, 4075069962, 4109287957, 4138284039,
          4162825044, 4183574096, 4201101925, 4215897841, 4228380000, 4238904802, 4247775344, 4255248918,
          4261543595, 4266843974, 4271306145, 4275061981)
NUM_SCALES = len(RATIOS)
_BAND = np.add.outer(np.arange(BLOCK), np.arange(BLOCK)).ravel()  # (64,) band of each row-major frequency
_BAND_POSITIONS = [np.flatnonzero(_BAND == b) for b in range(NUM_BANDS)]
#: BT.601 full-range RGB -> YCbCr (the offsets cancel in a residual).
_RGB_TO_YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_YCC_TO_RGB = np.linalg.inv(_RGB_TO_YCC)


def _dct_matrix() -> np.ndarray:
    n = np.arange(BLOCK)
    basis = np.cos(np.pi * (2 * n[None, :] + 1) * n[:, None] / (2 * BLOCK)) * np.sqrt(2 / BLOCK)
    basis[0] /= np.sqrt(2)
    return basis  # rows: frequencies; orthonormal


_DCT = _dct_matrix().astype(np.float32)


class ResidualParams:
    """What the decoder needs besides the coefficients: luma step (pixel units, >= MIN_STEP), chroma
    step multiplier (>= 1), reconstruction offset toward zero (in steps, 0..0.5), activity edges, and
    the frequency tilt ``t`` (0..15.9375): band ``b`` of channel ``c`` has the step
    ``step_c * (1 + t * b / 14)`` (coarser high frequencies; 0 = one step for every frequency)."""

    __slots__ = ("step", "chroma", "offset", "edges", "tilt")

    def __init__(self, step: float, chroma: float = 1.25, offset: float = 0.0, edges: tuple[int, int, int] = (0, 0, 0),
                 tilt: float = 0.0):
        self.step = round(step * 16) / 16
        self.chroma = round(chroma * 16) / 16
        self.offset = round(offset * 64) / 64
        self.edges = tuple(int(e) for e in edges)
        self.tilt = round(tilt * 16) / 16
        if not MIN_STEP <= self.step < 4096:
            raise ValueError(f"residual step must be in {MIN_STEP}..4095, got {step}")
        if not 1 <= self.chroma < 16:
            raise ValueError(f"chroma step multiplier must be in 1..15, got {chroma}")
        if not 0 <= self.offset <= 0.5:
            raise ValueError(f"reconstruction offset must be in 0..0.5, got {offset}")
        if not 0 <= self.tilt < 16:
            raise ValueError(f"frequency tilt must be in 0..15.9375, got {tilt}")
        if len(self.edges) != ACTIVITY_CLASSES - 1 or any(e < 0 for e in self.edges) or list(self.edges) != sorted(self.edges):
            raise ValueError("activity edges must be 3 ascending non-negative integers")

    def steps(self) -> list[np.ndarray]:
        """Per channel (Y, Cb, Cr), the (64,) float32 step of each row-major frequency."""
        tilt = (1 + self.tilt * _BAND / (NUM_BANDS - 1)).astype(np.float32)
        return [np.float32(self.step * (self.chroma if c else 1.0)) * tilt for c in range(3)]

    def pack(self) -> bytes:
        head = struct.pack("<HBBB", round(self.step * 16), round(self.chroma * 16), round(self.offset * 64),
                           round(self.tilt * 16))
        return head + b"".join(write_varint(e) for e in self.edges)

    @classmethod
    def unpack(cls, data: bytes) -> tuple[ResidualParams, int]:
        if len(data) < 5:
            raise FormatError("residual layer is truncated")
        step16, chroma16, offset64, tilt16 = struct.unpack("<HBBB", data[:5])
        reader = ByteReader(data, len(data))
        reader.take(5, "residual layer")
        # int64 activities: up to 10 bytes
        edges = tuple(reader.varint("residual layer activity edges", 10) for _ in range(ACTIVITY_CLASSES - 1))
        try:
            return cls(step16 / 16, chroma16 / 16, offset64 / 64, edges, tilt16 / 16), reader.pos
        except ValueError as error:
            raise FormatError(f"residual layer: {error}") from None


# ------------------------------------------------------------------ probability tables (integers only)
@functools.lru_cache(maxsize=None)
def _frequencies(index: int) -> np.ndarray:
    """(2 MAX_LEVEL + 1,) int64 frequencies of scale ``index`` (1..NUM_SCALES), symbol ``k + MAX_LEVEL``."""
    ratio, value, half = RATIOS[index - 1], 1 << 40, []
    for _ in range(MAX_LEVEL + 1):
        half.append(max(value, 1))
        value = (value * ratio) >> 32
    half_arr = np.array(half, dtype=np.int64)
    return np.concatenate([half_arr[:0:-1], half_arr])


@functools.lru_cache(maxsize=None)
def _coefficient_model(index: int):
    freq = _frequencies(index)
    return constriction.stream.model.Categorical(freq / freq.sum(), perfect=False)


@functools.lru_cache(maxsize=None)
def _scale_model():
    """Differences of consecutive scale indices, -NUM_SCALES..NUM_SCALES: 4096 >> |d| (at least 1)."""
    d = np.abs(np.arange(-NUM_SCALES, NUM_SCALES + 1))
    freq = np.maximum(4096 >> np.minimum(d, 12), 1).astype(np.int64)
    return constriction.stream.model.Categorical(freq / freq.sum(), perfect=False)


@functools.lru_cache(maxsize=None)
def _code_lengths() -> np.ndarray:
    """(NUM_SCALES + 1, MAX_LEVEL + 1) float64: bits of a coefficient of magnitude m under index i (encoder only)."""
    out = np.zeros((NUM_SCALES + 1, MAX_LEVEL + 1))
    out[0] = np.inf
    out[0, 0] = 0.0
    for i in range(1, NUM_SCALES + 1):
        freq = _frequencies(i).astype(np.float64)
        out[i] = -np.log2(freq[MAX_LEVEL:] / freq.sum())
    return out


# ------------------------------------------------------------------ contexts
def _neighbour_sum(a: np.ndarray) -> np.ndarray:
    s = np.zeros_like(a)
    s[:, 1:] += a[:, :-1]
    s[:, :-1] += a[:, 1:]
    s[1:] += a[:-1]
    s[:-1] += a[1:]
    return s


def _classes(lower: np.ndarray, activity_class: np.ndarray) -> np.ndarray:
    """(gh, gw) int64 class of each block from the (gh, gw) int64 ``lower`` sums and activity classes."""
    level = np.searchsorted(LOWER_EDGES, 2 * lower + _neighbour_sum(lower), side="right")
    return level * ACTIVITY_CLASSES + activity_class


def activity_edges(activity: np.ndarray) -> tuple[int, int, int]:
    """Encoder's choice of the three activity edges: the quartiles of the blocks' activities."""
    values = np.sort(activity.ravel())
    return tuple(int(values[min(len(values) - 1, (len(values) * q) // 4)]) for q in (1, 2, 3))


def _activity_classes(activity: np.ndarray | None, shape: tuple[int, int], edges: tuple[int, int, int]) -> np.ndarray:
    if activity is None:
        return np.zeros(shape, dtype=np.int64)
    return np.searchsorted(np.array(edges, dtype=np.int64), activity, side="right").astype(np.int64)


# ------------------------------------------------------------------ transforms
def _to_blocks(plane: np.ndarray, gh: int, gw: int) -> np.ndarray:
    """(8 gh, 8 gw) -> (gh, gw, 64) row-major blocks."""
    return plane.reshape(gh, BLOCK, gw, BLOCK).transpose(0, 2, 1, 3).reshape(gh, gw, BLOCK * BLOCK)


def _from_blocks(blocks: np.ndarray, gh: int, gw: int) -> np.ndarray:
    return blocks.reshape(gh, gw, BLOCK, BLOCK).transpose(0, 2, 1, 3).reshape(gh * BLOCK, gw * BLOCK)


def _forward(plane: np.ndarray, gh: int, gw: int) -> np.ndarray:
    b = _to_blocks(plane, gh, gw).reshape(gh, gw, BLOCK, BLOCK)
    return np.einsum("ui,hwij,vj->hwuv", _DCT, b, _DCT, optimize=True).reshape(gh, gw, BLOCK * BLOCK)


def _inverse(coefficients: np.ndarray, gh: int, gw: int) -> np.ndarray:
    c = coefficients.reshape(gh, gw, BLOCK, BLOCK)
    return _from_blocks(np.einsum("ui,hwuv,vj->hwij", _DCT, c, _DCT, optimize=True).reshape(gh, gw, -1), gh, gw)


# ------------------------------------------------------------------ coding
#: Block rows transformed at a time (bounds the float temporaries: 64 rows of an 8K image are 47 MB).
STRIP_BLOCKS = 64


def _image_rows(start: int, stop: int, offset: int, size: int) -> np.ndarray:
    """Image indices of padded-frame positions ``start..stop - 1`` (the edge repeated outside the image)."""
    return np.clip(np.arange(start, stop) - offset, 0, size - 1)


def quantize_residual(rgb: np.ndarray, base: np.ndarray, top: int, left: int, grid: tuple[int, int],
                      params: ResidualParams, rounding: float = 0.33) -> list[np.ndarray]:
    """The residual's quantized DCT coefficients (encoder only).

    Args:
        rgb, base: (H, W, 3) uint8 image and what the file's stages decode to.
        top, left: where the image sits in the padded frame of the (gh, gw) ``grid``.
        params: the steps; rounding: dead-zone rounding offset (0.5 = plain rounding).

    Returns:
        Three (gh, gw, 64) int16 planes, Y, Cb, Cr, frequencies row-major, ``|k| <= MAX_LEVEL``.
        The padding of the frame repeats the image's edge residual.
    """
    if not 0 <= rounding <= 0.5:
        raise ValueError(f"rounding offset must be in 0..0.5, got {rounding}")
    gh, gw = grid
    height, width = rgb.shape[:2]
    columns = _image_rows(0, gw * BLOCK, left, width)
    levels = [np.empty((gh, gw, BLOCK * BLOCK), dtype=np.int16) for _ in range(3)]
    for i0 in range(0, gh, STRIP_BLOCKS):
        i1 = min(gh, i0 + STRIP_BLOCKS)
        rows = _image_rows(i0 * BLOCK, i1 * BLOCK, top, height)
        strip = rgb[rows][:, columns].astype(np.float32) - base[rows][:, columns].astype(np.float32)
        for c, step in enumerate(params.steps()):
            coef = _forward(strip @ _RGB_TO_YCC[c].astype(np.float32), i1 - i0, gw)
            k = np.minimum(np.floor(np.abs(coef) / step + np.float32(rounding)), MAX_LEVEL).astype(np.int16)
            levels[c][i0:i1] = k * np.sign(coef).astype(np.int16)
    return levels


def encode_levels(levels: list[np.ndarray], params: ResidualParams, activity: np.ndarray | None) -> bytes:
    """Three (gh, gw, 64) int16 coefficient planes -> the layer's payload.

    ``activity``: (gh, gw) int64 latent activity of the file's whole stages, or None (no stage
    contexts); the payload's activity edges are its quartiles (:func:`activity_edges`).
    """
    gh, gw = levels[0].shape[:2]
    if activity is not None:
        params = ResidualParams(params.step, params.chroma, params.offset, activity_edges(activity), params.tilt)
    act = _activity_classes(activity, (gh, gw), params.edges)
    lengths = _code_lengths()
    encoder = constriction.stream.queue.RangeEncoder()
    for k in levels:
        flat = k.reshape(gh * gw, -1)
        lower = np.zeros((gh, gw), dtype=np.int64)
        predicted = [0] * NUM_CLASSES
        for positions in _BAND_POSITIONS:
            classes = _classes(lower, act).ravel()
            band_k = flat[:, positions].astype(np.int64)
            magnitude = np.abs(band_k)
            hist = np.bincount((classes[:, None] * (MAX_LEVEL + 1) + magnitude).ravel(),
                               minlength=NUM_CLASSES * (MAX_LEVEL + 1)).reshape(NUM_CLASSES, MAX_LEVEL + 1)
            for cls in np.flatnonzero(np.bincount(classes, minlength=NUM_CLASSES)):
                index = 0 if hist[cls, 1:].sum() == 0 else int(np.argmin((lengths[1:] * hist[cls]).sum(1))) + 1
                encoder.encode(np.array([index - predicted[cls] + NUM_SCALES], dtype=np.int32), _scale_model())
                predicted[cls] = index
                if index:
                    symbols = band_k[classes == cls].ravel() + MAX_LEVEL
                    encoder.encode(symbols.astype(np.int32), _coefficient_model(index))
            lower += magnitude.sum(-1).reshape(gh, gw)
    return params.pack() + encoder.get_compressed().astype("<u4").tobytes()


def decode_levels(payload: bytes, grid: tuple[int, int], activity: np.ndarray | None
                  ) -> tuple[ResidualParams, list[np.ndarray]]:
    """Payload -> its parameters and the three (gh, gw, 64) int16 coefficient planes of a (gh, gw) grid."""
    params, pos = ResidualParams.unpack(payload)
    words = payload[pos:]
    if len(words) % 4:
        raise FormatError("residual layer: coder words are not a multiple of 4 bytes")
    gh, gw = grid
    act = _activity_classes(activity, (gh, gw), params.edges)
    decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(words, dtype="<u4").astype(np.uint32))
    levels = []
    try:
        for _ in range(3):
            k = np.zeros((gh * gw, BLOCK * BLOCK), dtype=np.int16)
            lower = np.zeros((gh, gw), dtype=np.int64)
            predicted = [0] * NUM_CLASSES
            for positions in _BAND_POSITIONS:
                classes = _classes(lower, act).ravel()
                for cls in np.flatnonzero(np.bincount(classes, minlength=NUM_CLASSES)):
                    index = predicted[cls] + int(decoder.decode(_scale_model(), 1)[0]) - NUM_SCALES
                    if not 0 <= index <= NUM_SCALES:
                        raise FormatError("residual layer is corrupt (scale index out of range)")
                    predicted[cls] = index
                    if index:
                        rows = np.flatnonzero(classes == cls)
                        values = decoder.decode(_coefficient_model(index), rows.size * positions.size)
                        k[np.ix_(rows, positions)] = values.reshape(rows.size, positions.size) - MAX_LEVEL
                lower += np.abs(k[:, positions]).sum(-1, dtype=np.int64).reshape(gh, gw)
            levels.append(k.reshape(gh, gw, -1))
    except (ValueError, RuntimeError, AssertionError) as error:  # constriction: out of data
        raise FormatError(f"residual layer is corrupt ({error})") from None
    return params, levels


def _strip_residual(levels: list[np.ndarray], params: ResidualParams, i0: int, i1: int) -> np.ndarray:
    """Block rows ``i0..i1 - 1`` of the coefficient planes -> (8 (i1 - i0), 8 gw, 3) float32 RGB residual."""
    gw = levels[0].shape[1]
    out = np.zeros(((i1 - i0) * BLOCK, gw * BLOCK, 3), dtype=np.float32)
    to_rgb = _YCC_TO_RGB.astype(np.float32)
    for c, (k, step) in enumerate(zip(levels, params.steps())):
        k = k[i0:i1].astype(np.float32)
        magnitude = np.maximum(np.abs(k) - np.float32(params.offset), 0) * step
        plane = _inverse(np.copysign(magnitude, k), i1 - i0, gw)
        for channel in range(3):
            out[..., channel] += plane * to_rgb[channel, c]
    return out


def render_residual(base: np.ndarray, levels: list[np.ndarray], params: ResidualParams, top: int, left: int,
                    out: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) uint8 ``base`` + the decoded residual (image at ``top``, ``left`` of the padded frame),
    rounded and clipped -> (H, W, 3) uint8 (into ``out`` if given, which may be ``base`` itself: each
    strip reads its rows of ``base`` before it writes them); a strip of block rows at a time."""
    height, width = base.shape[:2]
    gh = levels[0].shape[0]
    out = np.empty_like(base) if out is None else out
    for i0 in range(0, gh, STRIP_BLOCKS):
        i1 = min(gh, i0 + STRIP_BLOCKS)
        r0, r1 = max(0, i0 * BLOCK - top), min(height, i1 * BLOCK - top)
        if r0 >= r1:
            continue
        residual = _strip_residual(levels, params, i0, i1)
        band = base[r0:r1].astype(np.float32) + residual[r0 + top - i0 * BLOCK : r1 + top - i0 * BLOCK, left : left + width]
        out[r0:r1] = np.clip(np.rint(band), 0, 255).astype(np.uint8)
    return out


def encode_residual(rgb: np.ndarray, base: np.ndarray, top: int, left: int, grid: tuple[int, int],
                    params: ResidualParams, activity: np.ndarray | None, rounding: float = 0.33) -> bytes:
    """:func:`quantize_residual` then :func:`encode_levels`: the layer's payload."""
    return encode_levels(quantize_residual(rgb, base, top, left, grid, params, rounding), params, activity)


def decode_residual(payload: bytes, base: np.ndarray, top: int, left: int, grid: tuple[int, int],
                    activity: np.ndarray | None) -> np.ndarray:
    """:func:`decode_levels` then :func:`render_residual`: the (H, W, 3) uint8 image with the layer."""
    params, levels = decode_levels(payload, grid, activity)
    return render_residual(base, levels, params, top, left)
