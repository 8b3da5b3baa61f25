"""The residual vector quantizer's coding path in numpy: nearest-code search and dequantization.

The same arithmetic as :class:`vqz.training.quantizer.ResidualVectorQuantizer` (float32, the
same formula and order of operations), so the PyTorch path and this one pick the same
codes except on exact near-ties (compared on Kodak in ``tests/runtime/test_runtime.py``).

Shapes: codebooks ``(S, K, M)`` float32; latents ``(h, w, M)`` float32 (channels last);
indices ``(S', h, w)`` int64, one plane per stage.
"""

from __future__ import annotations

import numpy as np

__all__ = ["beam_quantize", "dequantize", "nearest", "quantize"]

#: Rows per distance matrix: its (CHUNK, K) float32 (8 MiB for K = 512) stays in cache between the
#: matrix product and the sums and argmin that follow it (2.5x faster than 16384 rows on a 13 MP photo).
CHUNK = 1 << 12
#: Threads that search the chunks of a large latent (the result does not depend on it).
QUANTIZE_THREADS = 2
#: Latent cells per beam-search block: bounds its (BEAM_CHUNK, B * K) float32 score matrix
#: (16 MiB for B = 8, K = 512).
BEAM_CHUNK = 1 << 10


def nearest(vectors: np.ndarray, codebook: np.ndarray, code_norms: np.ndarray | None = None,
            chunk: int = CHUNK) -> np.ndarray:
    """Index of the nearest code for each row. vectors: (P, M), codebook: (K, M) -> (P,) int64.

    Distances are ``||x||^2 - 2 x.c + ||c||^2`` in float32; ties go to the lowest index.
    """
    if code_norms is None:
        code_norms = np.square(codebook).sum(1, dtype=np.float32)
    out = np.empty(vectors.shape[0], dtype=np.int64)
    # x @ (-2 c) equals -2 (x @ c) bit for bit (scaling by a power of two is exact), one pass fewer
    codebook_t = np.ascontiguousarray(codebook.T) * np.float32(-2.0)

    def run(start: int) -> None:
        part = vectors[start : start + chunk]
        distances = part @ codebook_t
        distances += np.square(part).sum(1, keepdims=True, dtype=np.float32)  # ||x||^2 - 2 x.c, as x2 + (-2 x.c)
        distances += code_norms[None, :]
        out[start : start + chunk] = distances.argmin(axis=1)

    starts = range(0, vectors.shape[0], chunk)
    if len(starts) < 4:
        for start in starts:
            run(start)
    else:  # a large image: chunks on both cores (numpy releases the GIL; each row's result is its own)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(QUANTIZE_THREADS) as pool:
            list(pool.map(run, starts))
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


def beam_quantize(latent: np.ndarray, codebooks: np.ndarray, num_stages: int, beam: int,
                  code_cost=None) -> np.ndarray:
    """Residual VQ by a beam search over the stages, per latent cell. latent: (h, w, M) float32 ->
    indices (num_stages, h, w) int64.

    Each cell keeps the ``beam`` best paths (partial index sequences) after every stage, scored
    by the squared error left (``||x||^2 - 2 x.c + ||c||^2`` in float32, as :func:`nearest`) plus
    the sum of ``code_cost`` along the path; the best path after the last stage wins. Ties go to
    the lowest (path rank, code index), so ``beam = 1`` without costs is :func:`quantize`.

    ``code_cost(stage, cells, previous)`` (optional): (n, K) float32 cost of each code of
    ``stage`` for n candidates at flat cell positions ``cells`` (n,) whose path ends with code
    ``previous`` (n,) of the stage before (zeros at stage 0).
    """
    if beam < 1:
        raise ValueError(f"beam must be at least 1, got {beam}")
    height, width, dim = latent.shape
    flat = np.ascontiguousarray(latent, dtype=np.float32).reshape(-1, dim)
    out = np.empty((num_stages, flat.shape[0]), dtype=np.int64)
    norms = np.square(codebooks[:num_stages]).sum(2, dtype=np.float32)
    for start in range(0, flat.shape[0], BEAM_CHUNK):
        cells = np.arange(start, min(start + BEAM_CHUNK, flat.shape[0]))
        out[:, cells] = _beam_block(flat[cells], cells, codebooks, norms, num_stages, beam, code_cost)
    return out.reshape(num_stages, height, width)


def _beam_block(x: np.ndarray, cells: np.ndarray, codebooks: np.ndarray, norms: np.ndarray, num_stages: int,
                beam: int, code_cost) -> np.ndarray:
    """:func:`beam_quantize` of n cells: x (n, M) -> (num_stages, n) indices."""
    n, dim = x.shape
    k = codebooks.shape[1]
    rows = np.arange(n)
    residual = x[:, None, :]  # (n, b, M): b paths per cell (1 before the first stage)
    cost = np.zeros((n, 1), dtype=np.float32)  # summed code costs of each path
    paths = np.zeros((n, 1, 0), dtype=np.int64)
    for stage in range(num_stages):
        codebook = codebooks[stage]
        b = residual.shape[1]
        vectors = residual.reshape(n * b, dim)
        scores = vectors @ codebook.T
        scores *= np.float32(-2.0)
        scores = np.square(vectors).sum(1, keepdims=True, dtype=np.float32) + scores
        scores += norms[stage][None, :]
        scores = scores.reshape(n, b, k)
        if code_cost is not None:
            previous = paths[:, :, -1] if stage else np.zeros((n, b), dtype=np.int64)
            extra = code_cost(stage, np.repeat(cells, b), previous.reshape(-1)).reshape(n, b, k)
            scores += cost[:, :, None] + extra
        scores = scores.reshape(n, b * k)
        keep = min(beam, b * k)
        # the `keep` best candidates in order, ties to the lowest (path, code): repeated argmin
        # (argmin returns the first minimum), which is faster than argpartition for a small beam
        choice = np.empty((n, keep), dtype=np.int64)
        chosen = np.empty((n, keep), dtype=np.float32)
        for j in range(keep):
            choice[:, j] = scores.argmin(axis=1)
            chosen[:, j] = scores[rows, choice[:, j]]
            if j + 1 < keep:
                scores[rows, choice[:, j]] = np.inf
        parent, code = np.divmod(choice, k)
        residual = np.take_along_axis(residual, parent[:, :, None], 1) - codebook[code]
        if code_cost is not None:
            cost = np.take_along_axis(cost, parent, 1) + np.take_along_axis(
                extra.reshape(n, b * k), choice, 1)
        paths = np.concatenate([np.take_along_axis(paths, parent[:, :, None], 1), code[:, :, None]], axis=2)
    # paths are sorted by score: the first is the best
    return paths[:, 0].T


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
