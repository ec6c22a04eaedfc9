"""What the per-batch selectors need under torch.distributed data parallelism.

Every rank must make the same decisions: the loss history is built from every rank's losses
(gathered in rank order, so each rank holds the same history and draws), and a rank may train
a batch only when every rank can, or DDP's gradient all-reduce would wait forever.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["active", "all_gather_cat", "all_min", "all_sum"]


_AVAILABLE = dist.is_available()  # fixed for the process; asked on every training step


def active() -> bool:
    """True inside an initialised process group of more than one rank."""
    return _AVAILABLE and dist.is_initialized() and dist.get_world_size() > 1


def _comm_device(tensor: Tensor) -> torch.device:
    # gloo works on CPU tensors, nccl on CUDA ones
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_gather_cat(tensor: Tensor) -> tuple[Tensor, int]:
    """Concatenate a 1-D tensor from every rank, in rank order; also returns where this rank's
    part starts. Ranks may hold different lengths."""
    device = _comm_device(tensor)
    world, rank = dist.get_world_size(), dist.get_rank()
    local = tensor.to(device)
    sizes = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([local.numel()], dtype=torch.int64, device=device))
    sizes = [int(s) for s in sizes]
    padded = torch.zeros(max(sizes), dtype=local.dtype, device=device)
    padded[: local.numel()] = local
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    full = torch.cat([p[:n] for p, n in zip(parts, sizes)]).to(tensor.device)
    return full, sum(sizes[:rank])


def all_sum(tensor: Tensor) -> Tensor:
    """The elementwise sum of a tensor over every rank (a new tensor, on the input's device)."""
    summed = tensor.to(_comm_device(tensor), copy=True)
    dist.all_reduce(summed)
    return summed.to(tensor.device)


def all_min(value: int) -> int:
    """The smallest of an integer held by every rank."""
    t = torch.tensor([value], dtype=torch.int64, device=_comm_device(torch.empty(0)))
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t)
