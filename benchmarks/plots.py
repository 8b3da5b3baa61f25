"""Rate-distortion plots: quality (dB) over bits per pixel, PNG and SVG.

Uses ``matplotlib.figure.Figure`` with the Agg canvas directly, so no global pyplot state
or GUI backend is touched. Measured curves are solid with markers; published reference
curves (``reference=True``) are dashed and thinner.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from vqz.benchmarks.aggregate import Curve

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["PLOT_METRICS", "plot_rd"]

PLOT_METRICS: dict[str, str] = {"psnr": "PSNR-RGB (dB)", "ms_ssim_db": "MS-SSIM-RGB (dB)"}
"""Metric attribute of :class:`Curve` -> y-axis label."""


def plot_rd(curves: Sequence[Curve], metric: str, stem: Path, title: str,
            max_bpp: float | None = 2.0) -> tuple[Path, Path]:
    """Draw ``metric`` over bpp for ``curves``; write ``stem.png`` (150 dpi) and ``stem.svg``.

    ``max_bpp`` limits the x axis (``None``: fit all points). Returns the two paths.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if metric not in PLOT_METRICS:
        raise ValueError(f"metric must be one of {sorted(PLOT_METRICS)}, got {metric!r}")
    fig = Figure(figsize=(10.5, 5.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    measured = [c for c in curves if not c.reference]
    reference = [c for c in curves if c.reference]
    measured_colors = dict(zip((_family(c) for c in measured), _palette(len(measured), "tab10"), strict=True))
    spare = iter(_palette(len(reference), "Dark2", "Set1"))
    for curve in measured:
        _draw(ax, curve, metric, measured_colors[_family(curve)], dashed=False, max_bpp=max_bpp)
    for curve in reference:
        # a published curve of a codec we also measured shares its colour
        color = measured_colors.get(_family(curve)) or next(spare)
        _draw(ax, curve, metric, color, dashed=True, max_bpp=max_bpp)
    ax.set_xlabel("bits per pixel (whole file)")
    ax.set_ylabel(PLOT_METRICS[metric])
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if max_bpp is not None:
        ax.set_xlim(0.0, max_bpp)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    else:
        ax.text(0.5, 0.5, "no rate-distortion curve to show", ha="center", va="center",
                transform=ax.transAxes, color="0.4")
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    fig.savefig(png, dpi=150)
    fig.savefig(svg)
    return png, svg


def _family(curve: Curve) -> str:
    """Codec family key: label lower-cased, letters and digits only ("JPEG 2000" -> "jpeg2000")."""
    return "".join(ch for ch in curve.label.lower() if ch.isalnum())


def _palette(n: int, *names: str) -> list[tuple[float, float, float, float]]:
    """``n`` colours from the qualitative colormaps ``names`` in turn, cycling if needed."""
    from matplotlib import colormaps

    colors = [colormaps[name](i) for name in names for i in range(colormaps[name].N)]
    return [colors[i % len(colors)] for i in range(n)]


def _draw(ax: Axes, curve: Curve, metric: str, color: tuple[float, ...], *, dashed: bool,
          max_bpp: float | None) -> None:
    x, y = curve.bpp, getattr(curve, metric)
    keep = np.isfinite(x) & np.isfinite(y)
    if max_bpp is not None:
        # keep one point past the limit so the line runs to the edge
        beyond = np.flatnonzero(x > max_bpp)
        if beyond.size:
            keep &= np.arange(x.size) <= beyond[0]
    if not keep.any():
        return
    label = f"{curve.label} (published)" if dashed else curve.label
    ax.plot(x[keep], y[keep], linestyle="--" if dashed else "-", marker=None if dashed else "o",
            markersize=3.5, linewidth=1.0 if dashed else 1.8, color=color, alpha=0.75 if dashed else 1.0,
            label=label)
