"""Residual vector quantizer with EMA codebooks, k-means initialisation and dead-code restart.

Shapes: latents are ``(B, M, H, W)`` float tensors; indices are ``(S, B, H, W)``
int64 tensors with values in ``[0, K)``, one plane per stage. Stage ``s``
quantizes the residual left by stages ``0..s-1``, so any prefix of stages is a
valid, coarser reconstruction (this is what makes quality levels and
progressive decoding work with a single model).

Invariant shared by encoder and decoder: ``dequantize(indices[:n])`` is the sum of
the first ``n`` stages' code vectors, i.e. exactly the latent the encoder's
``quantize(..., num_stages=n)`` produced.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _nearest(vectors: Tensor, codebook: Tensor, chunk: int = 1 << 16) -> Tensor:
    """Index of the nearest code for each row. vectors: (P, M), codebook: (K, M) -> (P,) int64.

    Rows are processed in chunks so the (chunk, K) distance matrix bounds the memory.
    """
    code_norms = codebook.pow(2).sum(1)[None, :]
    out = []
    for start in range(0, vectors.shape[0], chunk):
        part = vectors[start : start + chunk]
        distances = part.pow(2).sum(1, keepdim=True) - 2.0 * part @ codebook.t() + code_norms
        out.append(distances.argmin(dim=1))
    return torch.cat(out) if out else vectors.new_zeros((0,), dtype=torch.long)


def kmeans(vectors: Tensor, num_codes: int, iterations: int = 10, seed: int = 0) -> Tensor:
    """Plain Lloyd k-means. vectors: (P, M) -> centroids (K, M). Empty clusters keep their seed."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    pick = torch.randperm(vectors.shape[0], generator=generator)[:num_codes].to(vectors.device)
    if pick.numel() < num_codes:  # fewer vectors than codes: repeat with jitter
        pick = pick.repeat((num_codes + pick.numel() - 1) // pick.numel())[:num_codes]
    centroids = vectors[pick].clone()
    for _ in range(iterations):
        assign = _nearest(vectors, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, assign, vectors)
        counts = torch.bincount(assign, minlength=num_codes).to(vectors.dtype)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    return centroids


class ReplicaSync(Protocol):
    """How data-parallel replicas of a quantizer agree (see :mod:`vqz.training.distributed`).

    ``sum_(t)`` sums ``t`` over all replicas in place; ``gather_rows(t)`` concatenates the
    ``(n_r, M)`` tensors of every replica in rank order. Both are collective: every replica
    calls them at the same points, which the quantizer guarantees by deciding only on
    values that are already identical on every replica (summed statistics).
    """

    def sum_(self, tensor: Tensor) -> Tensor: ...

    def gather_rows(self, tensor: Tensor) -> Tensor: ...


class ResidualVectorQuantizer(nn.Module):
    """``S`` stages of ``K`` codes of dimension ``M``; codebooks live in buffers (EMA-trained).

    Training (``self.training``): codebooks follow an exponential moving average of the
    vectors assigned to them; codes unused for a while are restarted on random residuals.
    The first training batch initialises every stage by k-means on its own residuals.

    Data-parallel training sets ``sync`` (a :class:`ReplicaSync`): the EMA counts and sums of
    each stage are then summed over the replicas before the codebook update, and dead-code
    restarts draw from the residuals of the whole (global) batch with an RNG that every
    replica advances identically, so every replica keeps identical codebooks. ``sync=None``
    (one process) costs nothing and computes exactly what it always did.
    """

    sync: ReplicaSync | None = None

    def __init__(self, num_stages: int, codebook_size: int, dim: int, decay: float = 0.99) -> None:
        super().__init__()
        self.num_stages = num_stages
        self.codebook_size = codebook_size
        self.dim = dim
        self.decay = decay
        self.register_buffer("codebooks", torch.randn(num_stages, codebook_size, dim) * 0.1)
        self.register_buffer("ema_counts", torch.ones(num_stages, codebook_size))
        self.register_buffer("ema_sums", self.codebooks.clone())
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    # ------------------------------------------------------------------ coding path
    @torch.no_grad()
    def encode(self, latent: Tensor, num_stages: int | None = None) -> Tensor:
        """latent (B, M, H, W) -> indices (S', B, H, W) int64, S' = num_stages or S."""
        stages = self.num_stages if num_stages is None else num_stages
        batch, dim, height, width = latent.shape
        residual = latent.permute(0, 2, 3, 1).reshape(-1, dim)
        planes = []
        for stage in range(stages):
            codebook = self.codebooks[stage]
            index = _nearest(residual, codebook)
            residual = residual - codebook[index]
            planes.append(index.view(batch, height, width))
        return torch.stack(planes) if planes else latent.new_zeros((0, batch, height, width), dtype=torch.long)

    def dequantize(self, indices: Tensor) -> Tensor:
        """indices (S', B, H, W) -> latent (B, M, H, W), the sum of the first S' stages, in
        channels_last memory order (the layout the synthesis transform runs in; no copy)."""
        stages, batch, height, width = indices.shape
        if stages > self.num_stages:
            raise ValueError(f"got {stages} index planes, the quantizer has {self.num_stages} stages")
        total = self.codebooks.new_zeros(batch, height, width, self.dim)
        for stage in range(stages):
            total = total + F.embedding(indices[stage], self.codebooks[stage])
        return total.permute(0, 3, 1, 2)

    # ------------------------------------------------------------------ training path
    def forward(self, latent: Tensor, stages_per_sample: Tensor) -> tuple[Tensor, Tensor]:
        """Quantize with a per-sample number of stages (stage dropout).

        Args:
            latent: (B, M, H, W) encoder output.
            stages_per_sample: (B,) int64 in [1, S]: how many stages each sample keeps.

        Returns:
            quantized: (B, M, H, W) with a straight-through gradient to ``latent``.
            commitment: scalar mean squared distance between latent and its quantization.
        """
        batch, dim, height, width = latent.shape
        flat = latent.permute(0, 2, 3, 1).reshape(-1, dim)
        keep = stages_per_sample.repeat_interleave(height * width)  # (P,)
        if self.training and not bool(self.initialized):
            self._kmeans_init(flat.detach())
        residual = flat.detach()
        quantized = torch.zeros_like(flat)
        for stage in range(self.num_stages):
            active = keep > stage
            # with replicas, a stage that none of *this* replica's samples keeps may still be
            # kept by another's: the decision to stop is taken on the summed counts below
            if self.sync is None and not bool(active.any()):
                break
            codebook = self.codebooks[stage]
            index = _nearest(residual, codebook)
            code = codebook[index]
            if self.training and not self._ema_update(stage, residual[active], index[active]):
                break  # no replica keeps this stage (the one-process `break` above, decided globally)
            mask = active[:, None].to(flat.dtype)
            quantized = quantized + code * mask
            residual = residual - code * mask
        commitment = F.mse_loss(flat, quantized.detach())
        straight_through = flat + (quantized - flat).detach()
        return straight_through.view(batch, height, width, dim).permute(0, 3, 1, 2), commitment

    @torch.no_grad()
    def _kmeans_init(self, flat: Tensor, first_stage: int = 0) -> None:
        """k-means-initialise stages ``first_stage..S-1``, each on the residuals that the stages
        before it leave on ``flat`` ((P, M) latent vectors); earlier stages keep their codebooks."""
        residual = flat
        for stage in range(self.num_stages):
            if stage >= first_stage:
                centroids = kmeans(residual, self.codebook_size, seed=stage)
                self.codebooks[stage].copy_(centroids)
                self.ema_sums[stage].copy_(centroids)
                self.ema_counts[stage].fill_(1.0)
            codebook = self.codebooks[stage]
            residual = residual - codebook[_nearest(residual, codebook)]
        self.initialized.fill_(True)

    @torch.no_grad()
    def _ema_update(self, stage: int, vectors: Tensor, index: Tensor) -> bool:
        """EMA step of one stage's codebook; False (nothing changed) when no replica had a vector."""
        one_hot_counts = torch.bincount(index, minlength=self.codebook_size).to(vectors.dtype)
        sums = torch.zeros_like(self.ema_sums[stage]).index_add_(0, index, vectors)
        if self.sync is not None:
            packed = self.sync.sum_(torch.cat([one_hot_counts[:, None], sums], dim=1))
            one_hot_counts, sums = packed[:, 0], packed[:, 1:]
            if not bool(one_hot_counts.sum() > 0):
                return False
        self.ema_counts[stage].mul_(self.decay).add_(one_hot_counts, alpha=1 - self.decay)
        self.ema_sums[stage].mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.ema_counts[stage].sum()
        smoothed = (self.ema_counts[stage] + 1e-5) / (total + self.codebook_size * 1e-5) * total
        self.codebooks[stage].copy_(self.ema_sums[stage] / smoothed[:, None])
        # dead-code restart: codes whose usage fell far below uniform get a random residual
        dead = self.ema_counts[stage] < 0.03 * total / self.codebook_size
        num_dead = int(dead.sum())
        if num_dead and self.sync is not None:
            # every replica restarts from the same residuals (the global batch's, in rank
            # order) with the same draws: identical codebooks, identical RNG streams
            vectors = self.sync.gather_rows(vectors)
        if num_dead and vectors.shape[0] > 0:
            pick = torch.randint(0, vectors.shape[0], (num_dead,), device=vectors.device)
            fresh = vectors[pick] + 1e-3 * torch.randn_like(vectors[pick])
            average_count = total / self.codebook_size
            self.codebooks[stage][dead] = fresh
            self.ema_sums[stage][dead] = fresh * average_count
            self.ema_counts[stage][dead] = average_count
        return True
