"""Every method makes the same decision on every rank: two gloo processes on this machine."""

import datetime

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

import dsampling_ext
from dsampling_ext import (
    BatchAccumulator,
    DynamicPartitionSampler,
    ImportanceSampler,
    LossHistogramSelector,
    MisclassifiedFilter,
    PrototypeSelection,
    PruningSampler,
    RandomSubsetSampler,
    ScoreTable,
    selective_batches,
)

WORLD = 2


def gather_objects(obj):
    out = [None] * WORLD
    dist.all_gather_object(out, obj)
    return out


def check_samplers(rank):
    for cls in (DynamicPartitionSampler, RandomSubsetSampler):
        sampler = cls(1000, 0.3, seed=1)  # num_replicas and rank from the process group
        assert (sampler.num_replicas, sampler.rank) == (WORLD, rank)
        for epoch in range(3):
            sampler.set_epoch(epoch)
            state = sampler.state_dict()  # at the epoch's start: a position 0 loads into any world size
            shards = gather_objects(list(sampler))
            whole = cls(1000, 0.3, seed=1, num_replicas=1, rank=0)
            whole.load_state_dict(state)
            whole.set_epoch(epoch)
            expected = list(whole)
            assert shards[0] == expected[0::2] and shards[1] == expected[1::2]
            if cls is DynamicPartitionSampler:
                sampler.update([0.5, 0.505, 0.3][epoch])  # the same (all-reduced) accuracy on every rank
                perms = gather_objects(sampler.perm.tolist())
                assert perms[0] == perms[1]


def check_histogram_selector(rank):
    g = torch.Generator().manual_seed(100 + rank)
    sel = LossHistogramSelector(warmup_epochs=0, history=256, seed=3)
    history, state = torch.zeros(256), torch.zeros(2, dtype=torch.int64)
    for step in range(6):
        losses = torch.empty(48 + 8 * rank).exponential_(generator=g)  # ranks hold different batch sizes
        indices = torch.arange(48 + 8 * rank) + 1000 * rank + 100000 * step
        keep = sel.select(losses, indices)
        everyone = gather_objects((losses, indices))
        full_keep, _ = dsampling_ext.histogram_select(
            history, state, torch.cat([l for l, _ in everyone]), keys=torch.cat([i for _, i in everyone]), seed=3,
            offset=step)
        start = 0 if rank == 0 else everyone[0][0].numel()
        assert torch.equal(keep, full_keep[start : start + losses.numel()])
    histories = gather_objects(sel.loss_history.tolist())
    assert histories[0] == histories[1]


def check_lockstep(rank):
    torch.manual_seed(0)
    n = 600
    x = torch.randn(n, 8, generator=torch.Generator().manual_seed(rank))  # each rank its own shard
    y = (x[:, 0] > 0).long()
    y[: 100 * (rank + 1)] = 1 - y[: 100 * (rank + 1)]  # rank 1 has more errors / higher losses
    loader = DataLoader(TensorDataset(x, y, torch.arange(n)), batch_size=50)
    model = nn.Linear(8, 2)
    sel = LossHistogramSelector(warmup_epochs=0, threshold=0.0, keep_fraction=0.5, seed=1)
    acc = BatchAccumulator(32)
    sizes = [len(b[1]) for b in selective_batches(loader, model, nn.CrossEntropyLoss(reduction="none"), sel, acc)]
    counts = gather_objects(len(sizes))
    assert counts[0] == counts[1] and counts[0] > 0 and set(sizes) == {32}
    filt = MisclassifiedFilter(32, fallback_after=None)
    filtered = gather_objects(len(list(filt.batches(loader, model))))
    assert filtered[0] == filtered[1] > 0
    # epoch mode: each rank filters its own half; all ranks then sample from the union
    shard = DataLoader(TensorDataset(x, y, torch.arange(n) + n * rank), batch_size=50)
    sampler = MisclassifiedFilter(32, mode="epoch").epoch_sampler(model, shard)
    sets = gather_objects(sampler.indices.tolist())
    assert sets[0] == sets[1]  # one kept set on every rank...
    union = set(sets[0])
    assert any(i < n for i in union) and any(i >= n for i in union)  # ...drawn from both ranks' halves
    shards = gather_objects(list(sampler))
    assert len(shards[0]) == len(shards[1]) == -(-len(union) // 2) and set(shards[0] + shards[1]) == union
    with pytest.raises(ValueError, match="flush"):
        list(selective_batches(loader, model, nn.CrossEntropyLoss(reduction="none"), sel, BatchAccumulator(32, "flush")))


def check_score_table(rank):
    """Each rank records the losses of its own shard; at every epoch all ranks hold one table and
    make one selection, and their shards partition it."""
    n = 500
    table = ScoreTable(n)
    sampler = PruningSampler(table, epochs=4, prune=0.5, anneal=0.25, seed=5)
    filt = MisclassifiedFilter(16, mode="epoch", scores="training", keep_correct=0.2).epoch_sampler(table=table)
    g = torch.Generator().manual_seed(rank)
    for epoch in range(4):
        sampler.set_epoch(epoch)
        filt.set_epoch(epoch)
        mine = list(sampler)
        shards = gather_objects(mine)
        kept = sampler.indices.tolist()
        assert gather_objects(kept)[0] == gather_objects(kept)[1]
        assert sorted(set(shards[0]) | set(shards[1])) == kept and len(shards[0]) == len(shards[1])
        assert gather_objects(filt.indices.tolist())[0] == filt.indices.tolist()
        tables = gather_objects((table.scores.tolist(), table.seen_epoch.tolist(), table.correct.tolist()))
        assert tables[0] == tables[1]
        if epoch in (1, 2):
            assert len(kept) < n  # the other rank's records arrived: the epoch was pruned
        else:
            assert len(kept) == n  # nothing scored yet; the annealed last epoch
        for start in range(0, len(mine), 32):  # this rank trains its shard: different losses per rank
            idx = torch.tensor(mine[start : start + 32])
            logits = torch.randn(len(idx), 3, generator=g)
            table.record(idx, torch.rand(len(idx), generator=g), logits, torch.randint(0, 3, (len(idx),), generator=g))
    table.sync()
    tables = gather_objects((table.scores.tolist(), table.seen_epoch.tolist()))
    assert tables[0] == tables[1]


def check_score_table_replay(rank):
    """sync replays the records in rank order, each index keeping its last record, and its last
    known correctness: a later record without logits leaves the correctness it had."""
    table = ScoreTable(6)
    table.set_epoch(2)
    right, wrong = torch.tensor([[5.0, 0.0]]), torch.tensor([[0.0, 5.0]])
    if rank == 0:
        table.record(torch.tensor([1, 3]), torch.tensor([1.0, 3.0]), torch.cat([right, right]), torch.tensor([0, 0]))
        table.record(torch.tensor([1]), torch.tensor([2.0]))
    else:
        table.record(torch.tensor([1, 4]), torch.tensor([11.0, 14.0]), torch.cat([wrong, right]), torch.tensor([0, 0]))
        table.record(torch.tensor([4, 3]), torch.tensor([15.0, 13.0]))
    table.sync()
    assert table.scores.tolist() == [0.0, 11.0, 0.0, 13.0, 15.0, 0.0]
    assert table.correct.tolist() == [-1, 0, -1, 1, 1, -1]
    assert table.seen_epoch.tolist() == [-1, 2, -1, 2, 2, -1]


def check_importance_sampler(rank):
    """One global draw per step, each rank its slice; group sums and counts all-reduced, so both
    ranks hold one distribution, the one a single process gets from both ranks' batches."""
    n, batch = 400, 8
    groups = torch.arange(n) % 5
    for within in ("uniform", "score"):
        sampler = ImportanceSampler(n, groups, batch, within=within, seed=4)
        single = ImportanceSampler(n, groups, batch * WORLD, within=within, seed=4, num_replicas=1, rank=0)
        assert len(sampler) == len(single) == 25
        g = torch.Generator().manual_seed(rank)
        for epoch in range(3):
            sampler.set_epoch(epoch)
            single.set_epoch(epoch)
            p = sampler.epoch_probabilities
            ps = gather_objects(p)
            assert torch.equal(ps[0], ps[1])
            torch.testing.assert_close(p, single.epoch_probabilities, rtol=1e-6, atol=0)
            shards = gather_objects(list(sampler))
            whole, _ = dsampling_ext.ops.weighted_sample(p, 25 * batch * WORLD, 4, epoch)
            for r in range(WORLD):
                assert torch.tensor(shards[r]).flatten().tolist() == [
                    i for b in range(25) for i in whole[b * batch * WORLD + r * batch :][:batch].tolist()]
            for step, mine in enumerate(shards[rank]):  # each rank trains its slice: its own logits
                idx = torch.tensor(mine)
                z = torch.randn(batch, 3, generator=g) * (1 + groups[idx, None])
                y = torch.randint(0, 3, (batch,), generator=g)
                sampler.update(idx, z, y)
                everyone = gather_objects((idx, z, y))
                single.update(torch.cat([e[0] for e in everyone]), torch.cat([e[1] for e in everyone]),
                              torch.cat([e[2] for e in everyone]))
        stats = gather_objects((sampler.group_sum_sq, sampler.group_count))
        assert torch.equal(stats[0][0], stats[1][0]) and torch.equal(stats[0][1], stats[1][1])
        if within == "score":
            tables = gather_objects((sampler.scores, sampler.scored))
            assert torch.equal(tables[0][0], tables[1][0]) and torch.equal(tables[0][1], tables[1][1])


def check_prototypes(rank):
    """IDS under DDP: each rank embeds its DistributedSampler shard (300 samples do not split
    evenly in 2: the padded shard repeats one), the ranks gather, every rank fits the single-process
    selection, and their epoch shards partition it; a refit (refit_every) does the same again."""
    g = torch.Generator().manual_seed(7)  # the same data and model on every rank
    n = 301
    y = torch.randint(0, 4, (n,), generator=g)
    x = 3 * torch.randn(4, 6, generator=g)[y] + torch.randn(n, 6, generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 4))
    dataset = dsampling_ext.IndexedDataset(TensorDataset(x, y))
    loader = DataLoader(dataset, batch_size=40, sampler=DistributedSampler(dataset, shuffle=True, seed=3))
    sel = PrototypeSelection(0.6, switch_epoch=2, seed=4, refit_every=3).fit_model(model, loader, progress=False)
    assert (sel.num_replicas, sel.rank) == (WORLD, rank)
    with torch.no_grad():
        whole = PrototypeSelection(0.6, switch_epoch=2, seed=4, num_replicas=1, rank=0).fit(model[:2](x), y)
    assert torch.equal(sel.easy_indices, whole.easy_indices) and torch.equal(sel.hard_indices, whole.hard_indices)
    for epoch in range(4):
        if epoch == 3:  # the models moved apart identically on every rank; set_epoch(3) re-embeds
            with torch.no_grad():
                for p in model.parameters():
                    p.mul_(-1.5)
                whole.fit(model[:2](x), y)
        sel.set_epoch(epoch)
        whole.set_epoch(epoch)
        expected = list(whole)
        shards = gather_objects(list(sel))
        padded = expected + expected[: 2 * len(shards[0]) - len(expected)]  # DistributedSampler's padding
        assert shards[0] == padded[0::2] and shards[1] == padded[1::2]
        assert sorted(set(shards[0]) | set(shards[1])) == sorted(expected)
    assert sel.fitted_epoch == 3 and torch.equal(sel.hard_indices, whole.hard_indices)


def worker(rank, init_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=60))
    try:
        torch.set_num_threads(1)
        check_samplers(rank)
        check_histogram_selector(rank)
        check_lockstep(rank)
        check_score_table(rank)
        check_score_table_replay(rank)
        check_importance_sampler(rank)
        check_prototypes(rank)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_agree(tmp_path):
    mp.spawn(worker, args=(str(tmp_path / "rendezvous"),), nprocs=WORLD, join=True)
