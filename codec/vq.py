"""The residual vector quantizer's coding path in numpy: nearest-code search and dequantization.

The same arithmetic as :class:`vqz.codec.quantizer.ResidualVectorQuantizer` (float32, the
same formula and order of operations), so the PyTorch path and this one pick the same
codes except on exact near-ties (compared on Kodak in ``tests/test_runtime.py``).

Shapes: codebooks ``(S, K, M)`` float32; latents ``(h, w, M)`` float32 (channels last);
indices ``(S', h, w)`` int64, one plane per stage.
"""

from __future__ import annotations

import numpy as np

__all__ = ["dequantize", "nearest", "quantize"]

#: Rows per distance matrix: bounds its (CHUNK, K) float32 memory (32 MiB for K = 512).
CHUNK = 1 << 14


def nearest(vectors: np.ndarray, codebook: np.ndarray, code_norms: np.ndarray | None = None,
            chunk: int = CHUNK) -> np.ndarray:
    """Index of the nearest code for each row. vectors: (P, M), codebook: (K, M) -> (P,) int64.

    Distances are ``||x||^2 - 2 x.c + ||c||^2`` in float32; ties go to the lowest index.
    """
    if code_norms is None:
        code_norms = np.square(codebook).sum(1, dtype=np.float32)
    out = np.empty(vectors.shape[0], dtype=np.int64)
    codebook_t = np.ascontiguousarray(codebook.T)
    for start in range(0, vectors.shape[0], chunk):
        part = vectors[start : start + chunk]
        distances = part @ codebook_t
        distances *= np.float32(-2.0)
        distances = np.square(part).sum(1, keepdims=True, dtype=np.float32) + distances
        distances += code_norms[None, :]
        out[start : start + chunk] = distances.argmin(axis=1)
    return out


def quantize(latent: np.ndarray, codebooks: np.ndarray, num_stages: int) -> np.ndarray:
    """Greedy residual VQ. latent: (h, w, M) float32 -> indices (num_stages, h, w) int64.

    Stage ``s`` codes the residual left by stages ``0..s-1``.
    """
    height, width, dim = latent.shape
    residual = np.ascontiguousarray(latent, dtype=np.float32).reshape(-1, dim)
    planes = np.empty((num_stages, height, width), dtype=np.int64)
    for stage in range(num_stages):
        codebook = codebooks[stage]
        index = nearest(residual, codebook)
        residual = residual - codebook[index]
        planes[stage] = index.reshape(height, width)
    return planes


def dequantize(indices: np.ndarray, codebooks: np.ndarray) -> np.ndarray:
    """indices: (S', h, w) -> latent (h, w, M) float32, the sum of the first S' stages' codes
    (accumulated in stage order from zero, as the PyTorch quantizer does).

    A negative index (a cell a part-way stage left uncoded) adds nothing: the cell keeps
    exactly the value of the stages before.
    """
    stages, height, width = indices.shape
    if stages > codebooks.shape[0]:
        raise ValueError(f"got {stages} index planes, the quantizer has {codebooks.shape[0]} stages")
    total = np.zeros((height, width, codebooks.shape[2]), dtype=np.float32)
    for stage in range(stages):
        plane = indices[stage]
        if plane.min(initial=0) >= 0:
            total += codebooks[stage][plane]
        else:
            np.add(total, codebooks[stage][np.maximum(plane, 0)], out=total, where=(plane >= 0)[..., None])
    return total
