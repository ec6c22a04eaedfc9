"""What a new user's own loop meets: index-aware batches of any form, empty batches, mid-epoch
resume of every sampler and per-batch loop, the start/end/interval window, and arguments given
as numpy scalars or in the wrong order."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from dsampling_ext import (
    BatchAccumulator,
    DynamicPartitionSampler,
    IndexedDataset,
    IndexSubsetSampler,
    LossHistogramSelector,
    MisclassifiedFilter,
    PruningSampler,
    RandomSubsetSampler,
    ScoreTable,
    selective_batches,
)
from resume import stateful_resume


class Oracle(nn.Module):
    """Predicts the class stored in column 0 of x, so the test decides what is misclassified."""

    def forward(self, x):
        return nn.functional.one_hot(x[:, 0].long(), 4).float() * 5


def oracle_data(n=300):
    """(x, y): every third sample is misclassified by the Oracle; column 1 is the index."""
    y = torch.arange(n) % 4
    predicted = torch.where(torch.arange(n) % 3 == 0, (y + 1) % 4, y)
    return torch.stack([predicted.float(), torch.arange(n).float()], 1), y


def misclassified(x, y):
    return set((x[:, 0].long() != y).nonzero().flatten().tolist())


class DictData(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"image": self.x[i], "label": self.y[i]}


# --- indices: never guessed -------------------------------------------------------------------


def test_epoch_filter_refuses_a_shuffled_loader_without_indices():
    x, y = oracle_data()
    shuffled = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
    f = MisclassifiedFilter(16, mode="epoch")
    with pytest.raises(ValueError, match=r"needs each sample's dataset index.*IndexedDataset"):
        f.epoch_sampler(Oracle(), shuffled)


@pytest.mark.parametrize("form", ["indexed", "sequential", "dict"])
def test_epoch_filter_keeps_exactly_the_misclassified_indices(form):
    x, y = oracle_data()
    g = torch.Generator().manual_seed(0)
    if form == "indexed":  # shuffled, but every batch carries its true indices
        loader, keys = DataLoader(IndexedDataset(TensorDataset(x, y)), batch_size=32, shuffle=True, generator=g), {}
    elif form == "sequential":  # no indices, but positions are indices
        loader, keys = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=False), {}
    else:
        loader = DataLoader(IndexedDataset(DictData(x, y), index_key="idx"), batch_size=32, shuffle=True, generator=g)
        keys = dict(input_key="image", target_key="label", index_key="idx")
    sampler = MisclassifiedFilter(16, mode="epoch").epoch_sampler(Oracle(), loader, **keys)
    assert set(sampler) == misclassified(x, y)


def test_dict_batches_with_named_keys_flow_through_the_per_batch_loops():
    x, y = oracle_data(200)
    data = IndexedDataset(DictData(x, y), index_key="idx")
    keys = dict(input_key="image", target_key="label", index_key="idx")
    filt = MisclassifiedFilter(8, fallback_after=None)
    out = list(filt.batches(DataLoader(data, batch_size=20), Oracle(), **keys))
    assert all(set(b) == {"image", "label", "idx"} and len(b["label"]) == 8 for b in out)
    trained = [i for b in out for i in b["idx"].tolist()]
    assert set(trained) <= misclassified(x, y) and len(trained) == len(out) * 8
    # selective_batches: warm-up keeps everything, in the loader's dict form
    sel, acc = LossHistogramSelector(warmup_epochs=1), BatchAccumulator(10, leftover="flush")
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    out = list(selective_batches(DataLoader(data, batch_size=20), Oracle(), loss_fn, sel, acc, **keys))
    assert sorted(i for b in out for i in b["idx"].tolist()) == list(range(200))
    with pytest.raises(ValueError, match=r"must hold input_key='input' and target_key='target'.*image"):
        list(filt.batches(DataLoader(data, batch_size=20), Oracle()))


# --- empty batches ----------------------------------------------------------------------------


def with_empty(batches, where):
    x0, y0, i0 = batches[0]
    empty = (x0[:0], y0[:0], i0[:0])
    out = list(batches)
    for at in sorted(where, reverse=True):
        out.insert(at, empty)
    return out


@pytest.mark.parametrize("where", [[0], [3], [0, 2, 5]])
def test_selective_batches_skips_empty_batches(where):
    x, y = oracle_data(160)
    x = x + torch.randn(x.shape, generator=torch.Generator().manual_seed(1))  # varied losses
    batches = list(DataLoader(IndexedDataset(TensorDataset(x, y)), batch_size=20))
    model, loss_fn = nn.Linear(2, 4), nn.CrossEntropyLoss(reduction="none")

    def run(source):
        sel, acc = LossHistogramSelector(warmup_epochs=0, seed=2), BatchAccumulator(16)
        return [b[2].tolist() for b in selective_batches(source, model, loss_fn, sel, acc)]

    plain = run(batches)
    assert plain and run(with_empty(batches, where)) == plain


def test_batch_filter_skips_empty_batches():
    x, y = oracle_data(160)
    batches = list(DataLoader(IndexedDataset(TensorDataset(x, y)), batch_size=20))
    plain = [b[2].tolist() for b in MisclassifiedFilter(8, seed=1).batches(batches, Oracle())]
    padded = [b[2].tolist() for b in MisclassifiedFilter(8, seed=1).batches(with_empty(batches, [0, 4]), Oracle())]
    assert plain and padded == plain


def test_a_mean_loss_fails_on_the_first_batch_also_in_warmup():
    x, y = oracle_data(64)
    loader = DataLoader(IndexedDataset(TensorDataset(x, y)), batch_size=16)
    sel, acc = LossHistogramSelector(warmup_epochs=2), BatchAccumulator(16)
    with pytest.raises(ValueError, match=r"loss_fn must return per-sample losses.*reduction='none'"):
        next(selective_batches(loader, nn.Linear(2, 4), nn.CrossEntropyLoss(), sel, acc))


# --- wrong arguments --------------------------------------------------------------------------


def test_a_dataset_or_swapped_arguments_are_type_errors_naming_the_argument():
    x, y = oracle_data(40)
    data = TensorDataset(x, y)
    loader = DataLoader(data, batch_size=8)
    sel, acc, loss_fn = LossHistogramSelector(), BatchAccumulator(8), nn.CrossEntropyLoss(reduction="none")
    with pytest.raises(TypeError, match=r"loader must be an iterable of batches, got the dataset TensorDataset"):
        next(selective_batches(data, Oracle(), loss_fn, sel, acc))
    with pytest.raises(TypeError, match=r"loader must be .* got the model Oracle: are the arguments in the wrong order"):
        next(selective_batches(Oracle(), loader, loss_fn, sel, acc))
    with pytest.raises(TypeError, match=r"selector must be a LossHistogramSelector, got BatchAccumulator"):
        next(selective_batches(loader, Oracle(), loss_fn, acc, sel))
    with pytest.raises(TypeError, match=r"loader must be an iterable of batches, got the dataset"):
        next(MisclassifiedFilter(8).batches(data, Oracle()))
    with pytest.raises(TypeError, match=r"model must be a torch.nn.Module, got DataLoader: .*wrong order"):
        MisclassifiedFilter(8, mode="epoch").epoch_sampler(loader, Oracle())


def test_selective_backprop_refuses_the_pmf_rules_parameters():
    with pytest.raises(ValueError, match=r"threshold, keep_fraction are not used by rule='cdf' \(its parameters: beta\)"):
        LossHistogramSelector.selective_backprop(keep_fraction=1.0, threshold=0.9)
    with pytest.raises(ValueError, match=r"beta is not used by rule='pmf'"):
        LossHistogramSelector(beta=3.0)
    assert "threshold" not in repr(LossHistogramSelector.selective_backprop())
    assert "beta" not in repr(LossHistogramSelector())


def test_numpy_scalars_work_and_bad_types_fail_at_construction():
    sampler = RandomSubsetSampler(np.int64(100), np.float32(0.25), seed=np.uint64(2**63 + 5))
    assert (sampler.size, sampler.seed) == (25, 2**63 + 5)
    assert list(sampler) == list(RandomSubsetSampler(100, 0.25, seed=2**63 + 5))
    dt = DynamicPartitionSampler(100, 30, seed=np.int32(3))
    assert dt.update(np.float32(0.8)) == "keep"
    with pytest.raises(TypeError, match="val_accuracy must be a fraction, got str"):
        dt.update("0.8")
    with pytest.raises(ValueError, match=r"seed must fit in 64 bits"):
        LossHistogramSelector(seed=2**64)
    with pytest.raises(TypeError, match="seed must be an int, got float"):
        MisclassifiedFilter(8, seed=1.0)
    for obj in (sampler, dt, LossHistogramSelector(), MisclassifiedFilter(8), IndexSubsetSampler(torch.arange(5)),
                PruningSampler(ScoreTable(10), 3)):
        with pytest.raises(TypeError, match="epoch must be an int, got float"):
            obj.set_epoch(1.5)
        with pytest.raises(ValueError, match="epoch must be an int >= 0, got -1"):
            obj.set_epoch(-1)
        if isinstance(obj, PruningSampler):  # nothing recorded before its epoch 1: it says so
            with pytest.warns(RuntimeWarning, match="no losses were recorded"):
                obj.set_epoch(np.int64(1))
        else:
            obj.set_epoch(np.int64(1))
        assert obj.epoch == 1 and type(obj.epoch) is int


# --- mid-epoch resume -------------------------------------------------------------------------


def sampler_factories():
    n = 103
    table = ScoreTable(n)
    table.record(torch.arange(n), torch.linspace(0, 2, n))
    return {
        "random_subset": lambda: RandomSubsetSampler(n, 0.6, seed=3),
        "dynamic_partition": lambda: DynamicPartitionSampler(n, 40, seed=3),
        "index_subset": lambda: IndexSubsetSampler(torch.arange(0, n, 2), seed=3),
        "pruning": lambda: PruningSampler(table, 5, seed=3),
    }


@pytest.mark.parametrize("name", list(sampler_factories()))
@pytest.mark.parametrize("stop", [0, 1, 17, 31])
def test_samplers_resume_mid_epoch_where_they_stopped(name, stop):
    make = sampler_factories()[name]
    whole = make()
    whole.set_epoch(2)
    expected = list(whole)
    stopped = make()
    stopped.set_epoch(2)
    it = iter(stopped)
    first = [next(it) for _ in range(stop)]
    state = stopped.state_dict()
    assert state["position"] == stop
    resumed = make()
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # a loop calls it again on resume: the position of the same epoch stays
    assert resumed.position == stop and resumed.state_dict()["position"] == stop
    assert first + list(resumed) == expected
    assert resumed.state_dict()["position"] == 0  # a state saved at the epoch's end resumes nothing of it
    assert list(resumed) == expected  # the next iteration is a whole epoch again
    resumed.set_epoch(3)
    assert resumed.position == 0


def test_a_dataloader_over_a_resumed_sampler_gives_the_missing_batches():
    x, y = oracle_data(103)
    make = lambda: RandomSubsetSampler(103, 0.6, seed=5)  # noqa: E731
    data = IndexedDataset(TensorDataset(x, y))
    whole = [b[2].tolist() for b in DataLoader(data, batch_size=10, sampler=make())]
    sampler = make()
    loader = DataLoader(data, batch_size=10, sampler=sampler)  # num_workers=0: no prefetch
    got = []
    for i, batch in enumerate(loader):
        got.append(batch[2].tolist())
        if i == 2:
            state = sampler.state_dict()  # the checkpoint after training batch 2
            break
    resumed = make()
    resumed.load_state_dict(state)
    got += [b[2].tolist() for b in DataLoader(data, batch_size=10, sampler=resumed)]
    assert got == whole


def test_sampler_state_from_another_configuration_or_world_size_is_refused():
    with pytest.raises(ValueError, match=r"state was saved by RandomSubsetSampler\(num_samples=100, size=30"):
        RandomSubsetSampler(100, 0.4).load_state_dict(RandomSubsetSampler(100, 0.3).state_dict())
    s = RandomSubsetSampler(100, 0.3, num_replicas=2, rank=0)
    next(iter(s))
    with pytest.raises(ValueError, match=r"saved mid-epoch \(position 1\) with num_replicas=2"):
        RandomSubsetSampler(100, 0.3, num_replicas=1, rank=0).load_state_dict(s.state_dict())
    assert repr(s) == "RandomSubsetSampler(num_samples=100, size=30, seed=0)"


def per_batch_loop(kind, loader, stop=None, state=None):
    """One epoch of a per-batch method; `stop` checkpoints after that many training batches."""
    model, loss_fn = nn.Linear(2, 4), nn.CrossEntropyLoss(reduction="none")
    torch.manual_seed(0)
    model = nn.Linear(2, 4)
    if kind == "selective":
        method = LossHistogramSelector(warmup_epochs=0, seed=4, history=64, threshold=0.0, keep_fraction=0.5)
        acc = BatchAccumulator(12)
        if state:
            method.load_state_dict(state["method"])
            acc.load_state_dict(state["acc"])
        method.set_epoch(1)
        batches = selective_batches(loader, model, loss_fn, method, acc)
        save = lambda: dict(method=method.state_dict(), acc=acc.state_dict())  # noqa: E731
    else:
        method = MisclassifiedFilter(12, seed=4, fallback_after=3)
        if state:
            method.load_state_dict(state["method"])
        method.set_epoch(1)
        batches = method.batches(loader, Oracle())
        save = lambda: dict(method=method.state_dict())  # noqa: E731
    trained = []
    for batch in batches:
        trained.append(batch[2].tolist())
        if len(trained) == stop:
            return trained, save()
    return trained, None


@pytest.mark.parametrize("kind", ["selective", "filter"])
def test_per_batch_loops_resume_mid_epoch(kind):
    x, y = oracle_data(240)
    if kind == "selective":  # varied losses; the filter's Oracle reads column 0 as the prediction
        x = x + torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    data = IndexedDataset(TensorDataset(x, y))

    def loader():  # a seeded shuffle: the resumed run's loader repeats the saved epoch's order
        return DataLoader(data, batch_size=20, shuffle=True, generator=torch.Generator().manual_seed(9))

    whole, _ = per_batch_loop(kind, loader())
    assert len(whole) >= 6
    for stop in (1, 2, len(whole) // 2, len(whole) - 1):
        first, state = per_batch_loop(kind, loader(), stop=stop)
        rest, _ = per_batch_loop(kind, loader(), state=state)
        assert first + rest == whole, stop


# --- the start/end/interval window ------------------------------------------------------------


def test_selection_window_selects_only_inside_it():
    x, y = oracle_data(200)
    x = x + torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(IndexedDataset(TensorDataset(x, y)), batch_size=20)
    model, loss_fn = nn.Linear(2, 4), nn.CrossEntropyLoss(reduction="none")
    sel = LossHistogramSelector(warmup_epochs=0, start=0.25, end=0.75, interval=3, epochs=4, threshold=0.0,
                                keep_fraction=0.5)
    acc = BatchAccumulator(10, leftover="flush")
    trained = []
    for epoch in range(4):
        sel.set_epoch(epoch)
        trained.append(sum(len(b[1]) for b in selective_batches(loader, model, loss_fn, sel, acc)))
    # epochs 0 and 3 are outside [0.25, 0.75): everything; epochs 1 and 2 select every third batch
    assert trained[0] == trained[3] == 200
    assert 140 <= trained[1] < 200 and 140 <= trained[2] < 200
    assert sel.calls == 6  # selections: batches 12, 15, 18 of the run (epoch 1), 21, 24, 27 (epoch 2)
    with pytest.raises(ValueError, match="epochs must be given with start/end"):
        LossHistogramSelector(end=0.5)
    with pytest.raises(ValueError, match=r"end must be above start \(0.5\)"):
        LossHistogramSelector(start=0.5, end=0.5, epochs=4)
    with pytest.raises(ValueError, match="are for mode='batch'"):
        MisclassifiedFilter(8, mode="epoch", interval=2)


def test_batch_filter_window_trains_whole_batches_outside_it():
    x, y = oracle_data(200)
    loader = DataLoader(IndexedDataset(TensorDataset(x, y)), batch_size=20)
    f = MisclassifiedFilter(20, interval=2, fallback_after=None)
    trained = [i for b in f.batches(loader, Oracle()) for i in b[2].tolist()]
    # raw batches 0, 2, 4, ... are filtered (misclassified only); 1, 3, 5, ... are trained whole
    expected = set()
    for b in range(10):
        rows = set(range(20 * b, 20 * b + 20))
        expected |= rows & misclassified(x, y) if b % 2 == 0 else rows
    c = f.counters()
    assert set(trained) <= expected and len(trained) == len(set(trained)) == len(expected) - c["pending"]
    assert c["kept"] + c["fallback_filled"] == c["trained"] + c["dropped"] + c["pending"]


@pytest.mark.worker_processes
def test_epoch_filter_updates_one_sampler_in_place_for_a_persistent_loader():
    x, y = oracle_data(120)
    data = IndexedDataset(TensorDataset(x, y))
    scan = DataLoader(data, batch_size=40)
    f = MisclassifiedFilter(8, mode="epoch", seed=2)

    class Drifting(nn.Module):  # epoch 0: the Oracle; epoch 1: predicts class 0 everywhere
        wrong_everywhere = False

        def forward(self, x):
            out = Oracle()(x)
            return torch.zeros_like(out).index_fill_(1, torch.tensor([0]), 5.0) if self.wrong_everywhere else out

    model = Drifting()
    sampler = f.epoch_sampler(model, scan)
    train = DataLoader(data, batch_size=16, sampler=sampler, num_workers=2, persistent_workers=True)
    epoch0 = {i for _, _, idx in train for i in idx.tolist()}
    workers = train._iterator._workers  # the persistent workers of the first epoch
    assert epoch0 == misclassified(x, y)
    f.set_epoch(1)
    model.wrong_everywhere = True
    assert f.epoch_sampler(model, scan) is sampler
    epoch1 = {i for _, _, idx in train for i in idx.tolist()}
    assert epoch1 == set((y != 0).nonzero().flatten().tolist())
    assert train._iterator._workers is workers


@pytest.mark.filterwarnings("ignore:'set_vital' is deprecated")  # torchdata 0.11 calls it on torch 2.13
@pytest.mark.parametrize("name", list(sampler_factories()))
@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.worker_processes)])
def test_stateful_dataloader_resumes_every_sampler_mid_epoch(name, workers):
    # torchdata's StatefulDataLoader calls the samplers' state_dict/load_state_dict and snapshots
    # them per batch, so its state is exact even with workers prefetching ahead.
    from torchdata.stateful_dataloader import StatefulDataLoader

    make = sampler_factories()[name]
    x, y = oracle_data(103)
    data = IndexedDataset(TensorDataset(x, y))

    def loader():
        sampler = make()
        sampler.set_epoch(1)
        return StatefulDataLoader(data, batch_size=10, sampler=sampler, num_workers=workers)

    whole, resumed = stateful_resume(loader)
    assert resumed == whole
