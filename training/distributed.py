"""Data-parallel training under ``torchrun``: who am I, and the few collectives vqz needs.

``torchrun --nproc_per_node N -m vqz train CONFIG`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`setup` reads them and joins the process group (NCCL on CUDA, gloo on
CPU). Without them (a plain ``vqz train``), or with ``WORLD_SIZE=1``, nothing here talks to
another process and training is the one-process code path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from vqz.errors import VqzError


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def environment() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's variables; (0, 1, 0) without them."""
    try:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
    except ValueError as exc:
        raise VqzError(f"bad torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {exc}") from None


def setup() -> Context:
    """The process's context; joins the process group when there is more than one process."""
    rank, world_size, local_rank = environment()
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank if world_size > 1 else torch.cuda.current_device())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    return Context(rank, world_size, local_rank, device)


def teardown(context: Context) -> None:
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(context: Context) -> None:
    if context.distributed:
        dist.barrier()


class ReplicaSync:
    """The quantizer's hook (:class:`vqz.training.quantizer.ReplicaSync`) over the default process group."""

    def sum_(self, tensor: Tensor) -> Tensor:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def gather_rows(self, tensor: Tensor) -> Tensor:
        """Concatenate every replica's (n_r, M) rows in rank order (n_r may differ)."""
        world = dist.get_world_size()
        count = torch.tensor([tensor.shape[0]], device=tensor.device, dtype=torch.long)
        counts = [torch.zeros_like(count) for _ in range(world)]
        dist.all_gather(counts, count)
        sizes = [int(c) for c in counts]
        padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
        padded[: tensor.shape[0]] = tensor
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded.contiguous())
        return torch.cat([part[:size] for part, size in zip(parts, sizes)])


def broadcast_(tensors: list[Tensor], src: int = 0) -> None:
    """Overwrite ``tensors`` on every rank with rank ``src``'s values."""
    for tensor in tensors:
        if tensor.is_contiguous():
            dist.broadcast(tensor, src)
        else:  # e.g. channels_last weights: broadcast a contiguous copy
            copy = tensor.contiguous()
            dist.broadcast(copy, src)
            tensor.copy_(copy)


def broadcast_tensor_dict(tensors: dict[str, Tensor] | None, metadata: dict[str, str] | None, context: Context
                          ) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Rank 0's ``tensors`` and ``metadata`` on every rank (other ranks pass None), e.g. a
    checkpoint that only rank 0's file system holds. The manifest travels as a Python object
    (in memory, between our own processes); tensors travel as tensors."""
    manifest = [None if tensors is None else ([(k, tuple(v.shape), str(v.dtype)) for k, v in tensors.items()], metadata)]
    dist.broadcast_object_list(manifest, src=0)
    entries, metadata = manifest[0]
    out: dict[str, Tensor] = {}
    for key, shape, dtype in entries:
        value = tensors[key].to(context.device) if context.is_main else torch.empty(
            shape, dtype=getattr(torch, dtype.removeprefix("torch.")), device=context.device)
        dist.broadcast(value, 0)
        out[key] = value
    return out, metadata


def broadcast_scalar(value: float, context: Context) -> float:
    """Rank 0's ``value`` on every rank (e.g. the elapsed fraction of a time budget)."""
    if not context.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=context.device)
    dist.broadcast(tensor, 0)
    return float(tensor)


def mean_over_ranks(values: Tensor, context: Context) -> Tensor:
    """Element-wise mean of a small tensor over the ranks (for logging the global batch)."""
    if context.distributed:
        values = values.detach().clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= context.world_size
    return values


def replicas_agree(tensors: list[Tensor], context: Context) -> bool:
    """True when every rank holds bit-identical ``tensors`` (compares a position-weighted digest)."""
    if not context.distributed:
        return True
    digest = []
    for tensor in tensors:
        flat = tensor.detach().reshape(-1).double()
        weights = torch.arange(1, flat.numel() + 1, device=flat.device, dtype=torch.float64).remainder_(9973).add_(1)
        digest += [flat.sum(), (flat * weights).sum()]
    mine = torch.stack(digest)
    every = [torch.empty_like(mine) for _ in range(context.world_size)]
    dist.all_gather(every, mine)
    return all(torch.equal(every[0], other) for other in every[1:])
