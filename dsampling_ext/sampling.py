"""Samplers shared by the methods that train on a chosen set of dataset indices, and their
sharding across data-parallel ranks (the same rule as torch's DistributedSampler)."""

from __future__ import annotations

import itertools
import math
import operator
from typing import Iterator, Optional

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import Dataset, Sampler, TensorDataset

from ._validate import as_int, require_epoch, require_int, require_seed

__all__ = ["IndexSubsetSampler", "IndexedDataset", "resolve_replicas", "shard"]


def resolve_replicas(num_replicas: Optional[int], rank: Optional[int]) -> tuple[int, int]:
    """(num_replicas, rank): as given, else from the initialised process group, else (1, 0)."""
    if num_replicas is None:
        num_replicas = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if rank is None:
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    num_replicas = require_int("num_replicas", num_replicas, 1)
    rank = as_int("rank", rank)
    if not 0 <= rank < num_replicas:
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


class ResumableSampler(Sampler[int]):
    """A sampler that knows its position within the epoch, for mid-epoch resume.

    ``position`` counts the indices this epoch's iterator has handed out (0 again once it ran to
    its end). :meth:`state_dict` records it with the epoch (the protocol that torchdata's ``StatefulDataLoader`` calls); after
    :meth:`load_state_dict`, the next iteration of that same epoch skips that many indices, so a
    loader resumes where the saved run was. ``set_epoch`` with another epoch starts it afresh.

    Subclasses implement ``_epoch_order()`` (this rank's indices for ``self.epoch``) and add their
    own fields to ``_state()`` / ``_load_state()``.

    A plain DataLoader with workers prefetches: its sampler runs up to
    ``num_workers * prefetch_factor`` batches ahead of the training loop, so for an exact resume
    either save through ``StatefulDataLoader`` (which snapshots the sampler per batch), or set
    ``state["position"]`` to the number of samples the loop consumed before loading it.
    """

    epoch: int
    _epoch_named: Optional[int] = None  # the epoch set_epoch last named (None: not called yet)
    _resume: Optional[tuple[int, int]] = None  # (epoch, indices to skip) from load_state_dict
    _rest: Optional[Iterator[int]] = None  # the running epoch's list iterator
    _total = 0  # its epoch's length
    _position = 0  # the position when no epoch is running
    _finished: Optional[int] = None  # the last epoch whose iteration ran to its end

    def _epoch_order(self) -> Tensor:
        raise NotImplementedError

    @property
    def position(self) -> int:
        """Indices handed out in this epoch, read from the list iterator (no per-index Python work)."""
        if self._rest is None:
            return self._position
        return self._total - operator.length_hint(self._rest)

    @position.setter
    def position(self, value: int) -> None:
        self._rest, self._position = None, value

    def __iter__(self) -> Iterator[int]:
        order = self._epoch_order().tolist()
        start = 0
        if self._resume is not None and self._resume[0] == self.epoch:
            start = min(self._resume[1], len(order))
        self._resume = None
        self._total, self._rest = len(order), iter(order)
        self._rest.__setstate__(start)  # skip the resumed part without copying the list
        return itertools.chain(self._start(start), self._rest, self._finish())

    def _start(self, start: int) -> Iterator[int]:
        """Runs when the epoch's first index is taken, ``start`` being where it resumes (loaders
        make and drop iterators unused: torchdata's, before loading a state)."""
        yield from ()

    def _finish(self) -> Iterator[int]:
        """Runs when the epoch's last index has been taken: iterating it again starts afresh."""
        self.position = 0
        self._finished = self.epoch
        yield from ()

    def set_epoch(self, epoch: int) -> None:
        """As with DistributedSampler. Another epoch starts at position 0; the same epoch keeps
        its position (a resumed loop calls it again for the epoch it saved in)."""
        epoch = require_epoch(epoch)
        if epoch != self.epoch:
            self.position = 0
        self.epoch = self._epoch_named = epoch

    def state_dict(self) -> dict:
        return dict(config=repr(self), epoch=self.epoch, position=self.position, num_replicas=self.num_replicas,
                    **self._state())

    def load_state_dict(self, state: dict) -> None:
        """Restore a saved state. Its configuration must match (the world size may differ only at
        an epoch boundary: a position counts this rank's share of the epoch).

        Before or after ``set_epoch``: a state of the epoch that set_epoch named (or of any epoch,
        when set_epoch was not called) resumes that epoch at its position; a state of an earlier
        epoch than set_epoch named leaves that epoch alone (torchdata's ``StatefulDataLoader``
        loads it only at the next ``iter()``, after the loop's set_epoch for the next epoch).
        """
        if state.get("config") != repr(self):
            raise ValueError(f"state was saved by {state.get('config')}, not by {self!r}")
        position = require_int("position", state["position"], 0)
        if position and state["num_replicas"] != self.num_replicas:
            raise ValueError(f"state was saved mid-epoch (position {position}) with num_replicas="
                             f"{state['num_replicas']}; it can resume only with the same number, not {self.num_replicas}")
        epoch = require_epoch(state["epoch"])
        self._load_state(state)
        if self._epoch_named is not None and self._epoch_named > epoch:
            return
        self.epoch = epoch
        self.position = position
        self._resume = (self.epoch, position)

    def _state(self) -> dict:
        return {}

    def _load_state(self, state: dict) -> None:
        pass


class IndexSubsetSampler(ResumableSampler):
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
        self.set_indices(indices)
        self.shuffle = bool(shuffle)
        self.seed = require_seed(seed)
        self.epoch = require_epoch(epoch)
        self.num_replicas, self.rank = resolve_replicas(num_replicas, rank)

    def set_indices(self, indices: Tensor) -> None:
        """Replace the set in place (the sampler a DataLoader holds, persistent workers included,
        serves the new set from its next iteration)."""
        if not isinstance(indices, Tensor) or indices.dim() != 1 or indices.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"indices must be a 1-D int64 tensor, got {getattr(indices, 'dtype', type(indices))}")
        self.indices = indices.to("cpu", torch.int64)

    def __repr__(self) -> str:
        return f"IndexSubsetSampler(size={self.indices.numel()}, shuffle={self.shuffle}, seed={self.seed})"

    def __len__(self) -> int:
        return sharded_length(self.indices.numel(), self.num_replicas)

    def _epoch_order(self) -> Tensor:
        order = self.indices
        if self.shuffle:
            g = torch.Generator().manual_seed(hash((self.seed, self.epoch)) & (2**63 - 1))
            order = order[torch.randperm(len(order), generator=g)]
        return shard(order, self.num_replicas, self.rank)

    def _state(self) -> dict:
        return dict(indices=self.indices.clone())

    def _load_state(self, state: dict) -> None:
        self.indices = state["indices"].clone()


class IndexedDataset(Dataset):
    """Wrap a map-style dataset so that each item also carries its dataset index.

    An item ``(x, y)`` (any tuple or list) becomes ``(x, y, index)``; a dict gets the key
    ``index_key``; anything else ``(item, index)``. The default collate then yields batches
    ``(inputs, targets, indices)``, which every loader-consuming API of the library accepts,
    and the index is always the true dataset index, however the loader shuffles.

    A DataLoader fetches a batch through ``__getitems__``: from a ``TensorDataset`` with one
    index op per tensor, from a dataset with its own ``__getitems__`` through that, else item by
    item; the batches are the same in every case.

    Args:
        dataset: any map-style dataset (``__getitem__`` and ``__len__``).
        index_key: the key added to dict items (default "index").

    Example:
        >>> import torch, dsampling_ext
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> data = dsampling_ext.IndexedDataset(TensorDataset(torch.arange(10.0), torch.arange(10) % 2))
        >>> data[3]
        (tensor(3.), tensor(1), 3)
        >>> x, y, idx = next(iter(DataLoader(data, batch_size=4, shuffle=True)))
        >>> bool((x == idx).all())  # each row's true dataset index, however the loader shuffles
        True
    """

    def __init__(self, dataset, index_key: str = "index"):
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(f"dataset must be a map-style dataset (with __getitem__ and __len__), got "
                            f"{type(dataset).__name__}")
        self.dataset, self.index_key = dataset, index_key

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self._with_index(self.dataset[index], index)

    def __getitems__(self, indices: list) -> list:
        """The items of a batch of indices (what DataLoader's fetcher calls when it exists)."""
        dataset = self.dataset
        # a TensorDataset subclass with its own __getitem__ must have it called
        if type(dataset).__getitem__ is TensorDataset.__getitem__:
            rows = torch.as_tensor(indices)
            return list(zip(*(t[rows].unbind(0) for t in dataset.tensors), indices))
        getitems = getattr(dataset, "__getitems__", None)
        items = getitems(indices) if callable(getitems) else [dataset[i] for i in indices]
        return [self._with_index(item, index) for item, index in zip(items, indices)]

    def _with_index(self, item, index):
        if isinstance(item, dict):
            if self.index_key in item:
                raise ValueError(f"the dataset's items already hold the key {self.index_key!r}; pass another index_key")
            return {**item, self.index_key: index}
        if isinstance(item, (tuple, list)):
            return (*item, index)
        return item, index
