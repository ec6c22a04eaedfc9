"""ScoreTable, PruningSampler / TableSampler, weighted_mean, ProgressLR and the filter's
training-scored mode, in the loops a user writes."""

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, default_collate

import dsampling_ext
from dsampling_ext import (IndexedDataset, MisclassifiedFilter, ProgressLR, ProgressScheduler, PruningSampler,
                           ScoreTable, TableSampler, weighted_mean)
from reference import table_select_reference


def linear_task(n=600, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return x, y


def train(epochs, sampler, table, x, y, model=None, stop=None, start=None, num_workers=0, persistent=False):
    """A plain loop with the three-line change; returns the (indices, weights) of every step.
    `stop=(epoch, steps)` returns (to checkpoint) after that many steps of that epoch; `start` is
    the epoch a resumed run starts in: the sampler's state knows where in it."""
    torch.manual_seed(0)
    model = model or nn.Linear(x.shape[1], 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(IndexedDataset(TensorDataset(x, y)), batch_size=32, sampler=sampler, num_workers=num_workers,
                        persistent_workers=persistent)
    steps = []
    for epoch in range(start[0] if start else 0, epochs):
        sampler.set_epoch(epoch)
        if stop == (epoch, 0):
            return steps, model
        for i, (xb, yb, idx) in enumerate(loader):
            logits = model(xb)
            losses = nn.functional.cross_entropy(logits, yb, reduction="none")
            table.record(idx, losses, logits, yb)
            w = sampler.weights(idx)
            loss = weighted_mean(losses, w)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps.append((epoch, idx.tolist(), w.tolist()))
            if stop == (epoch, i + 1):
                return steps, model
    return steps, model


def test_epochs_follow_the_rule_and_anneal():
    x, y = linear_task()
    table = ScoreTable(len(y))
    sampler = PruningSampler(table, epochs=8, prune=0.5, anneal=0.25, seed=3)
    snapshots = {}
    loader = DataLoader(IndexedDataset(TensorDataset(x, y)), batch_size=50, sampler=sampler)
    model = nn.Linear(6, 2)
    for epoch in range(8):
        before = (table.scores.clone(), table.seen_epoch.clone())
        sampler.set_epoch(epoch)
        snapshots[epoch] = (before, sampler.indices, len(loader))
        seen = []
        for xb, yb, idx in loader:
            table.record(idx, nn.functional.cross_entropy(model(xb), yb, reduction="none").detach())
            seen += idx.tolist()
        assert sorted(seen) == sampler.indices.tolist()  # each kept index exactly once
    assert snapshots[0][1].tolist() == list(range(600))  # nothing scored yet: all forced
    for epoch in (1, 3, 5):
        (scores, seen_epoch), kept, _ = snapshots[epoch]
        want, _ = table_select_reference(scores, seen_epoch, epoch, "mean", prune=0.5, staleness=3, seed=3, offset=epoch)
        assert torch.equal(kept, want) and kept.numel() < 600
    assert sampler.full_data_from == 6
    assert snapshots[6][1].tolist() == list(range(600)) == snapshots[7][1].tolist()  # the last 25%: everything
    assert snapshots[5][1].numel() < 600
    assert [PruningSampler(table, e, anneal=a).full_data_from for e, a in ((12, 0.125), (4, 0.125), (8, 0.125))] == [10, 3, 7]
    assert snapshots[1][2] == math.ceil(snapshots[1][1].numel() / 50)  # len(loader) known at the epoch's start


def test_weights_of_kept_candidates_and_errors():
    x, y = linear_task()
    table = ScoreTable(len(y))
    sampler = PruningSampler(table, epochs=4, prune=0.75, seed=1)
    table.record(torch.arange(600), torch.linspace(0, 1, 600))  # epoch 0: below-mean = the first half
    sampler.set_epoch(1)
    kept = sampler.indices
    w = sampler.weights(kept)
    assert set(w[kept < 300].tolist()) == {4.0} and set(w[kept >= 300].tolist()) == {1.0}
    assert int((kept >= 300).sum()) == 300  # above the mean: all kept
    dropped = sorted(set(range(300)) - set(kept.tolist()))
    with pytest.raises(ValueError, match=f"indices must be drawn by this sampler in epoch 1; {dropped[0]} was not"):
        sampler.weights(torch.tensor([kept[0].item(), dropped[0]]))
    assert sampler.weights(torch.zeros(0, dtype=torch.int64)).shape == (0,)


def test_max_weight_caps_the_kept_candidates_weight_only():
    table = ScoreTable(600)
    capped = PruningSampler(table, epochs=4, prune=0.75, seed=1, max_weight=2.5)
    plain = PruningSampler(table, epochs=4, prune=0.75, seed=1)
    table.record(torch.arange(600), torch.linspace(0, 1, 600))
    capped.set_epoch(1)
    plain.set_epoch(1)
    kept = capped.indices
    assert torch.equal(kept, plain.indices)  # the same draw: only the weights change
    w = capped.weights(kept)
    assert set(w[kept < 300].tolist()) == {2.5} and set(w[kept >= 300].tolist()) == {1.0}  # min(1 / 0.25, 2.5)
    loose = PruningSampler(table, epochs=4, prune=0.75, seed=1, max_weight=10.0)
    loose.set_epoch(1)
    assert torch.equal(loose.weights(kept), plain.weights(kept))  # a cap above 1/(1 - prune) changes nothing
    assert "max_weight=2.5" in repr(capped)  # part of the configuration a saved state must match


def test_weighted_gradient_is_unbiased():
    """On a fixed linear model, the weighted epoch gradient averaged over R independent draws
    equals the full-data gradient within 4 standard errors (the variance is known exactly:
    a candidate kept with probability q contributes g_i/N with variance (g_i/N)^2 (1/q - 1))."""
    x, y = linear_task(n=400)
    n = len(y)
    model = nn.Linear(6, 2)
    per_sample = []
    for i in range(n):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        per_sample.append(torch.cat([model.weight.grad.flatten(), model.bias.grad]).double())
    grads = torch.stack(per_sample)  # [n, p]
    full = grads.mean(0)
    with torch.no_grad():
        losses = nn.functional.cross_entropy(model(x), y, reduction="none")
    table = ScoreTable(n)
    table.record(torch.arange(n), losses)

    def epoch_gradient(seed, reweight):
        sampler = PruningSampler(table, epochs=10, prune=0.6, seed=seed, reweight=reweight)
        sampler.set_epoch(1)
        kept = sampler.indices
        return (grads[kept] * sampler.weights(kept).double()[:, None]).sum(0) / n

    draws = 300
    mean = torch.stack([epoch_gradient(s, True) for s in range(draws)]).mean(0)
    candidate = (losses.double() < losses.double().mean())
    variance = ((grads[candidate] / n) ** 2 * (1 / 0.4 - 1)).sum(0)
    standard_error = (variance / draws).sqrt()
    assert ((mean - full).abs() <= 4 * standard_error + 1e-12).all(), (mean - full) / standard_error
    # The same estimate without the 1/q weights is biased: it fails the same bound.
    biased = torch.stack([epoch_gradient(s, False) for s in range(draws)]).mean(0)
    assert not ((biased - full).abs() <= 4 * standard_error + 1e-12).all()


def test_resume_mid_epoch_gives_identical_steps():
    x, y = linear_task()
    epochs = 5

    def fresh():
        table = ScoreTable(len(y))
        return table, PruningSampler(table, epochs, prune=0.5, anneal=0.2, seed=7)

    whole_table, sampler = fresh()
    whole, whole_model = train(epochs, sampler, whole_table, x, y)
    for stop in [(1, 0), (2, 5), (3, 11)]:
        table, sampler = fresh()
        first, model = train(epochs, sampler, table, x, y, stop=stop)
        saved = dict(table=table.state_dict(), sampler=sampler.state_dict(), model=model.state_dict())
        table2, sampler2 = fresh()
        table2.load_state_dict(saved["table"])
        sampler2.load_state_dict(saved["sampler"])
        model2 = nn.Linear(6, 2)
        model2.load_state_dict(saved["model"])
        rest, _ = train(epochs, sampler2, table2, x, y, model=model2, start=stop)
        assert first + rest == whole
        assert torch.equal(table2.scores, whole_table.scores) and torch.equal(table2.seen_epoch, whole_table.seen_epoch)


def test_state_from_another_configuration_is_refused():
    table = ScoreTable(100)
    state = PruningSampler(table, 5, prune=0.5).state_dict()
    with pytest.raises(ValueError, match="state was saved by"):
        PruningSampler(table, 5, prune=0.3).load_state_dict(state)
    with pytest.raises(ValueError, match="state is for a table of 100"):
        ScoreTable(99).load_state_dict(table.state_dict())


@pytest.mark.worker_processes
@pytest.mark.parametrize("persistent", [False, True])
def test_dataloader_workers_see_the_same_epochs(persistent):
    x, y = linear_task(n=300)
    runs = []
    for workers in (0, 2):
        table = ScoreTable(len(y))
        sampler = PruningSampler(table, 4, seed=2)
        runs.append(train(4, sampler, table, x, y, num_workers=workers, persistent=persistent and workers > 0)[0])
    assert runs[0] == runs[1]
    assert sum(len(idx) for e, idx, _ in runs[0] if e == 2) < 300  # pruning happened


@pytest.mark.parametrize("rule", ["pmf", "percentile", "mismatch"])
def test_other_rules_on_training_scores(rule):
    x, y = linear_task(n=500)
    table = ScoreTable(len(y))
    sampler = PruningSampler(table, 4, rule=rule, seed=4)  # prune: 0.5 by default where the rule uses it
    train(2, sampler, table, x, y)
    sampler.set_epoch(2)
    source = table.correct if rule == "mismatch" else table.scores
    want, want_w = table_select_reference(source, table.seen_epoch, 2, rule, prune=0.5, staleness=3, seed=4, offset=2)
    assert torch.equal(sampler.indices, want) and torch.equal(sampler.weights(want), want_w)


def test_misclassified_filter_scored_from_training():
    x, y = linear_task(n=400)
    filt = MisclassifiedFilter(16, mode="epoch", scores="training", keep_correct=0.0, staleness=2, seed=1)
    table = ScoreTable(len(y))
    sampler = filt.epoch_sampler(table=table)
    model = nn.Linear(6, 2)
    sampler.set_epoch(0)
    assert len(sampler) == 400
    with torch.no_grad():
        logits = model(x)
    table.record(torch.arange(400), nn.functional.cross_entropy(logits, y, reduction="none"), logits, y)
    sampler.set_epoch(1)
    wrong = (logits.argmax(1) != y).nonzero().flatten()
    assert sampler.indices.tolist() == wrong.tolist()  # keep_correct 0: exactly the misclassified
    table.record(wrong, torch.ones(wrong.numel()), logits[wrong], y[wrong])  # epoch 1 trains only them
    sampler.set_epoch(4)  # the correct ones were last seen in epoch 0: 4 - 0 > staleness 2
    assert len(sampler) == 400
    with pytest.raises(ValueError, match="margin must be None with scores='training'"):
        MisclassifiedFilter(16, mode="epoch", scores="training", margin=0.1)
    with pytest.raises(ValueError, match="scores='training' needs mode='epoch'"):
        MisclassifiedFilter(16, scores="training")
    with pytest.raises(TypeError, match="epoch_sampler\\(table=score_table\\)"):
        filt.epoch_sampler(model, [])


def test_filter_fallback_tops_up_to_the_batch_size():
    table = ScoreTable(100)
    sampler = MisclassifiedFilter(32, mode="epoch", scores="training", keep_correct=0.0).epoch_sampler(table=table)
    table.record(torch.arange(100), torch.zeros(100), torch.eye(2)[torch.zeros(100, dtype=torch.long)],
                 torch.zeros(100, dtype=torch.long))  # every sample right
    sampler.set_epoch(1)
    kept = sampler.indices
    assert kept.numel() == 32 and kept.unique().numel() == 32
    assert torch.equal(sampler.weights(kept), torch.ones(32))


def test_top_up_adds_unkept_indices_ranked_by_the_fill_stream():
    # Scores 0..49: the mean rule's candidates are 0..24 (below 24.5), all dropped with prune=1.0;
    # 25..49 are kept. min_size=40 adds 15 of 0..24: the lowest uniforms of the fill stream
    # (philox_uniform at offset 2**41 + epoch, not the shuffle's 2**40 + epoch), never a kept index.
    table = ScoreTable(50)
    table.record(torch.arange(50), torch.arange(50.0))
    sampler = PruningSampler(table, 10, prune=1.0, reweight=False, anneal=0.0, min_size=40, seed=7)
    sampler.set_epoch(1)
    u = dsampling_ext.philox_uniform(50, 7, 2**41 + 1)
    extra = sorted(sorted(range(25), key=lambda i: (u[i].item(), i))[:15])
    kept = sampler.indices
    assert kept.tolist() == extra + list(range(25, 50))
    assert kept.unique().numel() == 40
    assert torch.equal(sampler.weights(kept), torch.ones(40))


def test_record_errors_name_the_argument():
    table = ScoreTable(10)
    with pytest.raises(ValueError, match=r"losses must have shape \(3,\) \(one per index: use reduction='none'\)"):
        table.record(torch.tensor([1, 2, 3]), torch.tensor(0.5))
    with pytest.raises(TypeError, match="indices must be a torch.Tensor"):
        table.record([1, 2], torch.tensor([0.5, 0.5]))
    with pytest.raises(RuntimeError, match=r"indices must be in \[0, 10\)"):
        table.record(torch.tensor([10]), torch.tensor([0.5]))
    with pytest.raises(RuntimeError, match="losses must be finite, got nan"):
        table.record(torch.tensor([1]), torch.tensor([float("nan")]))
    with pytest.raises(ValueError, match="logits and targets must be given together"):
        table.record(torch.tensor([1]), torch.tensor([0.5]), logits=torch.randn(1, 2))


@pytest.mark.parametrize("kwargs, match", [
    (dict(prune=-0.1), r"prune must be a number in \[0, 1\]"),
    (dict(prune=1.0), r"reweight must be False with prune=1.0"),
    (dict(anneal=1.0), r"anneal must be a number in \[0, 1\)"),
    (dict(rule="median"), "rule must be one of"),
    (dict(epochs=0), "epochs must be an int >= 1"),
    (dict(staleness=0), "staleness must be an int >= 1"),
    (dict(rule="pmf", threshold=1.0), r"threshold must be a number in \[0, 1\)"),
    (dict(prune=0.0), r"prune must be in \(0, 1\], got 0.0 \(nothing would ever be pruned\)"),
    (dict(threshold=0.2), r"threshold is not used by rule='mean' \(its parameters: prune\)"),
    (dict(rule="percentile", prune=0.5), r"prune is not used by rule='percentile' \(its parameters: beta\)"),
    (dict(rule="pmf", beta=3.0, bins=5), r"beta is not used by rule='pmf'"),
    (dict(epochs=5.0), "epochs must be an int, got float"),
    (dict(seed=1.5), "seed must be an int"),
    (dict(max_weight=0.5), r"max_weight must be a number in \[1, inf\] \(a weight cap below 1"),
    (dict(max_weight=2.0, reweight=False), r"max_weight caps the reweighting, which is off for rule 'mean'"),
    (dict(rule="percentile", max_weight=2.0), r"max_weight caps the reweighting, which is off for rule 'percentile'"),
])
def test_sampler_rejects_bad_arguments(kwargs, match):
    args = dict(epochs=5)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        PruningSampler(ScoreTable(10), **args)
    with pytest.raises(TypeError, match="table must be a dsampling_ext.ScoreTable"):
        PruningSampler(torch.zeros(10), 5)


def test_weighted_mean():
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert float(weighted_mean(losses, torch.tensor([2.0, 1.0, 2.0, 1.0]))) == pytest.approx((2 + 2 + 6 + 4) / 4)
    assert float(weighted_mean(losses)) == 2.5
    with pytest.raises(ValueError, match=r"weights must be a tensor of shape \(4,\)"):
        weighted_mean(losses, torch.ones(3))
    with pytest.raises(ValueError, match="losses must be a 1-D tensor of per-sample losses"):
        weighted_mean(losses.mean(), torch.ones(1))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_weighted_mean_gradient_is_weight_over_batch(dtype):
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=dtype, requires_grad=True)
    loss = weighted_mean(losses, torch.tensor([2.0, 1.0, 2.0, 1.0]))  # float32 weights, cast to the losses' dtype
    loss.backward()
    assert loss.dtype == dtype and float(loss.detach()) == (2 + 2 + 6 + 4) / 4  # exact: every term is a multiple of 1/4
    assert torch.equal(losses.grad, torch.tensor([0.5, 0.25, 0.5, 0.25], dtype=dtype))
    assert float(weighted_mean(torch.zeros(0), torch.zeros(0))) == 0.0


def test_progress_lr_ends_its_schedule_whatever_the_steps():
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    schedule = ProgressLR(opt, epochs=4)
    lrs = []
    for epoch, steps in enumerate([10, 3, 7, 1]):  # steps per epoch vary, as with pruning
        for i in range(steps):
            schedule.step(epoch + (i + 1) / steps)
            lrs.append(opt.param_groups[0]["lr"])
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12) and lrs[9] == pytest.approx(0.1 * (1 + math.cos(math.pi / 4)) / 2)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    warm = ProgressLR(torch.optim.SGD(model.parameters(), lr=1.0), epochs=10, schedule="linear", warmup=1.0)
    warm.step(0.5)
    assert warm.get_last_lr() == [0.5]
    warm.step(5.0)
    assert warm.get_last_lr() == [pytest.approx(0.5)]
    with pytest.raises(ValueError, match="schedule must be one of"):
        ProgressLR(opt, 4, schedule="step")


def test_progress_scheduler_is_progress_lr_as_an_lr_scheduler():
    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    progress = [0.0]
    schedule = ProgressScheduler(opt, 4, lambda: progress[0], schedule="linear")
    assert isinstance(schedule, torch.optim.lr_scheduler.LRScheduler) and schedule.get_last_lr() == [0.1]
    progress[0] = 1.0
    opt.step()
    schedule.step()  # no argument: the progress comes from the callable
    assert schedule.get_last_lr() == [pytest.approx(0.075)] == [opt.param_groups[0]["lr"]]
    state = schedule.state_dict()
    resumed = ProgressScheduler(torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1), 4, lambda: 0.0, "linear")
    resumed.load_state_dict(state)
    assert resumed.get_last_lr() == [pytest.approx(0.075)]
    with pytest.raises(TypeError, match="progress must be a callable"):
        ProgressScheduler(opt, 4, 1.0)


def test_indexed_dataset_shapes():
    base = TensorDataset(torch.arange(5).float(), torch.arange(5))
    assert IndexedDataset(base)[3] == (base[3][0], base[3][1], 3)

    class Dicts(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return {"image": torch.zeros(1), "label": i}

    assert IndexedDataset(Dicts())[1]["index"] == 1
    assert IndexedDataset(Dicts(), index_key="idx")[0]["idx"] == 0
    with pytest.raises(TypeError, match="dataset must be a map-style dataset"):
        IndexedDataset(5)


def columns(n):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(n, 1, 4, generator=g), torch.randint(0, 10, (n,), generator=g),
            torch.randint(0, 255, (n, 2, 2), generator=g).to(torch.uint8), torch.rand(n, generator=g).double() > 0.5)


def test_indexed_dataset_fetches_a_batch_as_its_items_collate():
    """DataLoader fetches through __getitems__ (one index op per TensorDataset tensor); its batches
    are what the item-by-item path collates: same values, dtypes and shapes."""
    data = IndexedDataset(TensorDataset(*columns(50)))
    order = torch.randperm(50, generator=torch.Generator().manual_seed(1)).tolist()
    batches = list(DataLoader(data, batch_size=16, sampler=order))
    assert len(batches) == 4
    for batch, first in zip(batches, range(0, 50, 16)):
        want = default_collate([data[i] for i in order[first : first + 16]])
        assert len(batch) == len(want) == 5
        for got, expected in zip(batch, want):
            assert got.dtype == expected.dtype and got.shape == expected.shape and torch.equal(got, expected)
        assert batch[-1].tolist() == order[first : first + 16]


def test_indexed_dataset_keeps_a_dataset_s_own_item_access():
    class Doubled(TensorDataset):  # a subclass with its own __getitem__: not fetched as a TensorDataset
        def __getitem__(self, i):
            x, y = super().__getitem__(i)
            return 2 * x, y

    x, y = columns(8)[:2]
    batch = next(iter(DataLoader(IndexedDataset(Doubled(x, y)), batch_size=8)))
    assert torch.equal(batch[0], 2 * x) and torch.equal(batch[1], y) and batch[2].tolist() == list(range(8))

    class Batched(torch.utils.data.Dataset):  # its own __getitems__ is what a batch is fetched with
        calls = []

        def __len__(self):
            return 6

        def __getitem__(self, i):
            raise AssertionError("fetched one by one")

        def __getitems__(self, indices):
            self.calls.append(list(indices))
            return [{"value": torch.tensor(float(i))} for i in indices]

    batch = next(iter(DataLoader(IndexedDataset(Batched(), index_key="idx"), batch_size=3, sampler=[5, 0, 2])))
    assert Batched.calls == [[5, 0, 2]]
    assert batch["value"].tolist() == [5.0, 0.0, 2.0] and batch["idx"].tolist() == [5, 0, 2]


def test_exported():
    for name in ("ScoreTable", "PruningSampler", "TableSampler", "weighted_mean", "ProgressLR", "ProgressScheduler",
                 "IndexedDataset"):
        assert name in dsampling_ext.__all__


# --- what used to train everything without a word ----------------------------------------------


def one_epoch(sampler, table, x, y, record=True):
    model = nn.Linear(x.shape[1], 2)
    for xb, yb, idx in DataLoader(IndexedDataset(TensorDataset(x, y)), batch_size=50, sampler=sampler):
        if record:
            table.record(idx, nn.functional.cross_entropy(model(xb), yb, reduction="none").detach())


def test_an_epoch_iterated_again_without_set_epoch_warns():
    x, y = linear_task()
    table = ScoreTable(len(y))
    sampler = PruningSampler(table, 4)
    sampler.set_epoch(0)
    one_epoch(sampler, table, x, y)
    with pytest.warns(RuntimeWarning, match=r"epoch 0 is iterated again after its records: call sampler.set_epoch"):
        one_epoch(sampler, table, x, y)


def test_selecting_from_a_table_never_recorded_into_warns():
    x, y = linear_task()
    table = ScoreTable(len(y))
    sampler = PruningSampler(table, 4)
    sampler.set_epoch(0)
    one_epoch(sampler, table, x, y, record=False)
    with pytest.warns(RuntimeWarning, match=r"no losses were recorded in the table before epoch 1, so it keeps every"):
        sampler.set_epoch(1)
    assert len(sampler) == 600


def test_an_epoch_past_the_samplers_epochs_is_refused():
    table = ScoreTable(600)
    sampler = PruningSampler(table, 4)  # anneal 0.125: epoch 3 is the full-data one
    sampler.set_epoch(3)
    with pytest.raises(ValueError, match=r"epoch must be below the sampler's epochs=4 .*, got 4"):
        sampler.set_epoch(4)
    table.record(torch.arange(600), torch.rand(600))
    TableSampler(table, 2, anneal=0.0).set_epoch(5)  # no annealing: epochs places nothing


def test_sync_replays_the_gathered_records_in_rank_order(monkeypatch):
    # One process standing for rank 1 of two: the fake all-gather puts rank 0's log (hand-written)
    # before this rank's own, as the real one does. Hand-computed table: index 1's last record is
    # this rank's 11.0 (wrong), index 3's is this rank's 13.0, whose record has no logits, so its
    # correctness stays that of rank 0's record with logits (right); index 4 keeps 15.0 with the
    # correctness of its record with logits (right); a non-finite loss is not replayed (index 5).
    from dsampling_ext import distributed

    rank0 = [torch.tensor([1, 3, 1, 5]), torch.tensor([1.0, 3.0, 2.0, math.nan]), torch.tensor([1, 1, -1, 1], dtype=torch.int8),
             torch.tensor([2, 2, 2, 2], dtype=torch.int32)]
    gathered = []

    def all_gather_cat(tensor):
        other = rank0[len(gathered)]
        gathered.append(tensor)
        return torch.cat([other.to(tensor.dtype), tensor]), other.numel()

    monkeypatch.setattr(distributed, "active", lambda: True)
    monkeypatch.setattr(distributed, "all_gather_cat", all_gather_cat)
    table = ScoreTable(6)
    table.set_epoch(3)
    right, wrong = torch.tensor([[5.0, 0.0]]), torch.tensor([[0.0, 5.0]])
    table.record(torch.tensor([1, 4]), torch.tensor([11.0, 14.0]), torch.cat([wrong, right]), torch.tensor([0, 0]))
    table.record(torch.tensor([4, 3]), torch.tensor([15.0, 13.0]))
    table.sync()
    assert len(gathered) == 4
    assert table.scores.tolist() == [0.0, 11.0, 0.0, 13.0, 15.0, 0.0]
    assert table.correct.tolist() == [-1, 0, -1, 1, 1, -1]
    assert table.seen_epoch.tolist() == [-1, 3, -1, 3, 3, -1]
