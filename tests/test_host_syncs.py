"""The per-step paths make no hidden host synchronisation: every `.item()`, `bool()` or `int()`
of a tensor goes through aten._local_scalar_dense, which a dispatch mode counts (on the CPU,
where the same code would stall a CUDA stream)."""

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from dsampling_ext import BatchAccumulator, LossHistogramSelector, ScoreTable, selective_batches


class SyncCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


def syncs(fn):
    with SyncCounter() as counter:
        fn()
    return counter.count


def test_selector_select_makes_no_host_sync():
    for warmup in (1, 0):
        for nan in ("error", "ignore"):
            sel = LossHistogramSelector(warmup_epochs=warmup, nan=nan)
            losses, indices = torch.rand(64), torch.arange(64) + 1000
            assert syncs(lambda: sel.select(losses, indices)) == 0
            assert syncs(lambda: sel.select(losses)) == 0


def test_nan_counted_in_warmup_raises_at_set_epoch():
    sel = LossHistogramSelector(warmup_epochs=1)
    assert sel.select(torch.tensor([1.0, float("nan")])).tolist() == [True, True]
    try:
        sel.set_epoch(1)
    except ValueError as error:
        assert "select() was given 1 NaN/Inf losses" in str(error)
    else:
        raise AssertionError("set_epoch must report the NaN seen in warm-up")
    sel.set_epoch(2)  # reported once


def test_selective_batches_steps_make_no_counted_sync():
    # Per raw batch: the selection forward, select, and the accumulator's masked append and batch
    # release. None reads a tensor on the host; on CUDA the boolean-mask append sizes its output
    # inside nonzero (one sync per raw batch, which this CPU count cannot see).
    x, y = torch.randn(256, 8), torch.randint(0, 2, (256,))
    loader = [(x[i : i + 64], y[i : i + 64], torch.arange(i, i + 64)) for i in range(0, 256, 64)]
    model = nn.Linear(8, 2)
    sel = LossHistogramSelector(warmup_epochs=0, threshold=0.0, keep_fraction=0.5)
    batches = selective_batches(loader, model, nn.CrossEntropyLoss(reduction="none"), sel, BatchAccumulator(32))
    per_step = []
    while True:
        with SyncCounter() as counter:
            batch = next(batches, None)
        if batch is None:
            break
        per_step.append(counter.count)
    assert per_step and set(per_step) == {0}


def test_score_table_record_makes_no_host_sync():
    table = ScoreTable(100)
    idx, losses, logits, y = torch.arange(10), torch.rand(10), torch.randn(10, 3), torch.randint(0, 3, (10,))
    assert syncs(lambda: table.record(idx, losses, logits, y)) == 0


def test_selector_select_traces_with_fullgraph():
    sel = LossHistogramSelector(warmup_epochs=0, seed=3)
    eager = LossHistogramSelector(warmup_epochs=0, seed=3)
    compiled = torch.compile(sel.select, fullgraph=True)
    for step in range(3):
        losses = torch.rand(32, generator=torch.Generator().manual_seed(step))
        indices = torch.arange(32) + 100 * step
        assert torch.equal(compiled(losses, indices), eager.select(losses, indices))
    assert torch.equal(sel.loss_history, eager.loss_history)
