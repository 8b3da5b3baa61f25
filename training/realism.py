"""Train a realistic synthesis for an installed model: the decoder half of VQGAN, on frozen codes.

The analysis transform, the codebooks and the entropy tables stay exactly as they are; only a copy
of the synthesis transform ``g_s`` is fine-tuned, so every ``.vqz`` file of the model decodes with
either synthesis (:mod:`vqz.codec.realism` at run time).

Data: the model's codes of the training photos (:mod:`vqz.training.codes`): aligned ``crop`` x ``crop``
crops and their index planes, decoded from a random number of stages k in 1..PURE_LEVELS (the stage-only
levels, where no residual layer adds detail).

Losses: the generator minimises ``L1 + w * (hinge_G + fm_weight * FM) + energy_weight * E`` where FM is
the L1 distance between the discriminator's hidden activations on the decoded and the original crop,
``w`` is VQGAN's adaptive weight (the ratio of the two terms' gradient norms at the last layer, times
``adv_weight``; ``level_weights`` scale each crop's adversarial terms by its stage count, as one network
serves every level and the coarsest codes need the most invented texture) and E the squared log ratio of the crops' fine-detail energies (:func:`energy_loss`:
without it the adversarial term alone leaves the coarsest level blurred and over-sharpens the finest); the discriminator (:mod:`vqz.training.discriminator`, conditioned on the k-stage
latent) minimises the hinge loss, or with ``disc_codes`` classifies each 8 x 8 cell as one of the first stage's
codes or "decoded" (MS-ILLM: :func:`vqz.training.discriminator.code_d_loss`; the generator's adversarial term is
then the cross-entropy of its cells against the original's codes). The discriminator trains alone for
``d_warmup`` steps first.
bf16 autocast where the CPU runs it natively; the losses are float32.

Validation (``<out>/log.csv`` every ``validate_every`` steps): on centre crops of held-out photos,
for k = 1..4, PSNR and fine-detail energy ratio (:func:`vqz.benchmarks.metrics.detail_ratio`) of the
realistic synthesis (R = 1) and of the weight interpolation halfway (R = 0.5), on 8-bit output.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from vqz.training.model import torch_model
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqz.training.loop import CodeGridRunConfig, CsvLog, RunClock, cosine_lr, is_due, load_checkpoint, save_checkpoint
from vqz.training.codes import cache_codes, code_sampler, split_photos, start_run, validate
from vqz.training.discriminator import PatchDiscriminator, code_d_loss, code_g_loss
from vqz.training.stage_film import StageFilm, folded_tensors

__all__ = ["RealismTrainConfig", "calibrate_strength", "train_realism"]


@dataclass(frozen=True, kw_only=True)
class RealismTrainConfig(CodeGridRunConfig):
    """A realistic synthesis run: :class:`~vqz.training.loop.CodeGridRunConfig` and the options below."""

    out: str = "runs/realism"
    steps: int = 8000
    batch: int = 4
    lr_g: float = 5e-5
    lr_d: float = 2e-4
    adv_weight: float = 0.8  # times VQGAN's adaptive weight
    fm_weight: float = 1.0
    energy_weight: float = 0.0  # weight of the fine-detail energy term (squared log ratio per crop; 0: off)
    level_weights: tuple[float, ...] = ()  # per stage count k = 1, 2, ...: the adversarial terms' weight (default 1)
    d_warmup: int = 300  # steps of discriminator-only training before the generator moves
    d_channels: int = 32
    heldout_images: int = 8
    heldout_crop: int = 256
    checkpoint_every: int = 250
    validate_every: int = 500
    keep_validated: bool = False  # keep a copy of the checkpoint of every validated step (realism-<step>.safetensors)
    lattice_weight: float = 0.0  # weight of the code-grid pattern term (:func:`lattice_loss`; 0: off)
    stage_film: bool = False  # condition the generator on the stage count (:mod:`vqz.training.stage_film`)
    lr_film: float = 5e-4  # learning rate of the stage conditioning's scales and shifts
    init: str | None = None  # a realism checkpoint to start the generator and discriminator from (a fresh run)
    disc_codes: bool = False  # a code-classifying discriminator (MS-ILLM; :func:`~vqz.training.discriminator.code_d_loss`)



def interpolate(faithful: nn.Module, realistic: nn.Module, realism: float,
                factors: dict[str, Tensor] | None = None) -> nn.Module:
    """A copy of the synthesis whose floating-point tensors are ``faithful + realism * (realistic_k - faithful)``,
    where ``realistic_k = realistic * mul + add`` with one level's ``factors`` (``mul.<name>`` / ``add.<name>``,
    from :func:`vqz.training.stage_film.folded_tensors`; none: ``realistic``): what the runtime runs."""
    mixed = copy.deepcopy(faithful)
    a, b = faithful.state_dict(), realistic.state_dict()
    factors = factors or {}
    state = {}
    for k, w0 in a.items():
        if not w0.is_floating_point():
            state[k] = w0
            continue
        w1 = b[k] * factors.get(f"mul.g_s.{k}", 1.0) + factors.get(f"add.g_s.{k}", 0.0)
        state[k] = w0 + realism * (w1 - w0)
    mixed.load_state_dict(state)
    return mixed


def level_factors(folded: dict[str, Tensor], level: int) -> dict[str, Tensor]:
    """One level's factors (``mul.<name>`` / ``add.<name>``) out of :func:`folded_tensors`' output."""
    prefix = f"level{level}."
    return {k[len(prefix):]: v for k, v in folded.items() if k.startswith(prefix)}


def _adaptive_weight(rec: Tensor, adv: Tensor, last: Tensor, scale: float) -> Tensor:
    """VQGAN's balance: |d rec / d last| / |d adv / d last| (clamped), times ``scale``."""
    g_rec = torch.autograd.grad(rec, last, retain_graph=True)[0]
    g_adv = torch.autograd.grad(adv, last, retain_graph=True)[0]
    return (g_rec.norm() / (g_adv.norm() + 1e-4)).clamp(0.0, 1e4).detach() * scale


def _gaussian_taps(sigma: float) -> Tensor:
    radius = max(1, math.ceil(4 * sigma))
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / sigma) ** 2)
    return taps / taps.sum()


def detail_energy(x: Tensor) -> Tensor:
    """(B, 3, H, W) in [0, 1] -> (B,): the mean square of the finest luma band, the training twin of
    :func:`vqz.benchmarks.metrics.detail_energy` (luma blurred at sigma 0.5 minus at sigma 1, reflected edges)."""
    from vqz.benchmarks.metrics import DETAIL_SIGMAS

    luma = (x * x.new_tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)).sum(1, keepdim=True) * 255
    blurred = []
    for sigma in DETAIL_SIGMAS:
        taps = _gaussian_taps(sigma).to(x)
        r = taps.numel() // 2
        y = F.conv2d(F.pad(luma, (r, r, 0, 0), mode="reflect"), taps.reshape(1, 1, 1, -1))
        blurred.append(F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), taps.reshape(1, 1, -1, 1)))
    return (blurred[0] - blurred[1]).square().mean((1, 2, 3))


def energy_loss(decoded: Tensor, image: Tensor) -> Tensor:
    """Mean over crops of the squared log ratio of fine-detail energies: 0 when a decoded crop has as much
    of the finest detail as its original, growing as it blurs it away or invents more."""
    eps = 1e-2
    return (torch.log(detail_energy(decoded) + eps) - torch.log(detail_energy(image) + eps)).square().mean()


def grid_pattern(x: Tensor, period: int = 8) -> Tensor:
    """(B, C, H, W), H and W multiples of ``period`` -> (B, C, period, period): the mean of each pixel phase
    over the crop's cells, less its mean. Its DFT is the crop's DFT at the code grid's lattice frequencies
    (periods 2, 4 and 8 in each direction): a pattern repeated on every 8 x 8 cell, the signature of the
    stride-2 transposed convolutions' uneven overlap."""
    b, c, h, w = x.shape
    phases = x.reshape(b, c, h // period, period, w // period, period).mean((2, 4))
    return phases - phases.mean((2, 3), keepdim=True)


def lattice_loss(decoded: Tensor, image: Tensor) -> Tensor:
    """Mean square difference of the decoded and original crops' code-grid patterns (:func:`grid_pattern`),
    on the [0, 1] scale: the part of the error that sits on the lattice frequencies, where an adversarially
    trained synthesis puts a fixed grain that no photo has."""
    return (grid_pattern(decoded) - grid_pattern(image)).square().mean()


def _d_loss(real: Tensor, fake: Tensor) -> Tensor:
    return F.relu(1 - real.float()).mean() + F.relu(1 + fake.float()).mean()


def train_realism(cfg: RealismTrainConfig, resume: bool = False, log=print) -> Path:
    """Train (or continue) a realistic synthesis; returns the checkpoint path (``<out>/realism.safetensors``)."""
    from vqz.codec.levels import PURE_LEVELS

    clock = RunClock()
    weights, out, checkpoint, use_bf16 = start_run(cfg, "realism.safetensors")
    sampler, held = code_sampler(cfg, weights.codebooks, log)
    codebooks = weights.codebooks

    faithful = torch_model(weights).g_s.eval()
    for p in faithful.parameters():
        p.requires_grad_(False)
    generator = copy.deepcopy(faithful).train()
    for p in generator.parameters():
        p.requires_grad_(True)
    generator.to(memory_format=torch.channels_last)
    classes = weights.config.codebook_size + 1 if cfg.disc_codes else 1
    discriminator = PatchDiscriminator(weights.config.latent_dim, cfg.d_channels, classes=classes)
    if cfg.init and not (resume and checkpoint.exists()):
        if cfg.disc_codes:  # a hinge run's discriminator has one output per cell: the generator alone
            load_checkpoint(Path(cfg.init), {"g_s": generator})
            log(f"generator from {cfg.init}")
        else:
            load_checkpoint(Path(cfg.init), {"g_s": generator, "disc": discriminator})
            log(f"generator and discriminator from {cfg.init}")
    film = StageFilm(generator, PURE_LEVELS) if cfg.stage_film else None
    opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.lr_g, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=cfg.lr_d, betas=(0.5, 0.9))
    modules: dict[str, nn.Module] = {"g_s": generator, "disc": discriminator}
    optimizers = {"g_s.opt": opt_g, "disc.opt": opt_d}
    if film is not None:
        opt_film = torch.optim.Adam(film.parameters(), lr=cfg.lr_film, betas=(0.5, 0.9))
        modules["film"], optimizers["film.opt"] = film, opt_film
    metadata = {"config": json.dumps(asdict(cfg))}
    start = 0
    if resume and checkpoint.exists():
        start = load_checkpoint(checkpoint, modules, optimizers)
        sampler.rng = np.random.default_rng(cfg.seed + start)
        log(f"resumed at step {start}")
    last = list(generator.parameters())[-2]  # the last transposed convolution's weight
    weights_k = list(cfg.level_weights) + [1.0] * (PURE_LEVELS - len(cfg.level_weights))
    level_weight = torch.tensor(weights_k[:PURE_LEVELS], dtype=torch.float32)
    columns = ["step", "lr_g", "l1", "adv_weight", "d_real", "d_fake", "minutes"]
    columns += [f"{name}_{tag}_k{k}" for tag in ("r1", "r05") for k in range(1, PURE_LEVELS + 1) for name in ("psnr", "detail")]
    csv_log = CsvLog(out / "log.csv", columns, resume and start > 0)
    if start == 0:
        base = validate(faithful, held, codebooks, cfg.heldout_crop, PURE_LEVELS)
        log("R=0 (faithful): " + ", ".join(f"k{k} {p:.2f} dB detail {d:.2f}" for k, (p, d) in base.items()))
        csv_log.row(step=0, **{f"{n}_r1_k{k}": v for k, (p, d) in base.items() for n, v in (("psnr", p), ("detail", d))})
    running = {"l1": 0.0, "w": 0.0, "real": 0.0, "fake": 0.0}
    autocast = lambda: torch.autocast(device_type="cpu", dtype=torch.bfloat16, enabled=use_bf16)  # noqa: E731
    for step in range(start, cfg.steps):
        g_active = step >= cfg.d_warmup
        lr_g = cosine_lr(cfg.lr_g, step - cfg.d_warmup, cfg.steps - cfg.d_warmup, warmup=200) if g_active else 0.0
        for group in opt_g.param_groups:
            group["lr"] = lr_g
        if film is not None:
            for group in opt_film.param_groups:
                group["lr"] = lr_g * cfg.lr_film / cfg.lr_g
        if cfg.disc_codes:
            image, latent, stages, labels = sampler.sample(cfg.batch, labels=True)
        else:
            image, latent, stages = sampler.sample(cfg.batch)
        if film is not None:
            film.stages = stages
        latent = latent.contiguous(memory_format=torch.channels_last)
        with torch.set_grad_enabled(g_active), autocast():
            decoded = generator(latent).float()
        if g_active:
            for p in discriminator.parameters():
                p.requires_grad_(False)
            with autocast():
                logits, fake_features = discriminator(decoded, latent)
                with torch.no_grad():
                    _, real_features = discriminator(image, latent)
            l1 = (decoded - image).abs().mean()
            fm = sum((f.float() - r.float()).abs().mean((1, 2, 3)) for f, r in zip(fake_features, real_features))
            fooled = code_g_loss(logits, labels) if cfg.disc_codes else -logits.float().mean((1, 2, 3))
            per_sample = fooled + cfg.fm_weight * fm / len(real_features)
            adv = (per_sample * level_weight[stages - 1]).mean()
            w = _adaptive_weight(l1, adv, last, cfg.adv_weight)
            loss = l1 + w * adv
            if cfg.energy_weight:
                loss = loss + cfg.energy_weight * energy_loss(decoded, image)
            if cfg.lattice_weight:
                loss = loss + cfg.lattice_weight * lattice_loss(decoded, image)
            opt_g.zero_grad(set_to_none=True)
            if film is not None:
                opt_film.zero_grad(set_to_none=True)
            loss.backward()
            opt_g.step()
            if film is not None:
                opt_film.step()
            for p in discriminator.parameters():
                p.requires_grad_(True)
            running["l1"] = 0.98 * running["l1"] + 0.02 * l1.item()
            running["w"] = 0.98 * running["w"] + 0.02 * w.item()
        with autocast():
            real, _ = discriminator(image, latent)
            fake, _ = discriminator(decoded.detach(), latent)
        loss_d = code_d_loss(real, fake, labels) if cfg.disc_codes else _d_loss(real, fake)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        if cfg.disc_codes:  # logged: the probability of the "decoded" class on real and on decoded cells
            real, fake = (t.detach().float().softmax(1)[:, -1] for t in (real, fake))
        running["real"] = 0.98 * running["real"] + 0.02 * real.float().mean().item()
        running["fake"] = 0.98 * running["fake"] + 0.02 * fake.float().mean().item()
        done = step + 1
        if is_due(done, cfg.checkpoint_every, cfg.steps):
            save_checkpoint(checkpoint, modules, optimizers, done, metadata)
        if is_due(done, cfg.validate_every, cfg.steps):
            if cfg.keep_validated:
                save_checkpoint(out / f"realism-{done}.safetensors", modules, optimizers, done, metadata)
            if film is None:
                r1 = validate(generator, held, codebooks, cfg.heldout_crop, PURE_LEVELS)
                r05 = validate(interpolate(faithful, generator, 0.5), held, codebooks, cfg.heldout_crop, PURE_LEVELS)
            else:  # the folded per-level networks the runtime runs
                film.stages = None
                folded = folded_tensors(film, generator, prefix="g_s.")
                r1, r05 = (validate(lambda k, r=r: interpolate(faithful, generator, r, level_factors(folded, k)),
                                    held, codebooks, cfg.heldout_crop, PURE_LEVELS) for r in (1.0, 0.5))
            minutes = clock.seconds / 60
            metrics = {f"{n}_{tag}_k{k}": v for tag, res in (("r1", r1), ("r05", r05)) for k, (p, d) in res.items()
                       for n, v in (("psnr", p), ("detail", d))}
            csv_log.row(step=done, lr_g=lr_g, l1=running["l1"], adv_weight=running["w"], d_real=running["real"],
                        d_fake=running["fake"], minutes=round(minutes, 1), **metrics)
            log(f"step {done}: l1 {running['l1']:.4f} w {running['w']:.3f} D real {running['real']:+.2f} "
                f"fake {running['fake']:+.2f}; R=1 " + ", ".join(f"k{k} {p:.2f} dB/{d:.2f}" for k, (p, d) in r1.items())
                + f"; {minutes:.1f} min")
    csv_log.close()
    return checkpoint


def calibrate_strength(checkpoint: Path, target: float = 1.0, images: int = 1000, crop: int = 384,
                       iterations: int = 7, log=print) -> list[float]:
    """Per-level strengths ``s_k`` (:mod:`vqz.codec.realism`) for a realism checkpoint: for each stage count
    k = 1..PURE_LEVELS, the ``s`` in [0.25, 3] at which the synthesis ``w0 + s (w1_k - w0)`` keeps ``target``
    times the original's fine-detail energy (mean ratio over centre crops of ``crop`` pixels of up to
    ``images`` photos of the run's held-out split; never Kodak), by bisection (the ratio grows with s)."""
    from vqz.codec.levels import PURE_LEVELS
    from vqz.codec.registry import load_model
    from safetensors import safe_open

    with safe_open(str(checkpoint), framework="pt") as handle:
        values = json.loads((handle.metadata() or {}).get("config", "{}"))
    known = {f.name for f in fields(RealismTrainConfig)}
    cfg = RealismTrainConfig.from_dict({k: v for k, v in values.items() if k in known} | {"heldout_images": images})
    _, held_paths = split_photos(cfg)
    cache = Path(cfg.cache) if cfg.cache else Path(cfg.out) / "codes"
    held = [dict(np.load(p)) for p in cache_codes(cfg.model, held_paths, cache / "heldout", cfg.max_pixels, log)]
    weights = load_model(cfg.model)
    faithful = torch_model(weights).g_s.eval()
    generator = copy.deepcopy(faithful)
    film = StageFilm(generator, PURE_LEVELS) if cfg.stage_film else None
    load_checkpoint(checkpoint, {"g_s": generator} | ({"film": film} if film is not None else {}))
    folded = folded_tensors(film, generator, prefix="g_s.") if film is not None else {}
    if film is not None:
        film.stages = None
    strengths = []
    for k in range(1, PURE_LEVELS + 1):
        factors = level_factors(folded, k)
        low, high = 0.25, 3.0
        for _ in range(iterations):
            middle = (low + high) / 2
            _, detail = validate(interpolate(faithful, generator, middle, factors), held, weights.codebooks, crop,
                                 PURE_LEVELS, stages=[k])[k]
            low, high = (middle, high) if detail < target else (low, middle)
        strengths.append(round((low + high) / 2, 3))
        psnr, detail = validate(interpolate(faithful, generator, strengths[-1], factors), held, weights.codebooks, crop,
                                PURE_LEVELS, stages=[k])[k]
        log(f"k={k}: strength {strengths[-1]:.3f} -> detail {detail:.3f}, PSNR {psnr:.2f} dB ({len(held)} held-out crops)")
    return strengths
