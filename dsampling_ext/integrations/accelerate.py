"""Hugging Face accelerate: a loader over one of the library's samplers through ``accelerator.prepare``.

``accelerator.prepare(loader)`` shards every map-style loader itself: each process keeps every
``num_processes``-th batch of what the sampler yields (``BatchSamplerShard``). A library sampler
built under the process group that accelerate starts already yields only its rank's share, so
prepared as it is, each epoch would train ``1/num_processes`` of its selection. :func:`prepare`
makes the sampler yield the whole selection (the same on every process) and lets accelerate do
the sharding once; for an :class:`~dsampling_ext.ImportanceSampler` (the loader's
``batch_sampler``) it makes every process yield all of the epoch's batches, so that accelerate's
shard of them is exactly the slice the sampler would have given the rank. A sampler prepared
the plain way is caught at the next epoch: ``TableSampler`` raises when the ranks recorded too
little of the last one, ``ImportanceSampler`` when ``update`` saw too few of its batches.
"""

from __future__ import annotations

from torch.utils.data import DataLoader

from ..importance import ImportanceSampler
from ..sampling import ResumableSampler
from ..scores import TableSampler

__all__ = ["prepare"]


def prepare(accelerator, loader: DataLoader) -> DataLoader:
    """``accelerator.prepare(loader)`` for a DataLoader whose sampler (or batch sampler) is one of
    the library's.

    The sampler is set to one replica (it yields the whole epoch on every process, and its
    ``len`` is the whole epoch's) and accelerate's shard of its batches is returned. Call
    ``set_epoch`` on the returned loader (accelerate passes it to the sampler, and calls it
    itself at each ``iter()`` with its own count of iterations otherwise). An
    :class:`~dsampling_ext.ImportanceSampler` given as ``batch_sampler`` keeps its epoch's draws
    and yields all of its ranks' batches (``batches_per_epoch`` times ``num_replicas``), and
    accelerate hands rank r the batches r, r + num_processes, ...: the batches the sampler would
    have given rank r itself. Call its ``set_epoch`` directly (accelerate does not reach a batch
    sampler's).

    Raises:
        TypeError: ``loader`` is not a DataLoader over a library sampler.
        ValueError: a table sampler's ScoreTable is smaller or larger than the loader's dataset.
    """
    if isinstance(loader, DataLoader) and isinstance(loader.batch_sampler, ImportanceSampler):
        sampler = loader.batch_sampler
        sampler.batches_per_epoch *= sampler.num_replicas  # the same draws per epoch, all yielded on every process
        sampler.num_replicas, sampler.rank = 1, 0
        return accelerator.prepare(loader)
    if not isinstance(loader, DataLoader) or not isinstance(loader.sampler, ResumableSampler):
        raise TypeError(f"loader must be a torch DataLoader whose sampler is a dsampling_ext sampler (or whose "
                        f"batch_sampler is an ImportanceSampler), got {type(loader).__name__} with sampler "
                        f"{type(getattr(loader, 'sampler', None)).__name__}")
    let_accelerate_shard(loader.sampler, loader.dataset)
    return accelerator.prepare(loader)


def let_accelerate_shard(sampler: ResumableSampler, dataset) -> None:
    """Set ``sampler`` to yield the whole epoch on every process (accelerate shards its batches),
    after checking that a table sampler's ScoreTable covers ``dataset``."""
    if isinstance(sampler, TableSampler) and sampler.table.num_samples != len(dataset):
        raise ValueError(f"loader's dataset holds {len(dataset)} samples but the sampler's ScoreTable "
                         f"{sampler.table.num_samples}: build the table with ScoreTable(len(dataset))")
    sampler.num_replicas, sampler.rank = 1, 0
