"""Turn per-batch keep masks into training batches of exactly ``batch_size`` samples.

Shared by every per-batch selector (loss-histogram sampling, the misclassified filter).
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

import torch
from torch import Tensor
from torch.utils import _pytree as pytree

from ._validate import require_int

__all__ = ["BatchAccumulator", "LEFTOVER_POLICIES"]

#: What happens to selected samples still pending at the end of an epoch.
LEFTOVER_POLICIES = ("carry", "drop", "flush")


class BatchAccumulator:
    """Collect selected samples and emit full training batches.

    ``add(batch, keep)`` takes any pytree (tuple, list, dict, nesting) of tensors that share
    their first dimension B, and a bool mask ``keep`` of shape [B]; the kept rows join a pending
    buffer. ``ready()`` yields every full batch of exactly ``batch_size`` rows (same pytree
    structure, rows in arrival order). ``end_epoch()`` applies the leftover policy:
    ``"carry"`` keeps pending rows for the next epoch (ADONIS Alg. 1 read literally),
    ``"drop"`` discards them, ``"flush"`` returns them as one last, smaller batch.

    Counters always add up: ``selected == trained + dropped + pending`` and ``seen >= selected``.

    Args:
        batch_size: rows per emitted batch, >= 1.
        leftover: one of ``"carry"`` (default), ``"drop"``, ``"flush"``.
    """

    def __init__(self, batch_size: int, leftover: str = "carry"):
        require_int("batch_size", batch_size, 1)
        if leftover not in LEFTOVER_POLICIES:
            raise ValueError(f"leftover must be one of {LEFTOVER_POLICIES}, got {leftover!r}")
        self.batch_size = batch_size
        self.leftover = leftover
        self.seen = self.selected = self.trained = self.dropped = 0
        self._pending: list[Tensor] = []  # flat leaves, concatenated lazily
        self._spec = None
        self._pending_rows = 0

    @property
    def pending(self) -> int:
        """Selected rows waiting for a full batch."""
        return self._pending_rows

    def counters(self) -> dict[str, int]:
        return dict(seen=self.seen, selected=self.selected, trained=self.trained, dropped=self.dropped, pending=self.pending)

    def add(self, batch: Any, keep: Tensor) -> None:
        leaves, spec = pytree.tree_flatten(batch)
        if not leaves or not all(isinstance(t, Tensor) for t in leaves):
            raise TypeError("batch must be a tensor or a pytree (tuple/list/dict) whose leaves are all tensors")
        rows = leaves[0].shape[0] if leaves[0].dim() else -1
        if any(t.dim() == 0 or t.shape[0] != rows for t in leaves):
            raise ValueError(f"batch tensors must share their first dimension, got shapes {[tuple(t.shape) for t in leaves]}")
        if not isinstance(keep, Tensor) or keep.dtype != torch.bool or keep.shape != (rows,):
            raise ValueError(f"keep must be a bool tensor of shape [{rows}], got {getattr(keep, 'dtype', type(keep))} "
                             f"{tuple(getattr(keep, 'shape', ()))}")
        if self._spec is not None and spec != self._spec:
            raise ValueError(f"batch structure changed: expected {self._spec}, got {spec}")
        self._spec = spec
        kept = [t[keep.to(t.device)] for t in leaves]
        n = kept[0].shape[0]
        self.seen += rows
        self.selected += n
        if n:
            self._pending = [torch.cat([p, k]) for p, k in zip(self._pending, kept)] if self._pending else kept
            self._pending_rows += n

    def ready(self, limit: Optional[int] = None) -> Iterator[Any]:
        """Yield each full batch of ``batch_size`` rows now pending (at most ``limit`` of them)."""
        emitted = 0
        while self._pending_rows >= self.batch_size and (limit is None or emitted < limit):
            emitted += 1
            yield self._take(self.batch_size)

    def discard(self) -> int:
        """Drop every pending row now (counted as dropped); returns how many."""
        n = self._pending_rows
        self.dropped += n
        self._pending, self._pending_rows = [], 0
        return n

    def end_epoch(self) -> list[Any]:
        """Apply the leftover policy; returns ``[last partial batch]`` for "flush", else ``[]``."""
        if self.leftover == "carry" or not self._pending_rows:
            return []
        if self.leftover == "drop":
            self.discard()
            return []
        return [self._take(self._pending_rows)]

    def _take(self, n: int) -> Any:
        out = [t[:n] for t in self._pending]
        self._pending = [t[n:] for t in self._pending]
        self._pending_rows -= n
        self.trained += n
        if not self._pending_rows:
            self._pending = []
        return pytree.tree_unflatten(out, self._spec)

    def state_dict(self) -> dict:
        return dict(batch_size=self.batch_size, leftover=self.leftover, counters=self.counters(),
                    pending=[t.clone() for t in self._pending],
                    spec=None if self._spec is None else pytree.treespec_dumps(self._spec))

    def load_state_dict(self, state: dict) -> None:
        if state["batch_size"] != self.batch_size or state["leftover"] != self.leftover:
            raise ValueError(f"state is for batch_size={state['batch_size']}, leftover={state['leftover']!r}; this "
                             f"accumulator has batch_size={self.batch_size}, leftover={self.leftover!r}")
        c = state["counters"]
        self.seen, self.selected, self.trained, self.dropped = c["seen"], c["selected"], c["trained"], c["dropped"]
        self._pending = [t.clone() for t in state["pending"]]
        self._pending_rows = c["pending"]
        self._spec = None if state["spec"] is None else pytree.treespec_loads(state["spec"])
