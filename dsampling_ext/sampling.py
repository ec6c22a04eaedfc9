"""Samplers shared by the methods that train on a chosen set of dataset indices, and their
sharding across data-parallel ranks (the same rule as torch's DistributedSampler)."""

from __future__ import annotations

import math
from typing import Iterator, Optional

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from ._validate import require_int

__all__ = ["IndexSubsetSampler", "IndexedDataset", "resolve_replicas", "shard"]


def resolve_replicas(num_replicas: Optional[int], rank: Optional[int]) -> tuple[int, int]:
    """(num_replicas, rank): as given, else from the initialised process group, else (1, 0)."""
    if num_replicas is None:
        num_replicas = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if rank is None:
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    require_int("num_replicas", num_replicas, 1)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < num_replicas:
        raise ValueError(f"rank must be an int in [0, {num_replicas}), got {rank!r}")
    return num_replicas, rank


def shard(indices: Tensor, num_replicas: int, rank: int) -> Tensor:
    """Rank ``rank``'s share: pad by wrapping to a multiple of num_replicas, then take every
    num_replicas-th index from ``rank`` (torch DistributedSampler with drop_last=False)."""
    if num_replicas == 1:
        return indices
    per_rank = math.ceil(indices.numel() / num_replicas)
    total = per_rank * num_replicas
    if total > indices.numel():
        indices = torch.cat([indices, indices.repeat(math.ceil(total / max(indices.numel(), 1)))[: total - indices.numel()]])
    return indices[rank:total:num_replicas]


def sharded_length(size: int, num_replicas: int) -> int:
    return math.ceil(size / num_replicas)


class IndexSubsetSampler(Sampler[int]):
    """Yield a fixed set of dataset indices, reshuffled every epoch.

    The order of epoch e is a permutation drawn from a generator seeded by (seed, e), so it is
    reproducible, identical on every rank, and independent of global RNG state. ``set_epoch`` as
    with DistributedSampler; with several ranks each yields its shard of that order.

    Args:
        indices (Tensor[M]): int64 dataset indices.
        shuffle: reshuffle each epoch (else yield in the given order).
        seed: seed of the shuffles.
        num_replicas, rank: data-parallel sharding (default: from torch.distributed, else 1, 0).
    """

    def __init__(self, indices: Tensor, shuffle: bool = True, seed: int = 0, epoch: int = 0,
                 num_replicas: Optional[int] = None, rank: Optional[int] = None):
        if not isinstance(indices, Tensor) or indices.dim() != 1 or indices.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"indices must be a 1-D int64 tensor, got {getattr(indices, 'dtype', type(indices))}")
        self.indices = indices.to("cpu", torch.int64)
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = epoch
        self.num_replicas, self.rank = resolve_replicas(num_replicas, rank)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sharded_length(self.indices.numel(), self.num_replicas)

    def __iter__(self) -> Iterator[int]:
        order = self.indices
        if self.shuffle:
            g = torch.Generator().manual_seed(hash((self.seed, self.epoch)) & (2**63 - 1))
            order = order[torch.randperm(len(order), generator=g)]
        return iter(shard(order, self.num_replicas, self.rank).tolist())


class IndexedDataset(Dataset):
    """Wrap a map-style dataset so that each item also carries its dataset index.

    An item ``(x, y)`` (any tuple or list) becomes ``(x, y, index)``; a dict gets the key
    ``index_key``; anything else ``(item, index)``. The default collate then yields batches
    ``(inputs, targets, indices)``, which every loader-consuming API of the library accepts,
    and the index is always the true dataset index, however the loader shuffles.

    Args:
        dataset: any map-style dataset (``__getitem__`` and ``__len__``).
        index_key: the key added to dict items (default "index").
    """

    def __init__(self, dataset, index_key: str = "index"):
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(f"dataset must be a map-style dataset (with __getitem__ and __len__), got "
                            f"{type(dataset).__name__}")
        self.dataset, self.index_key = dataset, index_key

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        item = self.dataset[index]
        if isinstance(item, dict):
            if self.index_key in item:
                raise ValueError(f"the dataset's items already hold the key {self.index_key!r}; pass another index_key")
            return {**item, self.index_key: index}
        if isinstance(item, (tuple, list)):
            return (*item, index)
        return item, index
