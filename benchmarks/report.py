"""Write the benchmark report from a run's rows.

Files under ``out_dir``:

* ``json/<codec>.json``: one per codec, CompressAI's results format
  (``{"name", "description", "results": {"bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time",
  "decoding_time"}}``), one entry per setting averaged over the images, sorted by bpp;
* ``bd_rate.md``: BD-rate of every RD codec vs JPEG and vs WebP, on PSNR and MS-SSIM (dB),
  with the overlapping quality range;
* ``rd_psnr.{png,svg}``, ``rd_ms_ssim.{png,svg}``: RD plots, published curves from
  ``reference_dir`` dashed;
* ``report.html``: a self-contained page with the plots, tables and a visual comparison.

Codecs with ``rd = False`` (untrained models kept for speed) get a JSON file and a table in
the HTML, but are left out of plots and BD-rate tables unless ``include_untrained``.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vqz.benchmarks.adapter import Codec
from vqz.benchmarks.aggregate import (Curve, bd_entries, bd_markdown, curves_from_rows, load_reference, matched_rate_markdown,
                                      to_compressai_json)
from vqz.benchmarks.html_report import HtmlInputs, render_html
from vqz.benchmarks.metrics import MS_SSIM_MIN_SIDE, ms_ssim_is_single_scale
from vqz.benchmarks.plots import plot_rd
from vqz.benchmarks.runner import Row
from vqz.benchmarks.visual import visual_comparison

__all__ = ["ReportFiles", "write_report"]


@dataclass(frozen=True)
class ReportFiles:
    """Paths of everything :func:`write_report` wrote."""

    json: list[Path]
    bd_markdown: Path
    plots: list[Path]
    html: Path


def write_report(out_dir: Path, rows: Sequence[Row], codecs: Sequence[Codec], images: Sequence[Path], *,
                 reference_dir: Path | None = None, include_untrained: bool = False,
                 visual_images: int = 3, visual_targets: Sequence[float] = (0.15, 0.4), crop: int = 192,
                 threads: int | None = None, repeats: int | None = None) -> ReportFiles:
    """Write JSON, markdown, plots and HTML for ``rows`` of ``codecs`` on ``images`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [p.name for p in images]
    curves = curves_from_rows(rows, [(c.name, c.label, c.description, c.rd) for c in codecs], names)

    json_dir = out_dir / "json"
    json_dir.mkdir(exist_ok=True)
    json_files = []
    for curve in curves:
        path = json_dir / f"{curve.name}.json"
        path.write_text(json.dumps(to_compressai_json(curve), indent=2) + "\n")
        json_files.append(path)

    rd_curves = [c for c in curves if c.points and (c.rd or include_untrained)]
    entries = bd_entries(rd_curves)
    md_path = out_dir / "bd_rate.md"
    matched = matched_rate_markdown(rd_curves)
    md_path.write_text(f"## BD-rate ({len(images)} images)\n\n" + bd_markdown(entries) + ("\n\n" + matched if matched else ""))

    reference: list[Curve] = load_reference(reference_dir) if reference_dir is not None else []
    plot_files: list[Path] = []
    plots_for_html: list[tuple[str, Path]] = []
    for metric, stem, title in (("psnr", "rd_psnr", "PSNR-RGB"), ("ms_ssim_db", "rd_ms_ssim", "MS-SSIM-RGB (dB)")):
        png, svg = plot_rd([*rd_curves, *reference], metric, out_dir / stem,
                           f"{title} vs bpp, {len(images)} image(s)")
        plot_files += [png, svg]
        plots_for_html.append((title, png))

    shown = [c for c in codecs if c.rd or include_untrained]
    visual = visual_comparison(list(images)[:visual_images], shown, rows, visual_targets, crop) if visual_images else []

    html_path = out_dir / "report.html"
    html_path.write_text(render_html(HtmlInputs(
        title="vqz benchmark report",
        facts=_facts(codecs, images, threads, repeats, reference_dir),
        curves=curves, plots=plots_for_html, bd=entries, visual=visual,
        notes=_notes(codecs, rows, include_untrained),
    )), encoding="utf-8")
    return ReportFiles(json=json_files, bd_markdown=md_path, plots=plot_files, html=html_path)


def _facts(codecs: Sequence[Codec], images: Sequence[Path], threads: int | None, repeats: int | None,
           reference_dir: Path | None) -> list[tuple[str, str]]:
    shown = ", ".join(p.name for p in images[:6]) + (" …" if len(images) > 6 else "")
    facts = [("generated", _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")),
             ("images", f"{len(images)} ({shown})"),
             ("codecs", ", ".join(c.name for c in codecs))]
    if threads is not None:
        facts.append(("threads", f"{threads} (torch.get_num_threads() of the process that timed)"))
    if repeats is not None:
        facts.append(("timing", f"median of {repeats} run(s), wall clock"))
    if reference_dir is not None:
        facts.append(("published curves", f"{reference_dir} (dashed)"))
    facts.append(("rate", "bpp = file bytes × 8 / (width × height), whole file"))
    return facts


def _notes(codecs: Sequence[Codec], rows: Sequence[Row], include_untrained: bool) -> list[str]:
    notes = [f"{c.name}: {c.description}" for c in codecs]
    if not include_untrained and any(not c.rd for c in codecs):
        notes.append("Codecs with untrained weights are timed only: they are left out of the RD plots, "
                     "BD-rate tables and visual comparison.")
    if any(ms_ssim_is_single_scale(r.height, r.width) for r in rows):
        notes.append(f"Some images are smaller than {MS_SSIM_MIN_SIDE} px on a side: their 'MS-SSIM' is "
                     "single-scale SSIM (pytorch_msssim.ssim), not five-scale MS-SSIM.")
    return notes
