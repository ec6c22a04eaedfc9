"""Samplers shared by the methods that train on a chosen set of dataset indices."""

from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor
from torch.utils.data import Sampler

__all__ = ["IndexSubsetSampler"]


class IndexSubsetSampler(Sampler[int]):
    """Yield a fixed set of dataset indices, reshuffled every epoch.

    The order of epoch e is a permutation drawn from a generator seeded by (seed, e), so it is
    reproducible and independent of global RNG state. ``set_epoch`` as with DistributedSampler.

    Args:
        indices (Tensor[M]): int64 dataset indices.
        shuffle: reshuffle each epoch (else yield in the given order).
        seed: seed of the shuffles.
    """

    def __init__(self, indices: Tensor, shuffle: bool = True, seed: int = 0, epoch: int = 0):
        if not isinstance(indices, Tensor) or indices.dim() != 1 or indices.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"indices must be a 1-D int64 tensor, got {getattr(indices, 'dtype', type(indices))}")
        self.indices = indices.to("cpu", torch.int64)
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.indices.numel()

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(self.indices.tolist())
        g = torch.Generator().manual_seed(hash((self.seed, self.epoch)) & (2**63 - 1))
        return iter(self.indices[torch.randperm(len(self.indices), generator=g)].tolist())
