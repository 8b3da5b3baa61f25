"""Quality levels: what ``quality = q`` asks the encoder for.

The low levels code only residual-VQ stages: level ``q`` is the first ``q`` stages (the first
``PURE_LEVELS``, or all of a smaller model's). Above them, more stages buy little (the learned
transforms cap the quality), so each higher level is the stages of the highest pure level plus the
pixel residual layer (:mod:`vqz.codec.residual`) at a finer step, from :data:`RESIDUAL_LADDER`: on
the held-out split that beats more stages at equal rate in PSNR from about 0.5 bpp on, by +0.6 dB at
0.6 bpp and +1.6 dB at 1 bpp, but not in MS-SSIM (-0.3 to -0.8 dB at equal rate; stages are the
more MS-SSIM-efficient representation; experiments/probes/residual_ladder.md).

Only the encoder uses this table: a file stores its stage count and the residual layer's
parameters explicitly, so a decoder never needs it and a later ladder changes no file.
Residual levels need a model whose latent cells are 8x8 pixel blocks (``downsampling == 8``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vqz.codec.weights import LoadedWeights

__all__ = ["LevelPlan", "PURE_LEVELS", "RESIDUAL_LADDER", "encoder_settings_id", "level_plan", "level_plans",
           "postfilter_strength", "stage_strength"]

PURE_LEVELS = 4
#: (stages, luma step in pixel units) of the levels above the pure ones, coarse to fine. Every one
#: builds on the same stages as the highest pure level, so each level's file is larger than the last.
#: Base 4, not 3: on the held-out split base 3 has the best PSNR (+0.07 dB at 1 bpp, +0.19 at 0.6) but
#: base 4 the better MS-SSIM (+0.30 dB at 1 bpp, +0.39 at 0.6; experiments/probes/residual_ladder.md).
#: The steps space the levels evenly in log-rate on the held-out split, from level 4's rate (0.47 bpp there)
#: to step 8's (1.95 bpp), about +12% per level (experiments/probes/residual_steps.json).
RESIDUAL_LADDER: tuple[tuple[int, float], ...] = ((4, 57.0), (4, 42.0), (4, 34.0), (4, 28.0), (4, 24.0), (4, 20.5),
                                                  (4, 17.5), (4, 15.0), (4, 13.0), (4, 11.0), (4, 9.5), (4, 8.0))
#: Encoder-side options of the residual layer (measured on the held-out split; the decoder reads
#: the chroma multiplier and offset from the file, the rounding is the encoder's alone).
RESIDUAL_CHROMA = 1.25
RESIDUAL_OFFSET = 0.0
RESIDUAL_ROUNDING = 0.33
#: Frequency tilt of the residual steps (codec/residual.py): the highest band's step is twice the lowest's.
#: On 8 held-out images at base 3, +0.25 dB MS-SSIM for -0.02 dB PSNR at equal rate against 0 (tilt 2:
#: +0.31 / -0.10; experiments/probes/residual_ladder.md).
RESIDUAL_TILT = 1.0


#: Post-filter strength of a stage-only file of ``s`` stages: ``STAGE_STRENGTH_BASE - STAGE_STRENGTH_PER_STAGE * s``
#: (124, 108, 92, 76 for 1..4 stages), above every residual step of the ladder (<= 57), so that one filter
#: tells the VQ stages' artifacts from the residual layer's by its strength input.
STAGE_STRENGTH_BASE = 140.0
STAGE_STRENGTH_PER_STAGE = 16.0


@dataclass(frozen=True)
class LevelPlan:
    """``stages``: residual-VQ stages coded; ``residual_step``: luma step of the residual layer
    (pixel units), ``None`` for a level without one."""

    stages: int
    residual_step: float | None = None


def postfilter_strength(plan: LevelPlan) -> float:
    """The post-filter strength the encoder asks for at ``plan`` (a multiple of 1/2 in 0.5..127.5): the
    residual step on a residual level, ``STAGE_STRENGTH_BASE - STAGE_STRENGTH_PER_STAGE * stages`` on a
    stage-only one. Only the encoder and the filter's training use it; a file stores its strength."""
    if plan.residual_step is not None:
        return plan.residual_step
    return stage_strength(plan.stages)


def stage_strength(stages: float) -> float:
    """The post-filter strength of a stage-only file of ``stages`` stages; a fractional count for a file
    whose last stage codes only some cells (rate control's part-way files: whole stages + coded fraction)."""
    return STAGE_STRENGTH_BASE - STAGE_STRENGTH_PER_STAGE * stages


def level_plans(weights: LoadedWeights) -> list[LevelPlan]:
    """The plan of every quality level of a model, level 1 first."""
    num_stages = weights.config.num_stages
    plans = [LevelPlan(s) for s in range(1, min(num_stages, PURE_LEVELS) + 1)]
    if weights.config.downsampling == 8 and num_stages >= PURE_LEVELS:
        plans += [LevelPlan(min(stages, num_stages), step) for stages, step in RESIDUAL_LADDER]
    return plans


def level_plan(weights: LoadedWeights, quality: int) -> LevelPlan:
    """The plan of ``quality`` (1-based; the caller checks the range)."""
    return level_plans(weights)[quality - 1]


def encoder_settings_id() -> str:
    """A short fingerprint of what the encoder does per level (this ladder and the residual options):
    benchmarks record it so that cached results of an older encoder are recognised as stale."""
    import hashlib

    text = repr((PURE_LEVELS, RESIDUAL_LADDER, RESIDUAL_CHROMA, RESIDUAL_OFFSET, RESIDUAL_ROUNDING, RESIDUAL_TILT,
                 STAGE_STRENGTH_BASE, STAGE_STRENGTH_PER_STAGE))
    return hashlib.sha256(text.encode()).hexdigest()[:12]
