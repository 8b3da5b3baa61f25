"""The benchmark report as one self-contained HTML file (images embedded as base64 PNG).

No external CSS, fonts or scripts: the file can be mailed or attached to an issue as is.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vqz.benchmarks.aggregate import BD_ANCHORS, BdEntry, Curve, bd_table
from vqz.benchmarks.visual import VisualSet

__all__ = ["HtmlInputs", "render_html"]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:2rem auto;
max-width:1180px;padding:0 1rem;color:#1d2330;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.25rem;margin-top:2.2rem;border-bottom:1px solid #d8dce4;
padding-bottom:.25rem}h3{font-size:1.05rem;margin:1.4rem 0 .5rem}
.sub{color:#5b6475;margin-top:0}
table{border-collapse:collapse;margin:.4rem 0 1rem;font-size:.88rem}
th,td{border:1px solid #d8dce4;padding:.28rem .6rem;text-align:right;white-space:nowrap}
th{background:#f1f3f7}td:first-child,th:first-child{text-align:left}
td.neg{color:#0a7d32;font-weight:600}td.pos{color:#b42318}
.plots img{width:100%;max-width:1100px;border:1px solid #e4e7ec;margin-bottom:1rem}
.grid{display:flex;flex-wrap:wrap;gap:.7rem;margin-bottom:1.2rem}
figure{margin:0;text-align:center;font-size:.78rem;width:200px}
figure img{width:192px;height:192px;image-rendering:pixelated;border:1px solid #c9ced8;display:block;margin:0 auto .2rem}
dl{display:grid;grid-template-columns:max-content auto;gap:.15rem 1rem;font-size:.9rem}dt{font-weight:600}
dd{margin:0}.note{font-size:.85rem;color:#5b6475}
details{margin:.3rem 0}summary{cursor:pointer;padding:.2rem 0}
"""


@dataclass(frozen=True)
class HtmlInputs:
    """Everything the HTML page shows."""

    title: str
    facts: Sequence[tuple[str, str]]
    curves: Sequence[Curve]
    plots: Sequence[tuple[str, Path]]
    bd: Sequence[BdEntry]
    visual: Sequence[VisualSet]
    notes: Sequence[str]


def _e(text: object) -> str:
    return html.escape(str(text))


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], signed_cols: frozenset[int] = frozenset()) -> str:
    out = ["<table><thead><tr>", *(f"<th>{_e(h)}</th>" for h in header), "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>")
        for i, cell in enumerate(row):
            cls = ""
            if i in signed_cols and cell.endswith("%"):
                cls = ' class="neg"' if cell.startswith("-") else ' class="pos"'
            out.append(f"<td{cls}>{_e(cell)}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _curve_table(curve: Curve) -> str:
    header = ["setting", "bpp", "PSNR (dB)", "MS-SSIM", "MS-SSIM (dB)", "encode (s)", "decode (s)"]
    rows = [[p.setting, f"{p.bpp:.4f}", f"{p.psnr:.2f}", f"{p.ms_ssim:.4f}", f"{db:.2f}",
             f"{p.encode_s:.4f}", f"{p.decode_s:.4f}"]
            for p, db in zip(curve.points, curve.ms_ssim_db, strict=True)]
    return _table(header, rows)


def _summary_table(curves: Sequence[Curve]) -> str:
    header = ["codec", "role", "settings", "bpp range", "PSNR range (dB)", "encode (s)", "decode (s)"]
    rows = []
    for c in curves:
        if not c.points:
            rows.append([c.name, "RD" if c.rd else "speed only", "0", "–", "–", "–", "–"])
            continue
        rows.append([c.name, "RD" if c.rd else "speed only", str(len(c.points)),
                     f"{c.bpp.min():.3f}–{c.bpp.max():.3f}", f"{c.psnr.min():.2f}–{c.psnr.max():.2f}",
                     f"{sum(p.encode_s for p in c.points) / len(c.points):.4f}",
                     f"{sum(p.decode_s for p in c.points) / len(c.points):.4f}"])
    return _table(header, rows)


def _visual(sets: Sequence[VisualSet]) -> str:
    out = []
    for vs in sets:
        left, top, side = vs.box
        out.append(f"<h3>{_e(vs.image)} near {vs.target_bpp:g} bpp "
                   f'<span class="note">(crop {side}x{side} at x={left}, y={top}; bpp and PSNR of the whole image)</span></h3>')
        out.append('<div class="grid">')
        out.append(f"<figure>{_img(vs.original, 'original')}<figcaption><b>original</b></figcaption></figure>")
        for c in vs.crops:
            caption = f"<b>{_e(c.label)}</b> ({_e(c.setting)})<br>{c.bpp:.3f} bpp · {c.psnr:.2f} dB"
            out.append(f"<figure>{_img(c.png, c.label)}<figcaption>{caption}</figcaption></figure>")
        out.append("</div>")
    return "".join(out)


def render_html(inputs: HtmlInputs) -> str:
    """The complete HTML document."""
    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{_e(inputs.title)}</title>",
             f"<style>{_CSS}</style></head><body>",
             f"<h1>{_e(inputs.title)}</h1>"]
    parts.append("<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in inputs.facts) + "</dl>")

    parts.append("<h2>Rate-distortion</h2><div class=plots>")
    for title, path in inputs.plots:
        parts.append(_img(path.read_bytes(), title))
    parts.append("</div>")

    parts.append("<h2>BD-rate</h2><p class=note>Bjøntegaard delta rate: average bitrate difference at equal "
                 "quality (cubic fit of log-rate over quality), integrated over the overlapping quality range "
                 "shown. Negative (green) = fewer bits than the anchor.</p>")
    any_table = False
    for anchor in BD_ANCHORS:
        header, rows = bd_table(inputs.bd, anchor)
        if rows:
            any_table = True
            parts.append(f"<h3>vs {_e(anchor)}</h3>" + _table(header, rows, frozenset({1, 3})))
    if not any_table:
        parts.append(f"<p>No BD-rate: the run has no anchor codec ({', '.join(BD_ANCHORS)}) and another RD codec.</p>")

    parts.append("<h2>Summary</h2><p class=note>Means over the settings of each codec; times are per image. "
                 "Codecs marked 'speed only' have untrained weights and are not in the plots or BD-rate tables."
                 "</p>" + _summary_table(inputs.curves))

    parts.append("<h2>Per-setting averages</h2><p class=note>Each point is the mean over all images; "
                 "click a codec to expand.</p>")
    for curve in inputs.curves:
        flag = "" if curve.rd or "speed only" in curve.label else " <b>(speed only)</b>"
        parts.append(f"<details><summary><b>{_e(curve.label)}</b>{flag} — {len(curve.points)} settings</summary>"
                     f"<p class=note>{_e(curve.description)}</p>")
        parts.append((_curve_table(curve) if curve.points else "<p>No complete settings.</p>") + "</details>")

    if inputs.visual:
        parts.append("<h2>Visual comparison</h2>" + _visual(inputs.visual))
    if inputs.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in inputs.notes) + "</ul>")
    parts.append("</body></html>\n")
    return "".join(parts)
