"""The random-subset control (RS2 / the RPD baseline of seed 003): a fresh uniformly random
fraction of the dataset every epoch, with no statistics, so that a method's speed-up can be told
apart from merely seeing less data (SPEC section 6)."""

from __future__ import annotations

from typing import Optional, Sized, Union

from torch import Tensor

from . import ops
from ._validate import require_seed
from .partition import _num_samples, resolve_size
from .sampling import ResumableSampler, resolve_replicas, shard, sharded_length

__all__ = ["RandomSubsetSampler"]


class RandomSubsetSampler(ResumableSampler):
    """Each epoch, ``fraction`` of the dataset drawn uniformly without replacement, in random order.

    Epoch e's subset depends only on (seed, e) (``random_subset`` op: O(size) partial
    Fisher-Yates), so ranks agree and resuming is just ``set_epoch``.

    Args:
        data_source: dataset (anything with len) or its size N.
        fraction: share of N per epoch in (0, 1], or a count in [1, N].
        seed: seed of the draws.
        num_replicas, rank: data-parallel sharding (default: from torch.distributed, else 1, 0).

    Example:
        >>> import dsampling_ext
        >>> sampler = dsampling_ext.RandomSubsetSampler(10, 0.3, seed=1)
        >>> sampler.set_epoch(2)
        >>> first = list(sampler)
        >>> len(first), len(set(first)), list(sampler) == first  # epoch 2's subset depends on (seed, 2) only
        (3, 3, True)
    """

    def __init__(self, data_source: Union[int, Sized], fraction: Union[float, int], seed: int = 0,
                 num_replicas: Optional[int] = None, rank: Optional[int] = None):
        self.num_samples = _num_samples(data_source)
        self.size = resolve_size(fraction, self.num_samples, "fraction")
        self.seed = require_seed(seed)
        self.epoch = 0
        self.num_replicas, self.rank = resolve_replicas(num_replicas, rank)

    def __repr__(self) -> str:
        return f"RandomSubsetSampler(num_samples={self.num_samples}, size={self.size}, seed={self.seed})"

    def __len__(self) -> int:
        return sharded_length(self.size, self.num_replicas)

    def _epoch_order(self) -> Tensor:
        return shard(ops.random_subset(self.num_samples, self.size, self.seed, self.epoch), self.num_replicas, self.rank)
