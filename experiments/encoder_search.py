"""Encoder-side index search for a fixed decoder: greedy residual VQ against a beam over the stages.

    python experiments/encoder_search.py [--folder DIR] [--files LIST] [--every 3] [--levels 2,4,8,16]
                                            [--beams 2,4,8] [--rate-alphas 0.5,1] [--out FILE.md]

For the held-out split of the default model (``checkpoints/vqz-rvq16-f8/validation_files.txt``,
every ``--every``-th file), each image is analysed once; then, for every variant and quality
``q``, its indices are found, entropy-coded under the model's frozen context tables and packed
into a real ``.vqz`` file (bpp from the file's bytes), decoded by the runtime and compared
with the image (PSNR on 8-bit RGB). ΔdB at equal rate: per image, the variant's PSNR minus
the greedy curve (all ``q`` levels, PCHIP in log bpp) at the variant's bpp, then averaged.

Variants:

* ``greedy``: the shipped quantizer (nearest code per stage).
* ``beam B``: per latent cell, keep the ``B`` best partial sums (smallest squared latent error)
  after each stage; the best of the last stage wins. ``B = 1`` is greedy (checked).
* ``rate beam B, alpha``: the same, scored by ``error + lambda * bits``, bits from the frozen
  tables (stage 0: its marginal; stage ``s >= 1``: the row its context selects, the activity
  bin taken from the greedy prefix, the previous-code bin from the candidate's own path),
  ``lambda = alpha *`` the image's greedy error-rate slope at stage ``q``.

The search is per latent cell (latent squared error does not couple cells), in numpy.
Timing: the quantizer's seconds per image (one thread); the transforms are the same for all.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import numpy as np

from vqz.codec.vq import beam_quantize  # the encoder's own search, with the variants' costs


class BitCost:
    """-log2 p(code) under the model's frozen tables, the activity bins from a greedy prefix."""

    def __init__(self, weights, greedy: np.ndarray, lam: float) -> None:
        entropy = weights.entropy
        self.lam = np.float32(lam)
        self.stage0 = (-np.log2(entropy._probabilities["marginal"][0])).astype(np.float32)
        self.rows = (-np.log2(entropy._stage_probabilities)).astype(np.float32)  # (S, C, K)
        stages = entropy.stages
        self.previous_bins = stages.previous_bins
        self.activity_bins = [None] + [
            np.searchsorted(stages.activity_edges[s], stages.activity(greedy[:s], s), side="left").ravel()
            for s in range(1, greedy.shape[0])]

    def __call__(self, stage: int, cells: np.ndarray, previous: np.ndarray) -> np.ndarray:
        if stage == 0:
            return np.broadcast_to(self.lam * self.stage0, (cells.size, self.stage0.size))
        from vqz.codec.stage_context import PREVIOUS_BINS

        context = self.activity_bins[stage][cells] * PREVIOUS_BINS + self.previous_bins[stage][previous]
        return self.lam * self.rows[stage][context]


def ec_greedy(latent: np.ndarray, weights, num_stages: int, lam: float) -> np.ndarray:
    """Entropy-constrained greedy residual VQ with the coder's exact contexts.

    Stage by stage, each cell takes the code minimising ``error + lam * bits`` where ``bits`` is
    -log2 of the probability the coder will use for it: stage 0 in its four 2x2 passes (A under
    the marginal, B / C / D under the row of their left / upper neighbour, already chosen),
    stage ``s >= 1`` under the row of its context, computed from the stages already chosen.
    latent: (h, w, M) float32 -> indices (num_stages, h, w) int64.
    """
    from vqz.codec.entropy_model import _phase_views

    entropy = weights.entropy
    height, width, dim = latent.shape
    residual = np.ascontiguousarray(latent, dtype=np.float32).reshape(-1, dim)
    planes = np.zeros((num_stages, height, width), dtype=np.int64)
    lam = np.float32(lam)
    for stage in range(num_stages):
        codebook = weights.codebooks[stage]
        scores = residual @ codebook.T
        scores *= np.float32(-2.0)
        scores = np.square(residual).sum(1, keepdims=True, dtype=np.float32) + scores
        scores += np.square(codebook).sum(1, dtype=np.float32)[None, :]
        scores = scores.reshape(height, width, -1)
        plane = planes[stage]
        if stage == 0:
            probs = entropy._probabilities
            marginal = lam * (-np.log2(probs["marginal"][0])).astype(np.float32)
            left = lam * (-np.log2(probs["left"])).astype(np.float32)
            up = lam * (-np.log2(probs["up"])).astype(np.float32)
            views = [(slice(0, None, 2), slice(0, None, 2)), (slice(0, None, 2), slice(1, None, 2)),
                     (slice(1, None, 2), slice(0, None, 2)), (slice(1, None, 2), slice(1, None, 2))]
            for phase, (rows, cols) in enumerate(views):
                part = scores[rows, cols]
                if not part.size:
                    continue
                if phase == 0:
                    cost = marginal
                else:
                    a, b = _phase_views(plane)[:2]
                    ctx = {1: a[:, : part.shape[1]], 2: a[: part.shape[0], :], 3: b[: part.shape[0], :]}[phase]
                    cost = (left if phase == 1 else up)[ctx]
                plane[rows, cols] = (part + cost).argmin(axis=2)
        else:
            rows_table = lam * (-np.log2(entropy._stage_probabilities[stage])).astype(np.float32)
            contexts = entropy.stages.contexts(planes[:stage], stage)
            plane[:] = (scores + rows_table[contexts]).argmin(axis=2)
        residual = residual - codebook[plane.ravel()]
    return planes


def file_bytes(weights, indices: np.ndarray, width: int, height: int) -> bytes:
    from vqz.bitstream import Header, pack

    quality = indices.shape[0]
    payloads = [weights.entropy.encode_plane(indices[s], s, indices[:s]) for s in range(quality)]
    header = Header(weights.model_id, weights.weights_hash, width, height, quality, *indices.shape[1:])
    return pack(header, payloads)


def _greedy_curve(bpp: list[float], psnr: list[float]):
    from scipy.interpolate import PchipInterpolator

    return PchipInterpolator(np.log(bpp), psnr, extrapolate=True)


def run(args) -> tuple[list[dict], dict]:
    import vqz.codec.engine as engine

    engine.CODING_THREADS = 1  # measurement only: one core is busy with training
    from vqz.codec.padding import compute_padding, pad_rgb
    from vqz.codec.pipeline import synthesize
    from vqz.codec.rate_control import psnr as psnr_of
    from vqz.codec.registry import load_model
    from vqz.codec.tiling import analysis, tile_margin
    from vqz.codec.vq import quantize
    from vqz.codec.photos import load_rgb

    weights = load_model(args.model)
    config = weights.config
    every = Path(args.files).read_text().split()
    names = {"tune": every[:: args.every], "check": [n for i, n in enumerate(every) if i % args.every],
             "all": every}[args.part][: args.limit]
    efforts = [int(v) for v in args.efforts.split(",") if v]
    levels = [int(v) for v in args.levels.split(",")]
    beams = [int(v) for v in args.beams.split(",") if v]
    alphas = [float(v) for v in args.rate_alphas.split(",") if v]
    rate_beams = [int(v) for v in args.rate_beams.split(",") if v]
    top = config.num_stages
    results: list[dict] = []  # one row per (image, variant, beam, alpha, q)
    for name in names:
        rgb = load_rgb(Path(args.folder) / name)
        height, width = rgb.shape[:2]
        pixels = height * width
        (left, _, upper, _), _ = compute_padding(height, width, min_div=config.downsampling)
        start = time.perf_counter()
        latent = analysis(weights.analysis, pad_rgb(rgb, config.downsampling), config.downsampling,
                          config.latent_dim, margin=tile_margin(config))[0].transpose(1, 2, 0)
        latent = np.ascontiguousarray(latent)
        analysis_s = time.perf_counter() - start

        def measure(variant, beam, alpha, indices, seconds):
            data = file_bytes(weights, indices, width, height)
            decoded = synthesize(weights, indices)[upper : upper + height, left : left + width]
            error = latent - dequantize_sum(indices)
            results.append(dict(image=name, variant=variant, beam=beam, alpha=alpha, q=indices.shape[0],
                                bpp=8 * len(data) / pixels, psnr=psnr_of(rgb, decoded),
                                latent_mse=float(np.mean(np.square(error))), quant_s=seconds, analysis_s=analysis_s))

        def dequantize_sum(indices):
            from vqz.codec.vq import dequantize

            return dequantize(indices, weights.codebooks)

        start = time.perf_counter()
        greedy = quantize(latent, weights.codebooks, top)
        greedy_s = time.perf_counter() - start
        for q in range(1, top + 1):
            measure("greedy", 1, 0.0, greedy[:q], greedy_s * q / top)
        # greedy per-stage error and estimated bits, for the rate-aware lambda
        errors = [float(np.square(latent).sum(2).mean())]
        bits = [0.0]
        for q in range(1, top + 1):
            errors.append(float(np.square(latent - dequantize_sum(greedy[:q])).sum(2).mean()))
            bits.append(bits[-1] + weights.entropy.estimate_bits(greedy[q - 1], q - 1, greedy[: q - 1]) / latent[..., 0].size)
        for q in levels:
            for effort in efforts:
                from vqz.codec.search import EFFORT_BEAMS, search_indices

                start = time.perf_counter()
                indices = search_indices(weights, latent, q, effort)
                seconds = time.perf_counter() - start
                measure(f"effort {effort}", EFFORT_BEAMS[effort], 0.0, indices, seconds)
            for beam in beams:
                start = time.perf_counter()
                indices = beam_quantize(latent, weights.codebooks, q, beam)
                seconds = time.perf_counter() - start
                if beam == 1:
                    assert np.array_equal(indices, greedy[:q]), "beam 1 must be greedy"
                measure("beam", beam, 0.0, indices, seconds)
            slope = (errors[q - 1] - errors[q]) / max(bits[q] - bits[q - 1], 1e-9)
            for alpha in alphas:
                cost = BitCost(weights, greedy[:q], alpha * slope)
                for beam in rate_beams:
                    start = time.perf_counter()
                    indices = beam_quantize(latent, weights.codebooks, q, beam, cost)
                    seconds = time.perf_counter() - start
                    measure("rate beam", beam, alpha, indices, seconds)
                start = time.perf_counter()
                indices = ec_greedy(latent, weights, q, alpha * slope)
                seconds = time.perf_counter() - start
                measure("ec greedy", 1, alpha, indices, seconds)
        print(f"{name}: done ({len(results)} rows)", flush=True)
    return results, dict(images=len(names))


def summarise(results: list[dict]) -> list[dict]:
    """Mean bpp / PSNR / ΔdB at equal rate per (variant, beam, alpha, q)."""
    curves = {}
    for image in {r["image"] for r in results}:
        rows = sorted((r for r in results if r["image"] == image and r["variant"] == "greedy"), key=lambda r: r["q"])
        curves[image] = _greedy_curve([r["bpp"] for r in rows], [r["psnr"] for r in rows])
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["variant"], r["beam"], r["alpha"], r["q"]), []).append(r)
    table = []
    for (variant, beam, alpha, q), rows in sorted(groups.items(), key=lambda kv: (kv[0][3], kv[0][0] != "greedy", kv[0])):
        delta = [r["psnr"] - float(curves[r["image"]](math.log(r["bpp"]))) for r in rows]
        table.append(dict(variant=variant, beam=beam, alpha=alpha, q=q, images=len(rows),
                          bpp=statistics.fmean(r["bpp"] for r in rows), psnr=statistics.fmean(r["psnr"] for r in rows),
                          latent_mse=statistics.fmean(r["latent_mse"] for r in rows),
                          delta_db=statistics.fmean(delta), quant_s=statistics.median(r["quant_s"] for r in rows),
                          encode_s=statistics.median(r["quant_s"] + r["analysis_s"] for r in rows)))
    return table


def to_markdown(table: list[dict], levels: set[int] | None = None) -> str:
    lines = ["| variant | B | alpha | q | bpp | PSNR (dB) | latent MSE | ΔdB at equal rate | quantizer s | encode s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for t in table:
        if levels is not None and t["variant"] == "greedy" and t["q"] not in levels:
            continue
        alpha = f"{t['alpha']:g}" if t["variant"] in ("rate beam", "ec greedy") else ""
        lines.append(f"| {t['variant']} | {t['beam']} | {alpha} | {t['q']} | {t['bpp']:.4f} | {t['psnr']:.3f} | "
                     f"{t['latent_mse']:.5f} | {t['delta_db']:+.3f} | {t['quant_s']:.3f} | {t['encode_s']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    here = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(prog="python experiments/encoder_search.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", default=str(here.parent / "shared/data/train"))
    parser.add_argument("--files", default=str(here / "checkpoints/vqz-rvq16-f8/validation_files.txt"))
    parser.add_argument("--every", type=int, default=3, help="tune: every N-th held-out file; check: the others")
    parser.add_argument("--part", choices=("tune", "check", "all"), default="tune")
    parser.add_argument("--efforts", default="", help="also the shipped search at these effort levels (e.g. 2,3)")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--levels", default="2,4,8,16")
    parser.add_argument("--beams", default="1,2,4,8")
    parser.add_argument("--rate-alphas", default="")
    parser.add_argument("--rate-beams", default="1,4")
    parser.add_argument("--model", default=None)
    parser.add_argument("--json", type=Path, help="write every per-image row here")
    parser.add_argument("--out", type=Path, help="write the markdown table here")
    args = parser.parse_args(argv)
    import json

    results, info = run(args)
    table = summarise(results)
    text = f"{info['images']} held-out images\n\n" + to_markdown(table, set(int(v) for v in args.levels.split(",")))
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"rows": results, "table": table}, indent=1))
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
