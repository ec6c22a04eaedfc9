"""Hugging Face accelerate: a loader over one of the library's samplers through ``accelerator.prepare``.

``accelerator.prepare(loader)`` shards every map-style loader itself: each process keeps every
``num_processes``-th batch of what the sampler yields (``BatchSamplerShard``). A library sampler
built under the process group that accelerate starts already yields only its rank's share, so
prepared as it is, each epoch would train ``1/num_processes`` of its selection. :func:`prepare`
makes the sampler yield the whole selection (the same on every process) and lets accelerate do
the sharding once. A sampler prepared the plain way is caught at the next epoch's selection
(``TableSampler`` raises when the ranks recorded too little of the last one).
"""

from __future__ import annotations

from torch.utils.data import DataLoader

from ..sampling import ResumableSampler
from ..scores import TableSampler

__all__ = ["prepare"]


def prepare(accelerator, loader: DataLoader) -> DataLoader:
    """``accelerator.prepare(loader)`` for a DataLoader whose sampler is one of the library's.

    The sampler is set to one replica (it yields the whole epoch on every process, and its
    ``len`` is the whole epoch's) and accelerate's shard of its batches is returned. Call
    ``set_epoch`` on the returned loader (accelerate passes it to the sampler, and calls it
    itself at each ``iter()`` with its own count of iterations otherwise).

    Raises:
        TypeError: ``loader`` is not a DataLoader over a library sampler.
        ValueError: a table sampler's ScoreTable is smaller or larger than the loader's dataset.
    """
    if not isinstance(loader, DataLoader) or not isinstance(loader.sampler, ResumableSampler):
        raise TypeError(f"loader must be a torch DataLoader whose sampler is a dsampling_ext sampler, got "
                        f"{type(loader).__name__} with sampler {type(getattr(loader, 'sampler', None)).__name__}")
    let_accelerate_shard(loader.sampler, loader.dataset)
    return accelerator.prepare(loader)


def let_accelerate_shard(sampler: ResumableSampler, dataset) -> None:
    """Set ``sampler`` to yield the whole epoch on every process (accelerate shards its batches),
    after checking that a table sampler's ScoreTable covers ``dataset``."""
    if isinstance(sampler, TableSampler) and sampler.table.num_samples != len(dataset):
        raise ValueError(f"loader's dataset holds {len(dataset)} samples but the sampler's ScoreTable "
                         f"{sampler.table.num_samples}: build the table with ScoreTable(len(dataset))")
    sampler.num_replicas, sampler.rank = 1, 0
