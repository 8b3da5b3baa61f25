"""Per-row results -> per-setting RD curves, CompressAI-format JSON and BD-rate tables.

A curve point is the mean over images of one setting, as in CompressAI's ``eval_model``:
``bpp``, ``psnr-rgb`` (mean of per-image dB), ``ms-ssim-rgb`` (mean of per-image values) and
times are arithmetic means. MS-SSIM in dB is taken of the mean MS-SSIM, the way CompressAI's
plotting converts its JSON. A setting is kept only if it has a row for every image of the
run, so all points of all curves average the same images.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from vqz.benchmarks.errors import BenchmarkError
from vqz.benchmarks.metrics import BdRate, bd_rate, ms_ssim_db
from vqz.benchmarks.runner import Row

__all__ = [
    "BD_ANCHORS",
    "BdEntry",
    "Curve",
    "Point",
    "bd_entries",
    "bd_markdown",
    "matched_rate_markdown",
    "curves_from_rows",
    "load_reference",
    "to_compressai_json",
]

#: the anchors every BD-rate is against (those in a run): the classic codecs, and the same-budget VAE baselines
#: of issue 29 (where their trained weights are installed), so that "vqz vs each baseline" is a table of its own
SAME_BUDGET: tuple[str, ...] = ("factorized-samebudget", "hyperprior-samebudget")
BD_ANCHORS: tuple[str, ...] = ("jpeg", "webp", *SAME_BUDGET)

METRICS: dict[str, str] = {"psnr": "PSNR", "ms_ssim_db": "MS-SSIM (dB)"}
"""Distortion metrics of the BD-rate tables: attribute of :class:`Curve` -> display name."""


@dataclass(frozen=True)
class Point:
    """One setting of one codec averaged over images (bpp; dB; unitless; seconds)."""

    setting: str
    bpp: float
    psnr: float
    ms_ssim: float
    encode_s: float
    decode_s: float


@dataclass(frozen=True)
class Curve:
    """A codec's RD curve, points sorted by bpp. ``rd`` False = not an RD result (speed only)."""

    name: str
    label: str
    description: str
    points: tuple[Point, ...]
    rd: bool = True
    reference: bool = False

    @property
    def bpp(self) -> np.ndarray:
        return np.array([p.bpp for p in self.points])

    @property
    def psnr(self) -> np.ndarray:
        return np.array([p.psnr for p in self.points])

    @property
    def ms_ssim(self) -> np.ndarray:
        return np.array([p.ms_ssim for p in self.points])

    @property
    def ms_ssim_db(self) -> np.ndarray:
        return np.asarray(ms_ssim_db(self.ms_ssim), dtype=np.float64)


def curves_from_rows(rows: Iterable[Row], codecs: Sequence[tuple[str, str, str, bool]],
                     images: Sequence[str]) -> list[Curve]:
    """Average ``rows`` per codec and setting over ``images``.

    ``codecs``: ``(name, label, description, rd)`` in the order the curves should come out.
    Settings missing any of ``images`` are dropped.
    """
    wanted = set(images)
    grouped: dict[tuple[str, str], dict[str, Row]] = defaultdict(dict)
    for row in rows:
        if row.image in wanted:
            grouped[(row.codec, row.setting)][row.image] = row
    curves = []
    for name, label, description, rd in codecs:
        points = []
        for (codec, setting), by_image in grouped.items():
            if codec != name or set(by_image) != wanted:
                continue
            rs = list(by_image.values())
            points.append(Point(
                setting=setting,
                bpp=float(np.mean([r.bpp for r in rs])),
                psnr=float(np.mean([r.psnr_rgb for r in rs])),
                ms_ssim=float(np.mean([r.ms_ssim_rgb for r in rs])),
                encode_s=float(np.mean([r.encode_s for r in rs])),
                decode_s=float(np.mean([r.decode_s for r in rs])),
            ))
        points.sort(key=lambda p: p.bpp)
        curves.append(Curve(name=name, label=label, description=description, points=tuple(points), rd=rd))
    return curves


def to_compressai_json(curve: Curve) -> dict[str, object]:
    """A curve in CompressAI's results format (one list entry per setting, sorted by bpp)."""
    return {
        "name": curve.label,
        "description": curve.description,
        "results": {
            "bpp": [p.bpp for p in curve.points],
            "psnr-rgb": [p.psnr for p in curve.points],
            "ms-ssim-rgb": [p.ms_ssim for p in curve.points],
            "encoding_time": [p.encode_s for p in curve.points],
            "decoding_time": [p.decode_s for p in curve.points],
        },
    }


def _reference_curve(path: Path) -> Curve:
    try:
        data = json.loads(path.read_text())
        results = data["results"]
        bpp = [float(v) for v in results["bpp"]]
        psnr = [float(v) for v in results.get("psnr-rgb", results.get("psnr", [math.nan] * len(bpp)))]
        ssim = [float(v) for v in results.get("ms-ssim-rgb", results.get("ms-ssim", [math.nan] * len(bpp)))]
        enc = [float(v) for v in results.get("encoding_time", [math.nan] * len(bpp))]
        dec = [float(v) for v in results.get("decoding_time", [math.nan] * len(bpp))]
        name = str(data.get("name", path.stem))
        description = str(data.get("description", ""))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BenchmarkError(f"{path} is not a CompressAI results JSON: {exc}") from exc
    if not len(bpp) == len(psnr) == len(ssim) == len(enc) == len(dec):
        raise BenchmarkError(f"{path}: result lists differ in length")
    points = sorted((Point("", *values) for values in zip(bpp, psnr, ssim, enc, dec, strict=True)), key=lambda p: p.bpp)
    return Curve(name=path.stem, label=name, description=description, points=tuple(points), reference=True)


def load_reference(folder: Path) -> list[Curve]:
    """Published curves: every ``*.json`` in ``folder`` (CompressAI results format), by file name.

    Labels that would collide (e.g. two ``bmshj2018-factorized`` files) get the file stem.
    """
    if not folder.is_dir():
        raise BenchmarkError(f"reference folder {folder} does not exist")
    curves = [_reference_curve(p) for p in sorted(folder.glob("*.json"))]
    if not curves:
        raise BenchmarkError(f"no *.json result files in reference folder {folder}")
    labels = [c.label for c in curves]
    return [
        Curve(name=c.name, label=c.name if labels.count(c.label) > 1 else c.label,
              description=c.description, points=c.points, reference=True)
        for c in curves
    ]


@dataclass(frozen=True)
class BdEntry:
    """BD-rate of ``codec`` vs ``anchor`` on ``metric``; ``result`` None with ``why`` if undefined."""

    codec: str
    anchor: str
    metric: str
    result: BdRate | None
    why: str = ""


def _finite(curve: Curve, metric: str) -> tuple[np.ndarray, np.ndarray]:
    rate, dist = curve.bpp, getattr(curve, metric)
    keep = np.isfinite(rate) & np.isfinite(dist) & (rate > 0)
    return rate[keep], dist[keep]


def bd_entries(curves: Sequence[Curve], anchors: Sequence[str] = BD_ANCHORS) -> list[BdEntry]:
    """BD-rate of every curve in ``curves`` against each anchor among them, on PSNR and
    MS-SSIM (dB). Anchors not in ``curves`` are skipped. The caller picks the curves (the
    report leaves out ``rd=False`` ones unless asked)."""
    by_name = {c.name: c for c in curves}
    entries = []
    for anchor in anchors:
        if anchor not in by_name:
            continue
        for curve in curves:
            if curve.name == anchor:
                continue
            for metric in METRICS:
                ra, da = _finite(by_name[anchor], metric)
                rt, dt = _finite(curve, metric)
                if da.size and dt.size and min(da.max(), dt.max()) <= max(da.min(), dt.min()):
                    why = (f"no overlap: {dt.min():.2f}–{dt.max():.2f} dB vs "
                           f"{anchor} {da.min():.2f}–{da.max():.2f} dB")
                    entries.append(BdEntry(curve.name, anchor, metric, None, why))
                    continue
                try:
                    entries.append(BdEntry(curve.name, anchor, metric, bd_rate(ra, da, rt, dt)))
                except BenchmarkError as exc:
                    entries.append(BdEntry(curve.name, anchor, metric, None, str(exc)))
    return entries


def _cell(entry: BdEntry | None) -> tuple[str, str]:
    if entry is None:
        return "–", "–"
    if entry.result is None:
        return "n/a", entry.why
    r = entry.result
    return f"{r.percent:+.1f} %", f"{r.low:.2f}–{r.high:.2f} dB"


def bd_table(entries: Sequence[BdEntry], anchor: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the BD-rate table against one anchor (strings, for any renderer)."""
    header = ["codec"]
    for title in METRICS.values():
        header += [f"BD-rate, {title}", f"{title} range"]
    codecs = list(dict.fromkeys(e.codec for e in entries if e.anchor == anchor))
    index = {(e.codec, e.metric): e for e in entries if e.anchor == anchor}
    rows = []
    for codec in codecs:
        row = [codec]
        for metric in METRICS:
            row += list(_cell(index.get((codec, metric))))
        rows.append(row)
    return header, rows


def bd_markdown(entries: Sequence[BdEntry], anchors: Sequence[str] = BD_ANCHORS) -> str:
    """Markdown BD-rate tables, one per anchor. Negative = fewer bits than the anchor at
    equal quality; the range is the overlapping quality interval the fits were integrated over."""
    parts = []
    for anchor in anchors:
        header, rows = bd_table(entries, anchor)
        if not rows:
            continue
        parts.append(f"### BD-rate vs {anchor}\n")
        parts.append("| " + " | ".join(header) + " |")
        parts.append("|" + "|".join(" --- " for _ in header) + "|")
        parts.extend("| " + " | ".join(r) + " |" for r in rows)
        parts.append("")
    parts.append("Negative BD-rate: fewer bits than the anchor at equal quality (Bjøntegaard, cubic fit "
                 "of log-rate over quality, integrated over the overlapping quality range shown).")
    return "\n".join(parts) + "\n"


#: the rates of the matched-rate PSNR table (issue 29)
MATCHED_RATES: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)


def log_rate_interp(bpp: float, rates: np.ndarray, psnrs: np.ndarray) -> float:
    """PSNR at ``bpp`` on the curve (``rates``, ``psnrs``): linear in log-rate between the neighbouring points,
    the end values outside the curve."""
    order = np.argsort(rates)
    return float(np.interp(np.log(bpp), np.log(rates[order]), np.asarray(psnrs)[order]))


def psnr_at_rate(curve: Curve, bpp: float) -> float | None:
    """The curve's PSNR at ``bpp`` (:func:`log_rate_interp`), or None outside it."""
    rates, psnrs = curve.bpp, curve.psnr
    keep = np.isfinite(rates) & np.isfinite(psnrs) & (rates > 0)
    rates, psnrs = rates[keep], psnrs[keep]
    if rates.size < 2 or not rates.min() <= bpp <= rates.max():
        return None
    return log_rate_interp(bpp, rates, psnrs)


def matched_rate_markdown(curves: Sequence[Curve], subject: str = "vqz", anchors: Sequence[str] = SAME_BUDGET,
                          rates: Sequence[float] = MATCHED_RATES) -> str:
    """A markdown table of ``subject``'s PSNR minus each anchor's at each of ``rates`` (bpp), where both curves
    reach the rate; empty when the run has neither."""
    by_name = {c.name: c for c in curves}
    present = [a for a in anchors if a in by_name]
    if subject not in by_name or not present:
        return ""
    lines = [f"### PSNR of {subject} minus each same-budget baseline at matched rate (dB)", "",
             "| baseline | " + " | ".join(f"{r:g} bpp" for r in rates) + " |", "|---|" + "---|" * len(rates)]
    for anchor in present:
        cells = []
        for rate in rates:
            a, b = psnr_at_rate(by_name[subject], rate), psnr_at_rate(by_name[anchor], rate)
            cells.append("–" if a is None or b is None else f"{a - b:+.2f}")
        lines.append(f"| {anchor} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Linear interpolation of PSNR in log-rate between each curve's neighbouring settings; – where a "
                 "curve does not reach the rate.")
    return "\n".join(lines) + "\n"
