"""MisclassifiedFilter: batchwise (Alg. 10) and epochwise (Alg. 8) accuracy filtering."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dsampling_ext import IndexSubsetSampler, MisclassifiedFilter


class Oracle(nn.Module):
    """Predicts the class stored in x[:, 0] (so we decide which samples are misclassified)."""

    def __init__(self, classes=4):
        super().__init__()
        self.classes = classes
        self.modes = []

    def forward(self, x):
        self.modes.append(self.training)
        return nn.functional.one_hot(x[:, 0].long(), self.classes).float() * 5


class Data(Dataset):
    def __init__(self, predicted, labels):
        self.x = torch.stack([torch.tensor(predicted, dtype=torch.float32), torch.arange(len(labels)).float()], 1)
        self.y = torch.tensor(labels)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i], i


def data_with_errors(n=200, every=3):
    labels = [i % 4 for i in range(n)]
    predicted = [(l + 1) % 4 if i % every == 0 else l for i, l in enumerate(labels)]  # every 3rd is wrong
    return Data(predicted, labels)


def loader(data, batch=20):
    return DataLoader(data, batch_size=batch, shuffle=False)


def wrong(data):
    return set((data.x[:, 0].long() != data.y).nonzero().flatten().tolist())


def test_batch_mode_trains_only_misclassified_in_full_batches():
    data = data_with_errors()
    f = MisclassifiedFilter(16, fallback_after=None)
    model = Oracle()
    out = list(f.batches(loader(data), model))
    assert all(len(y) == 16 for _, y, _ in out)
    trained = [i for _, _, idx in out for i in idx.tolist()]
    assert set(trained) <= wrong(data) and len(trained) == len(set(trained))
    c = f.counters()
    assert c["seen"] == 200 and c["kept"] == len(wrong(data)) == 67
    assert c["kept"] + c["fallback_filled"] == c["trained"] + c["dropped"] + c["pending"]
    assert c["trained"] == 64 and c["pending"] == 3  # carried into the next epoch
    assert not any(model.modes)  # filtering forward in eval mode


def test_overflow_drop_trains_at_most_one_batch_per_raw_batch():
    data = data_with_errors(every=1)  # everything wrong: 20 accepted per raw batch of 20
    f = MisclassifiedFilter(8, overflow="drop", fallback_after=None)
    out = list(f.batches(loader(data), Oracle()))
    assert len(out) == 10  # one per raw batch
    c = f.counters()
    assert c["trained"] == 80 and c["dropped"] == 120 and c["pending"] == 0
    assert c["kept"] == c["trained"] + c["dropped"] + c["pending"]


def test_fallback_fills_with_random_samples_when_too_few_are_wrong():
    # 10 raw batches of 20; only samples 0, 41, 43, 45, 47 and 49 are wrong. With
    # fallback_after=3 the fill comes at raw batches 3, 6 and 9 (indices 40-59, 100-119,
    # 160-179), each completing a batch of 16 with random rows of that raw batch not yet kept
    # (a fill blind to the kept rows would pick one of the 5 in 10 of 20 draws: p = 0.98).
    wrong = [0, 41, 43, 45, 47, 49]
    labels = [i % 4 for i in range(200)]
    data = Data([(l + 1) % 4 if i in wrong else l for i, l in enumerate(labels)], labels)
    f = MisclassifiedFilter(16, fallback_after=3, seed=1)
    out = list(f.batches(loader(data), Oracle()))
    assert len(out) == 3 and all(len(y) == 16 for _, y, _ in out)
    rows = [idx.tolist() for _, _, idx in out]
    assert rows[0][:6] == wrong  # the kept samples first, in arrival order
    for filled, raw_batch in zip([rows[0][6:], rows[1], rows[2]], [2, 5, 8]):
        assert len(set(filled)) == len(filled) and set(filled) <= set(range(20 * raw_batch, 20 * raw_batch + 20)) - set(wrong)
    assert f.counters() == dict(seen=200, kept=6, fallback_filled=10 + 16 + 16, trained=48, dropped=0, pending=0)
    # deterministic: the same seed fills with the same samples
    again = MisclassifiedFilter(16, fallback_after=3, seed=1)
    assert [b[2].tolist() for b in again.batches(loader(data), Oracle())] == rows


def test_without_fallback_a_perfect_model_trains_nothing():
    data = data_with_errors(every=10**9)
    f = MisclassifiedFilter(16, fallback_after=None)
    assert list(f.batches(loader(data), Oracle())) == []
    assert f.counters()["pending"] == 1


def test_margin_just_below_one_keeps_everything_the_oracle_scores():
    data = data_with_errors()
    f = MisclassifiedFilter(20, margin=0.999, fallback_after=None)
    assert sum(len(y) for _, y, _ in f.batches(loader(data), Oracle())) == 200


def test_epoch_mode_sampler_holds_exactly_the_misclassified_indices():
    data = data_with_errors()
    f = MisclassifiedFilter(16, mode="epoch", seed=4)
    sampler = f.epoch_sampler(Oracle(), loader(data))
    assert isinstance(sampler, IndexSubsetSampler) and len(sampler) == 67
    order = list(sampler)
    assert set(order) == wrong(data) and order != sorted(order)
    assert list(sampler) == order  # same epoch, same order
    sampler.set_epoch(1)
    assert list(sampler) != order and set(sampler) == wrong(data)
    # a loader without indices, in dataset order, gives the same set
    plain = DataLoader([(x, y) for x, y, _ in data], batch_size=32)
    assert set(MisclassifiedFilter(16, mode="epoch").epoch_sampler(Oracle(), plain)) == wrong(data)


def test_epoch_mode_tops_up_to_one_batch():
    data = data_with_errors(every=10**9)
    f = MisclassifiedFilter(16, mode="epoch", fallback_after=1)
    sampler = f.epoch_sampler(Oracle(), loader(data))
    assert len(sampler) == 16 and 0 in set(sampler) and f.counters()["fallback_filled"] == 15


def test_state_dict_resume_gives_identical_batches():
    data = data_with_errors(every=2)
    f = MisclassifiedFilter(16, fallback_after=2, seed=3)
    batches = loader(data, batch=10)
    first = list(f.batches(batches, Oracle()))
    g = MisclassifiedFilter(16, fallback_after=2, seed=3)
    g.load_state_dict(f.state_dict())
    assert g.counters() == f.counters()
    assert [b[2].tolist() for b in g.batches(batches, Oracle())] == [b[2].tolist() for b in f.batches(batches, Oracle())]
    assert first


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(mode="step"), "mode must be one of"),
        (dict(overflow="keep"), "overflow must be one of"),
        (dict(margin=2), r"margin must be None or a number in \[0, 1\)"),
        (dict(margin=1.0), r"margin must be None or a number in \[0, 1\)"),
        (dict(fallback_after=0), "fallback_after must be None or an int >= 1"),
        (dict(selection_mode="test"), "selection_mode must be 'eval' or 'train'"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MisclassifiedFilter(16, **kwargs)


def test_wrong_mode_calls_say_so():
    with pytest.raises(RuntimeError, match="use epoch_sampler"):
        list(MisclassifiedFilter(4, mode="epoch").batches([], Oracle()))
    with pytest.raises(RuntimeError, match="use batches"):
        MisclassifiedFilter(4).epoch_sampler(Oracle(), [])
