"""How every loader-consuming API reads a batch, and the checks that catch a wrong argument early.

A batch is ``(inputs, targets)``, ``(inputs, targets, indices)`` (what a DataLoader over an
:class:`~dsampling_ext.IndexedDataset` yields) or a dict holding the keys ``input_key``,
``target_key`` and, optionally, ``index_key``. Inputs may be any pytree of tensors; targets and
indices are tensors whose first dimension is the batch.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple, Optional

import torch
from torch import Tensor, nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, IterableDataset, SequentialSampler

from . import distributed

__all__ = ["BatchFields", "batches_from", "check_loader", "check_model", "is_sequential", "skip_empty", "split_batch"]


class BatchFields(NamedTuple):
    """The parts of one batch: inputs (any pytree), targets (Tensor[B]), indices (Tensor[B] or None)."""

    inputs: Any
    targets: Tensor
    indices: Optional[Tensor]


def split_batch(batch: Any, input_key: str = "input", target_key: str = "target",
                index_key: str = "index") -> BatchFields:
    """Read ``batch`` as (inputs, targets, indices-or-None); a ValueError/TypeError says what was wrong."""
    if isinstance(batch, Mapping):
        missing = [f"{arg}={key!r}" for arg, key in (("input_key", input_key), ("target_key", target_key))
                   if key not in batch]
        if missing:
            raise ValueError(f"the loader's dict batches must hold {' and '.join(missing)}; got keys "
                             f"{sorted(map(str, batch))} (pass input_key=/target_key=/index_key= to name yours)")
        fields = BatchFields(batch[input_key], batch[target_key], batch.get(index_key))
    elif isinstance(batch, (tuple, list)) and len(batch) in (2, 3):
        fields = BatchFields(batch[0], batch[1], batch[2] if len(batch) == 3 else None)
    else:
        raise ValueError("the loader must yield (inputs, targets), (inputs, targets, indices) or a dict batch, got "
                         f"{type(batch).__name__}{f' of {len(batch)}' if isinstance(batch, (tuple, list)) else ''}")
    if not isinstance(fields.targets, Tensor) or fields.targets.dim() == 0:
        raise TypeError(f"the loader's targets must be a tensor with a batch dimension, got "
                        f"{type(fields.targets).__name__}")
    if fields.indices is not None:
        idx = fields.indices
        if not isinstance(idx, Tensor) or idx.dim() != 1 or idx.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"the loader's indices must be a 1-D int64 tensor, got "
                            f"{getattr(idx, 'dtype', type(idx).__name__)}")
        if idx.shape[0] != fields.targets.shape[0]:
            raise ValueError(f"the loader's indices ({idx.shape[0]}) and targets ({fields.targets.shape[0]}) "
                             "must have the same length")
    return fields


def batches_from(loader, position: int, epoch: int) -> Iterator[Any]:
    """The loader's batches from raw batch ``position`` on: a per-batch loop resumed mid-epoch
    skips (without a forward) the batches the saved run consumed."""
    batches = iter(loader)
    skipped = sum(1 for _ in itertools.islice(batches, position))
    if skipped < position:
        raise ValueError(f"cannot resume at raw batch {position} of epoch {epoch}: the loader has only {skipped}")
    return batches


def skip_empty(targets: Tensor) -> bool:
    """Whether a per-batch loop skips this batch: it is empty. Under torch.distributed that is an
    error, since every rank must run the same number of selection steps (their collectives)."""
    if targets.shape[0]:
        return False
    if distributed.active():
        raise ValueError("the loader yielded an empty batch; under torch.distributed every rank must see the same "
                         "number of non-empty batches")
    return True


def check_loader(loader, name: str = "loader") -> None:
    """TypeError naming ``name`` unless ``loader`` can be an iterable of batches."""
    if isinstance(loader, nn.Module):
        raise TypeError(f"{name} must be an iterable of batches (e.g. a torch DataLoader), got the model "
                        f"{type(loader).__name__}: are the arguments in the wrong order?")
    if isinstance(loader, Dataset) and not isinstance(loader, IterableDataset):
        raise TypeError(f"{name} must be an iterable of batches, got the dataset {type(loader).__name__} (it yields "
                        f"single samples): wrap it, DataLoader({type(loader).__name__.lower()}, batch_size=...)")
    if isinstance(loader, (Tensor, str, bytes, Mapping)) or not isinstance(loader, Iterable):
        raise TypeError(f"{name} must be an iterable of batches (e.g. a torch DataLoader), got {type(loader).__name__}")


def check_model(model, name: str = "model") -> None:
    if not isinstance(model, nn.Module):
        hint = ": are the arguments in the wrong order?" if isinstance(model, (DataLoader, Dataset, Iterable)) else ""
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}{hint}")


def is_sequential(loader) -> bool:
    """Whether the loader yields the dataset in index order (so the running position is the index)."""
    return (isinstance(loader, DataLoader) and not isinstance(loader.dataset, IterableDataset)
            and isinstance(loader.sampler, SequentialSampler) and type(loader.batch_sampler) is BatchSampler)
