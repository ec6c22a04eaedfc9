"""The score-table ops and ScoreTable / PruningSampler on CUDA against the CPU, bit for bit.
Skipped without a GPU."""

import pytest
import torch

import dsampling_ext
from dsampling_ext import ops

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)


def _table(n, epoch, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    seen = torch.randint(-1, epoch + 1, (n,), generator=g, dtype=torch.int32)
    scores = (torch.empty(n, dtype=torch.float64).exponential_(generator=g) * 3).round(decimals=2).to(dtype)  # ties
    return scores, seen


@pytest.mark.parametrize("rule", ["mean", "pmf", "percentile", "mismatch"])
@pytest.mark.parametrize("n", [1, 5, 4096, 4097, 100_003, 3_000_001])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_table_select_identical(rule, n, dtype):
    scores, seen = _table(n, 4, n, dtype)
    if rule == "mismatch":
        scores = torch.randint(-1, 2, (n,), dtype=torch.int8, generator=torch.Generator().manual_seed(1))
    for kwargs in (dict(), dict(prune=0.8, staleness=1, bins=17, threshold=0.02, beta=2.5, seed=-3, offset=2**33)):
        want = ops.table_select(scores, seen, 4, rule, **kwargs)
        got = ops.table_select(scores.cuda(), seen.cuda(), 4, rule, **kwargs)
        assert torch.equal(got[0].cpu(), want[0]) and torch.equal(got[1].cpu(), want[1])


def test_table_select_nothing_scored_and_empty():
    for rule in ("mean", "pmf", "percentile"):
        idx, w = ops.table_select(torch.zeros(10, device="cuda"), torch.full((10,), -1, dtype=torch.int32, device="cuda"), 1, rule,
                                  reweight=False)
        assert idx.tolist() == list(range(10)) and w.tolist() == [1.0] * 10
    idx, w = ops.table_select(torch.zeros(0, device="cuda"), torch.zeros(0, dtype=torch.int32, device="cuda"), 0)
    assert idx.numel() == 0 and w.numel() == 0


@pytest.mark.parametrize("logits_dtype", [None, torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("n,rows,classes", [(1000, 700, 7), (50, 700, 7), (30, 4100, 1000), (3, 64, 40)])
def test_table_record_identical(logits_dtype, n, rows, classes):
    # n < rows: every index recorded many times in one call; each keeps its last record on both devices
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(n, generator=g)[:rows] if rows <= n else torch.randint(0, n, (rows,), generator=g)
    losses = torch.rand(rows, generator=g)
    logits = None if logits_dtype is None else torch.randn(rows, classes, generator=g).to(logits_dtype)
    targets = None if logits_dtype is None else torch.randint(0, classes, (rows,), generator=g)
    tables = []
    for device in ("cpu", "cuda"):
        table = dsampling_ext.ScoreTable(n, device=device)
        table.record(idx, losses, logits, targets)
        tables.append([t.cpu() for t in (table.scores, table.correct, table.seen_epoch)])
    assert all(torch.equal(a, b) for a, b in zip(*tables))


def test_a_duplicate_with_a_nonfinite_loss_leaves_the_last_finite_record():
    scores, correct, seen = (torch.zeros(4, device="cuda"), torch.full((4,), -1, dtype=torch.int8, device="cuda"),
                             torch.full((4,), -1, dtype=torch.int32, device="cuda"))
    logits = torch.tensor([[0.0, 1.0], [1.0, 0.0], [2.0, 0.0]], device="cuda")
    ops.table_record_(scores, correct, seen, torch.tensor([1, 1, 1], device="cuda"),
                      torch.tensor([0.25, 0.5, float("nan")], device="cuda"), 3, logits,
                      torch.tensor([1, 1, 0], device="cuda"))
    assert (scores[1].item(), correct[1].item(), seen[1].item()) == (0.5, 0, 3)


def test_nonfinite_losses_are_skipped_and_reported():
    table = dsampling_ext.ScoreTable(10, device="cuda")
    table.record(torch.tensor([1, 2]), torch.tensor([0.5, float("nan")]))
    assert table.seen_epoch.tolist()[1:3] == [0, -1]
    sampler = dsampling_ext.PruningSampler(table, 3)
    with pytest.raises(ValueError, match="losses must be finite: 1 NaN/Inf"):
        sampler.set_epoch(1)


def test_pruning_sampler_on_a_cuda_table_matches_the_cpu():
    runs = []
    for device in ("cpu", "cuda"):
        table = dsampling_ext.ScoreTable(5000, device=device)
        sampler = dsampling_ext.PruningSampler(table, 5, seed=3)
        epochs = []
        for epoch in range(5):
            sampler.set_epoch(epoch)
            order = list(sampler)
            idx = torch.tensor(order, device=device)
            table.record(idx, torch.sin(idx.float()) + 1.0)
            epochs.append((order, sampler.weights(idx).cpu().tolist()))
        runs.append(epochs)
    assert runs[0] == runs[1]
