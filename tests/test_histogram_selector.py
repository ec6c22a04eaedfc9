"""LossHistogramSelector, LossCache, BatchAccumulator and selective_batches: the Python API."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import dsampling_ext
from dsampling_ext import BatchAccumulator, LossCache, LossHistogramSelector, selective_batches
from reference import HistogramSelectReference


def batches(seed, count=6, size=64):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(size, generator=g) * 3 for _ in range(count)]


def test_warmup_keeps_everything_and_leaves_history_alone():
    sel = LossHistogramSelector(warmup_epochs=2)
    for epoch in range(2):
        sel.set_epoch(epoch)
        assert sel.select(torch.rand(32)).all()
    assert sel.loss_history is None and sel.calls == 0
    sel.set_epoch(2)
    keep = sel.select(torch.rand(32))
    assert keep.dtype == torch.bool and not keep.all()
    assert sel.loss_history.numel() == 32 and sel.calls == 1


def test_defaults_are_adonis_and_selective_backprop():
    adonis = LossHistogramSelector()
    assert (adonis.history, adonis.bins, adonis.clip_sigma, adonis.clip, adonis.threshold, adonis.keep_fraction,
            adonis.keep, adonis.rule, adonis.warmup_epochs, adonis.staleness) == (
            512, "sturges", 1.0, "clamp", 0.1, 0.3, "bernoulli", "pmf", 1, 1)
    sb = LossHistogramSelector.selective_backprop()
    assert (sb.rule, sb.history, sb.beta, sb.clip_sigma) == ("cdf", 1024, 2.0, None)


def test_selector_calls_the_op_with_increasing_offsets():
    # The selector is a thin stateful layer: the same stream through the op gives the same masks.
    sel = LossHistogramSelector(warmup_epochs=0, seed=5)
    history, state = torch.zeros(512), torch.zeros(2, dtype=torch.int64)
    for offset, losses in enumerate(batches(0)):
        want, _ = dsampling_ext.histogram_select(history, state, losses, seed=5, offset=offset)
        assert torch.equal(sel.select(losses), want)
    assert torch.equal(sel.loss_history, history[: 6 * 64])  # 384 < 512 values: not wrapped yet


def test_resume_from_state_dict_gives_identical_masks():
    a = LossHistogramSelector(warmup_epochs=0, seed=3, history=100)
    stream = batches(1, count=8)
    for losses in stream[:4]:
        a.select(losses)
    b = LossHistogramSelector(warmup_epochs=0, seed=3, history=100)
    b.load_state_dict(a.state_dict())
    for losses in stream[4:]:
        assert torch.equal(a.select(losses), b.select(losses))
    with pytest.raises(ValueError, match="state was saved by"):
        LossHistogramSelector(history=99).load_state_dict(a.state_dict())


def test_float64_and_half_losses():
    sel = LossHistogramSelector(warmup_epochs=0)
    assert sel.select(torch.rand(16, dtype=torch.float16)).shape == (16,)
    assert sel.loss_history.dtype == torch.float32
    sel64 = LossHistogramSelector(warmup_epochs=0)
    sel64.select(torch.rand(16, dtype=torch.float64))
    assert sel64.loss_history.dtype == torch.float64


def test_nan_policy():
    sel = LossHistogramSelector(warmup_epochs=0)
    with pytest.raises(ValueError, match="losses must be finite, got nan at index 1"):
        sel.select(torch.tensor([1.0, float("nan")]))
    ignoring = LossHistogramSelector(warmup_epochs=0, nan="ignore", threshold=0.0, keep_fraction=1.0)
    keep = ignoring.select(torch.tensor([1.0, float("nan"), 2.0]))
    assert keep.tolist() == [True, False, True] and ignoring.loss_history.tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(history=0), "history must be an int >= 1"),
        (dict(history=70000), "history must be at most 65536"),
        (dict(bins="auto"), "bins must be an int or one of"),
        (dict(clip_sigma=-1), "clip_sigma must be a number"),
        (dict(clip="none"), "clip must be one of"),
        (dict(threshold=float("nan")), "threshold must be a number"),
        (dict(keep_fraction=2), "keep_fraction must be a number in"),
        (dict(keep="some"), "keep must be one of"),
        (dict(rule="cdf", keep="top"), "keep must be 'bernoulli' with rule='cdf'"),
        (dict(warmup_epochs=-1), "warmup_epochs must be an int >= 0"),
        (dict(staleness=0), "staleness must be an int >= 1"),
        (dict(nan="drop"), "nan must be one of"),
    ],
)
def test_selector_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LossHistogramSelector(**kwargs)


def test_select_rejects_bad_losses():
    sel = LossHistogramSelector(warmup_epochs=0)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        sel.select(torch.rand(2, 3))
    with pytest.raises(TypeError, match="float16, bfloat16, float32 or float64"):
        sel.select(torch.arange(3))
    with pytest.raises(ValueError, match="indices must be an int32/int64 tensor of shape"):
        sel.select(torch.rand(3), torch.arange(4))


# ------------------------------------------------------------------ LossCache (staleness)


def test_cache_staleness_reuses_losses_for_eta_epochs():
    cache = LossCache(10, staleness=2)
    idx = torch.arange(10)
    assert cache.needs_forward(idx, 0).all()
    cache.update(idx, torch.arange(10.0), epoch=0)
    assert not cache.needs_forward(idx, 1).any()  # 1 epoch old < 2
    assert cache.needs_forward(idx, 2).all()  # 2 epochs old
    cache.update(idx[:3], torch.zeros(3), epoch=2)  # e.g. from the training forward
    assert cache.needs_forward(idx, 3).tolist() == [False] * 3 + [True] * 7
    assert cache.lookup(idx[:4]).tolist() == [0.0, 0.0, 0.0, 3.0]
    restored = LossCache(10, staleness=2)
    restored.load_state_dict(cache.state_dict())
    assert torch.equal(restored.needs_forward(idx, 3), cache.needs_forward(idx, 3))
    with pytest.raises(ValueError, match=r"indices must be in \[0, 10\)"):
        cache.needs_forward(torch.tensor([10]), 0)
    with pytest.raises(ValueError, match="no cached loss yet"):
        LossCache(5).lookup(torch.tensor([0]))


# ------------------------------------------------------------------ BatchAccumulator


def feed(acc, sizes, keep_every=2):
    out = []
    start = 0
    for n in sizes:
        x = torch.arange(start, start + n)
        keep = (x % keep_every) == 0
        acc.add({"x": x, "pair": (x * 10, x.double())}, keep)
        out += list(acc.ready())
        start += n
    return out


@pytest.mark.parametrize("leftover", ["carry", "drop", "flush"])
def test_accumulator_emits_exact_batches_and_counters_add_up(leftover):
    acc = BatchAccumulator(8, leftover=leftover)
    out = feed(acc, [10, 7, 13, 5])  # 35 seen, 18 kept -> 2 batches of 8, 2 pending
    assert [b["x"].numel() for b in out] == [8, 8]
    assert torch.equal(out[0]["x"], torch.arange(0, 16, 2)) and torch.equal(out[0]["pair"][0], out[0]["x"] * 10)
    tail = acc.end_epoch()
    c = acc.counters()
    assert c["seen"] == 35 and c["selected"] == 18
    assert c["selected"] == c["trained"] + c["dropped"] + c["pending"]
    if leftover == "carry":
        assert tail == [] and c["pending"] == 2
        more = feed(acc, [12])  # 6 more kept: the 2 carried samples lead the next batch
        assert more[0]["x"][:2].tolist() == [32, 34]
    elif leftover == "drop":
        assert tail == [] and c["dropped"] == 2 and c["pending"] == 0
    else:
        assert [b["x"].tolist() for b in tail] == [[32, 34]] and c["trained"] == 18


def test_accumulator_state_dict_resumes_pending_rows():
    acc = BatchAccumulator(4)
    feed(acc, [7])
    restored = BatchAccumulator(4)
    restored.load_state_dict(acc.state_dict())
    assert restored.counters() == acc.counters()
    assert [b["x"].tolist() for b in feed(restored, [5])] == [b["x"].tolist() for b in feed(acc, [5])]


def test_accumulator_rejects_bad_input():
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        BatchAccumulator(0)
    with pytest.raises(ValueError, match="leftover must be one of"):
        BatchAccumulator(4, leftover="keep")
    acc = BatchAccumulator(4)
    with pytest.raises(ValueError, match=r"keep must be a bool tensor of shape \[3\]"):
        acc.add(torch.arange(3), torch.ones(3))
    with pytest.raises(ValueError, match="share their first dimension"):
        acc.add((torch.arange(3), torch.arange(4)), torch.ones(3, dtype=torch.bool))


# ------------------------------------------------------------------ selective_batches


class IndexedData(torch.utils.data.Dataset):
    def __init__(self, n=256):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 8, generator=g)
        self.y = (self.x[:, 0] > 0).long()

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i], i


class CountingModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(8, 2)
        self.rows = 0
        self.modes = []

    def forward(self, x):
        self.rows += x.shape[0]
        self.modes.append(self.training)
        return self.net(x)


def test_selective_batches_yields_full_batches_and_trains():
    torch.manual_seed(0)
    data = IndexedData()
    loader = DataLoader(data, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
    model = CountingModel()
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    sel = LossHistogramSelector(warmup_epochs=1, threshold=0.05, keep_fraction=0.5)
    acc = BatchAccumulator(32, leftover="carry")
    reference = HistogramSelectReference(512)
    raw = []  # what the loader gave, to derive the expected selection independently

    def logged(batches):
        for batch in batches:
            raw.append(batch)
            yield batch

    expected, yielded, selections = [], [], 0
    for epoch in range(3):
        sel.set_epoch(epoch)
        model.rows = 0
        epoch_sizes = []
        for x, y, idx in selective_batches(logged(loader), model, loss_fn, sel, acc):
            epoch_sizes.append(x.shape[0])
            assert torch.equal(x, data.x[idx]) and torch.equal(y, data.y[idx])  # rows stay together
            yielded += idx.tolist()
        for x, y, idx in raw:
            if epoch == 0:
                keep = torch.ones(idx.shape, dtype=torch.bool)
            else:  # the model is not trained here: its losses now are the selection forward's
                with torch.no_grad():
                    losses = loss_fn(model.net(x), y)
                keep, _ = reference(losses, threshold=0.05, keep_fraction=0.5, seed=0, offset=selections, keys=idx)
                selections += 1
            expected += idx[keep].tolist()
        raw.clear()
        # every full batch of the kept samples so far, in arrival order, the rest carried over
        assert yielded == expected[: len(expected) // 32 * 32]
        if epoch == 0:  # warm-up: every sample, no selection forward (2 rows check loss_fn's output shape)
            assert epoch_sizes == [32] * 8 and model.rows == 2
        else:
            assert all(s == 32 for s in epoch_sizes) and model.rows == 256  # one selection forward each
            assert len(epoch_sizes) < 8
    assert model.training and not any(model.modes)  # selection ran in eval mode and restored train
    c = acc.counters()
    assert c["selected"] == c["trained"] + c["pending"] == len(expected)


def test_selective_batches_with_staleness_skips_fresh_forwards():
    data = IndexedData()
    loader = DataLoader(data, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(1))
    model = CountingModel()
    sel = LossHistogramSelector(warmup_epochs=0, staleness=2)
    cache = LossCache(len(data), staleness=2)
    acc = BatchAccumulator(32, leftover="drop")
    rows = []
    for epoch in range(4):
        sel.set_epoch(epoch)
        model.rows = 0
        for _ in selective_batches(loader, model, nn.CrossEntropyLoss(reduction="none"), sel, acc, cache=cache):
            pass
        rows.append(model.rows)
    assert rows == [256, 0, 256, 0]  # each loss is refreshed every second epoch


def test_selective_batches_needs_per_sample_losses_and_indices_for_a_cache():
    data = IndexedData(64)
    loader = DataLoader(TensorDataset(data.x, data.y), batch_size=16)
    sel = LossHistogramSelector(warmup_epochs=0)
    with pytest.raises(ValueError, match="per-sample losses"):
        list(selective_batches(loader, CountingModel(), nn.CrossEntropyLoss(), sel, BatchAccumulator(16)))
    with pytest.raises(ValueError, match="a LossCache needs each sample's dataset index"):
        list(selective_batches(loader, CountingModel(), nn.CrossEntropyLoss(reduction="none"), sel,
                               BatchAccumulator(16), cache=LossCache(64)))


def test_selective_batches_rejects_a_staleness_it_cannot_honour():
    data = IndexedData(64)
    loader = DataLoader(data, batch_size=16)
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    stale = LossHistogramSelector(warmup_epochs=0, staleness=3)
    with pytest.raises(ValueError, match="selector.staleness=3 needs a LossCache"):
        list(selective_batches(loader, CountingModel(), loss_fn, stale, BatchAccumulator(16)))
    with pytest.raises(ValueError, match=r"cache.staleness \(2\) and selector.staleness \(3\) differ"):
        list(selective_batches(loader, CountingModel(), loss_fn, stale, BatchAccumulator(16), cache=LossCache(64, 2)))
