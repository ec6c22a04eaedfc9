"""Bad inputs across every op and public class: each raises the stated exception type, and its
message names the argument. Non-contiguous inputs, which must work, give the contiguous result.
The README's "Errors" section lists these cases."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import dsampling_ext as d

f32, i64 = torch.float32, torch.int64
NAN, INF = float("nan"), float("inf")


def zeros(*shape, dtype=f32):
    return torch.zeros(shape, dtype=dtype)


def table():
    return d.ScoreTable(10)


def history():
    return zeros(64), zeros(2, dtype=i64)


def loader():
    return DataLoader(TensorDataset(torch.randn(8, 2), torch.zeros(8, dtype=i64)), batch_size=4)


# (case id, call, exception type, regex the message must match: it names the argument)
CASES = [
    # loss_histogram
    ("histogram: values not a tensor", lambda: d.loss_histogram([1.0, 2.0]), TypeError, r"values must be a torch.Tensor"),
    ("histogram: int values", lambda: d.loss_histogram(torch.arange(4)), TypeError, r"values must be float16, bfloat16"),
    ("histogram: empty", lambda: d.loss_histogram(zeros(0)), ValueError, r"values must be non-empty"),
    ("histogram: NaN", lambda: d.loss_histogram(torch.tensor([1.0, NAN])), RuntimeError, r"values must be finite"),
    ("histogram: +Inf", lambda: d.loss_histogram(torch.tensor([1.0, INF]), 4), RuntimeError, r"values must be finite"),
    ("histogram: bins 0", lambda: d.loss_histogram(zeros(4), 0), ValueError, r"bins must be in \[1"),
    ("histogram: bins 'auto'", lambda: d.loss_histogram(zeros(4), "auto"), ValueError, r"bins must be an int or one of"),
    ("histogram: bins float", lambda: d.loss_histogram(zeros(4), 2.5), TypeError, r"bins must be an int or one of"),
    ("histogram: range reversed", lambda: d.loss_histogram(zeros(4), 4, (1.0, 0.0)), ValueError, r"range must have min <= max"),
    ("histogram: range infinite", lambda: d.loss_histogram(zeros(4), 4, (0.0, INF)), ValueError, r"range must be finite"),
    ("histogram: range of 3", lambda: d.loss_histogram(zeros(4), 4, (0.0, 1.0, 2.0)), ValueError, r"range must be \(min, max\)"),
    # histogram_select
    ("select: history int", lambda: d.histogram_select(zeros(8, dtype=i64), zeros(2, dtype=i64), zeros(4)), TypeError,
     r"history must be float32 or float64"),
    ("select: losses dtype", lambda: d.histogram_select(*history(), zeros(4, dtype=torch.float64)), TypeError,
     r"losses must have the dtype of history"),
    ("select: losses 2-D", lambda: d.histogram_select(*history(), zeros(2, 2)), RuntimeError, r"losses must be"),
    ("select: threshold 1", lambda: d.histogram_select(*history(), zeros(4), threshold=1.0), ValueError,
     r"threshold must be a number in \[0, 1\)"),
    ("select: keep_fraction", lambda: d.histogram_select(*history(), zeros(4), keep_fraction=-0.1), ValueError,
     r"keep_fraction must be a number in \[0, 1\]"),
    ("select: keys shape", lambda: d.histogram_select(*history(), zeros(4), keys=torch.arange(3)), RuntimeError,
     r"keys must be an int64 tensor of shape \[4\]"),
    ("select: NaN loss", lambda: d.histogram_select(*history(), torch.tensor([1.0, NAN])), RuntimeError,
     r"losses must be finite"),
    # argmax_mismatch
    ("argmax: labels float", lambda: d.argmax_mismatch(zeros(4, 3), zeros(4)), TypeError, r"labels must be int64 or int32"),
    ("argmax: logits 1-D", lambda: d.argmax_mismatch(zeros(4), zeros(4, dtype=i64)), ValueError, r"logits must have shape \[B, C\]"),
    ("argmax: labels shape", lambda: d.argmax_mismatch(zeros(4, 3), zeros(5, dtype=i64)), ValueError,
     r"labels must have shape \[4\]"),
    ("argmax: label out of range", lambda: d.argmax_mismatch(zeros(4, 3), torch.tensor([0, 1, 2, 3])), RuntimeError,
     r"labels must be in \[0, 3\)"),
    ("argmax: margin 1.5", lambda: d.argmax_mismatch(zeros(4, 3), zeros(4, dtype=i64), 1.5), ValueError,
     r"margin must be None or a number in \[0, 1\]"),
    # partition_resample / random_subset / philox_uniform
    ("partition: perm int32", lambda: d.partition_resample(torch.arange(10, dtype=torch.int32), 5, 2), ValueError,
     r"perm must be a contiguous 1-D int64 tensor"),
    ("partition: k > size", lambda: d.partition_resample(torch.arange(10), 5, 6), ValueError, r"k must be an int in \[0, "),
    ("random_subset: size > n", lambda: d.random_subset(10, 11), ValueError, r"size must be an int in \[0, "),
    ("philox: n negative", lambda: d.philox_uniform(-1, 0), ValueError, r"n must be >= 0"),
    ("philox: seed too big", lambda: d.philox_uniform(4, 2**64), ValueError, r"seed must fit in 64 bits"),
    ("philox: offset str", lambda: d.philox_uniform(4, 0, "1"), TypeError, r"offset must be an int"),
    # table_select / table_record_
    ("table_select: seen_epoch int64", lambda: d.table_select(zeros(10), zeros(10, dtype=i64), 0), RuntimeError,
     r"seen_epoch must be"),
    ("table_select: shape mismatch", lambda: d.table_select(zeros(10), zeros(9, dtype=torch.int32), 0), RuntimeError,
     r"seen_epoch must .*10"),
    ("table_select: prune 1.5", lambda: d.table_select(zeros(10), zeros(10, dtype=torch.int32), 0, prune=1.5), ValueError,
     r"prune must be a number in \[0, 1\]"),
    ("table_select: NaN score", lambda: d.table_select(torch.tensor([NAN, 1.0]), torch.zeros(2, dtype=torch.int32), 1),
     RuntimeError, r"scores must be finite"),
    # ScoreTable / samplers / selectors
    ("ScoreTable: index out of range", lambda: table().record(torch.tensor([10]), torch.ones(1)), RuntimeError,
     r"indices must be in \[0, 10\)"),
    ("ScoreTable: mean loss", lambda: table().record(torch.arange(3), torch.tensor(1.0)), ValueError,
     r"losses must have shape \(3,\) \(one per index: use reduction='none'\)"),
    ("ScoreTable: float indices", lambda: table().record(zeros(3), zeros(3)), ValueError, r"indices must be a 1-D int64"),
    ("ScoreTable: Inf loss", lambda: table().record(torch.arange(2), torch.tensor([1.0, -INF])), RuntimeError,
     r"losses must be finite"),
    ("ScoreTable: logits without targets", lambda: table().record(torch.arange(2), zeros(2), zeros(2, 3)), ValueError,
     r"logits and targets must be given together"),
    ("ScoreTable: target out of range", lambda: table().record(torch.arange(2), zeros(2), zeros(2, 3),
                                                               torch.tensor([0, 3])), RuntimeError, r"targets must be in \[0, 3\)"),
    ("PruningSampler: prune 0", lambda: d.PruningSampler(table(), 5, prune=0.0), ValueError, r"prune must be in \(0, 1\]"),
    ("PruningSampler: unused beta", lambda: d.PruningSampler(table(), 5, beta=2.0), ValueError,
     r"beta is not used by rule='mean'"),
    ("PruningSampler: weights of an index out of range", lambda: d.PruningSampler(table(), 5).weights(torch.tensor([11])),
     ValueError, r"indices must be in \[0, 10\), got 11, range \[11, 11\]"),
    ("PruningSampler: weights of a negative index", lambda: d.PruningSampler(table(), 5).weights(torch.tensor([3, -1])),
     ValueError, r"indices must be in \[0, 10\), got -1, range \[-1, 3\]"),
    ("RandomSubsetSampler: fraction 1.5", lambda: d.RandomSubsetSampler(10, 1.5), ValueError,
     r"fraction as a fraction must be in \(0, 1\]"),
    ("RandomSubsetSampler: dataset size 0", lambda: d.RandomSubsetSampler(0, 0.5), ValueError,
     r"the dataset must hold at least 1 sample"),
    ("DynamicPartitionSampler: size = N", lambda: d.DynamicPartitionSampler(10, 10), ValueError,
     r"size must be below the dataset size \(10\)"),
    ("DynamicPartitionSampler: accuracy in percent", lambda: d.DynamicPartitionSampler(10, 5).update(85.0), ValueError,
     r"val_accuracy must be a fraction in \[0, 1\]"),
    ("IndexSubsetSampler: float indices", lambda: d.IndexSubsetSampler(zeros(3)), ValueError, r"indices must be a 1-D int64"),
    ("LossHistogramSelector: history 0", lambda: d.LossHistogramSelector(history=0), ValueError, r"history must be an int >= 1"),
    ("LossHistogramSelector: keep_fraction 0", lambda: d.LossHistogramSelector(keep_fraction=0.0), ValueError,
     r"keep_fraction must be in \(0, 1\]"),
    ("LossHistogramSelector: threshold 1", lambda: d.LossHistogramSelector(threshold=1.0), ValueError,
     r"threshold must be a number in \[0, 1\)"),
    ("LossHistogramSelector: 2-D losses", lambda: d.LossHistogramSelector().select(zeros(2, 2)), ValueError,
     r"losses must be a non-empty 1-D tensor"),
    ("LossHistogramSelector: empty losses", lambda: d.LossHistogramSelector().select(zeros(0)), ValueError,
     r"losses must be a non-empty 1-D tensor"),
    ("LossHistogramSelector: int losses", lambda: d.LossHistogramSelector().select(torch.arange(3)), TypeError,
     r"losses must be float16, bfloat16, float32 or float64"),
    ("LossHistogramSelector: indices shape", lambda: d.LossHistogramSelector().select(zeros(3), torch.arange(2)), ValueError,
     r"indices must be an int32/int64 tensor of shape \(3,\)"),
    ("LossHistogramSelector: NaN loss", lambda: d.LossHistogramSelector(warmup_epochs=0).select(torch.tensor([1.0, NAN])),
     ValueError, r"losses must be finite"),
    ("LossCache: index out of range", lambda: d.LossCache(5).needs_forward(torch.tensor([5]), 0), ValueError,
     r"indices must be in \[0, 5\)"),
    ("BatchAccumulator: keep mask int", lambda: d.BatchAccumulator(4).add((zeros(3, 2),), torch.ones(3, dtype=i64)),
     ValueError, r"keep must be a bool tensor of shape \[3\]"),
    ("BatchAccumulator: ragged batch", lambda: d.BatchAccumulator(4).add((zeros(3, 2), zeros(2)), torch.ones(3, dtype=torch.bool)),
     ValueError, r"batch tensors must share their first dimension"),
    ("MisclassifiedFilter: keep_correct 1", lambda: d.MisclassifiedFilter(8, mode="epoch", scores="training", keep_correct=1.0),
     ValueError, r"keep_correct must be in \[0, 1\)"),
    ("MisclassifiedFilter: batch_size 0", lambda: d.MisclassifiedFilter(0), ValueError, r"batch_size must be an int >= 1"),
    ("MisclassifiedFilter: loader is a dataset", lambda: next(d.MisclassifiedFilter(4).batches(loader().dataset, nn.Linear(2, 2))),
     TypeError, r"loader must be an iterable of batches, got the dataset"),
    ("selective_batches: loss_fn not callable", lambda: next(d.selective_batches(loader(), nn.Linear(2, 2), "ce",
                                                                                 d.LossHistogramSelector(), d.BatchAccumulator(4))),
     TypeError, r"loss_fn must be callable"),
    ("weighted_mean: weights shape", lambda: d.weighted_mean(zeros(4), zeros(3)), ValueError, r"weights must be a tensor of shape \(4,\)"),
    ("weighted_mean: scalar loss", lambda: d.weighted_mean(torch.tensor(1.0)), ValueError, r"losses must be a 1-D tensor"),
    ("ProgressLR: not an optimizer", lambda: d.ProgressLR(nn.Linear(2, 2), 5), TypeError, r"optimizer must be a torch.optim.Optimizer"),
    ("ProgressLR: epochs 0", lambda: d.ProgressLR(torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1), 0), ValueError,
     r"epochs must be an int >= 1"),
    ("IndexedDataset: not a dataset", lambda: d.IndexedDataset(iter([1, 2])), TypeError, r"dataset must be a map-style dataset"),
    ("seed: numpy float", lambda: d.RandomSubsetSampler(10, 0.5, seed=np.float64(1.0)), TypeError, r"seed must be an int"),
    ("set_epoch: 1.5", lambda: d.RandomSubsetSampler(10, 0.5).set_epoch(1.5), TypeError, r"epoch must be an int"),
    # weighted_sample / gradnorm_scores / ImportanceSampler (RAS)
    ("weighted_sample: negative", lambda: d.weighted_sample(torch.tensor([1.0, -1.0]), 4), RuntimeError,
     r"weights must be finite and >= 0, got -1 at index 1"),
    ("weighted_sample: all zero", lambda: d.weighted_sample(zeros(3), 4), RuntimeError, r"weights must have a positive sum"),
    ("weighted_sample: empty", lambda: d.weighted_sample(zeros(0), 4), ValueError, r"weights must be a non-empty 1-D tensor"),
    ("weighted_sample: num_samples -1", lambda: d.weighted_sample(torch.ones(3), -1), ValueError,
     r"num_samples must be an int >= 0"),
    ("gradnorm_scores: label out of range", lambda: d.gradnorm_scores(zeros(2, 3), torch.tensor([0, 3])), RuntimeError,
     r"labels must be in \[0, 3\), got 3 at index 1"),
    ("gradnorm_scores: 1-D logits", lambda: d.gradnorm_scores(zeros(3), torch.tensor([0, 1, 2])), ValueError,
     r"logits must have shape \[B, C\]"),
    ("ImportanceSampler: float groups", lambda: d.ImportanceSampler(4, zeros(4), 2), TypeError, r"groups must hold integer ids"),
    ("ImportanceSampler: smoothing 2", lambda: d.ImportanceSampler(4, zeros(4, dtype=i64), 2, smoothing=2.0), ValueError,
     r"smoothing must be a number in \[0, 1\]"),
    ("ImportanceSampler: within", lambda: d.ImportanceSampler(4, zeros(4, dtype=i64), 2, within="top"), ValueError,
     r"within must be one of"),
    ("ImportanceSampler: logits rows", lambda: d.ImportanceSampler(4, zeros(4, dtype=i64), 2).update(
        torch.tensor([0, 1]), zeros(3, 2), torch.tensor([0, 1, 0])), ValueError, r"logits must have one row per index"),
    # centroid_distances / PrototypeSelection (IDS)
    ("centroid_distances: 1-D embeddings", lambda: d.centroid_distances(zeros(4), zeros(4, dtype=i64), 2), ValueError,
     r"embeddings must have shape \[N, D\]"),
    ("centroid_distances: float labels", lambda: d.centroid_distances(zeros(4, 2), zeros(4), 2), TypeError,
     r"labels must be int64 or int32"),
    ("centroid_distances: label out of range", lambda: d.centroid_distances(zeros(2, 2), torch.tensor([0, 2]), 2),
     RuntimeError, r"labels must be in \[0, 2\), got 2 at index 1"),
    ("centroid_distances: NaN", lambda: d.centroid_distances(torch.tensor([[NAN]]), torch.tensor([0]), 1), RuntimeError,
     r"embeddings must be finite"),
    ("centroid_distances: num_classes 0", lambda: d.centroid_distances(zeros(2, 2), zeros(2, dtype=i64), 0), ValueError,
     r"num_classes must be an int in \[1"),
    ("PrototypeSelection: fraction 0", lambda: d.PrototypeSelection(0.0), ValueError, r"fraction must be a number in \(0, 1\]"),
    ("PrototypeSelection: fraction str", lambda: d.PrototypeSelection("0.8"), TypeError, r"fraction must be a number"),
    ("PrototypeSelection: order", lambda: d.PrototypeSelection(order="medium"), ValueError, r"order must be 'easy' or 'hard'"),
    ("PrototypeSelection: labels out of range", lambda: d.PrototypeSelection().fit(zeros(3, 2), torch.tensor([0, 1, 2]),
                                                                                  num_classes=2),
     ValueError, r"labels must be in \[0, 2\), got 2"),
    ("PrototypeSelection: NaN embeddings", lambda: d.PrototypeSelection().fit(torch.tensor([[NAN]]), torch.tensor([0])),
     ValueError, r"embeddings must be finite"),
    ("PrototypeSelection: layer", lambda: d.PrototypeSelection().fit_model(nn.Linear(2, 2), loader(), layer="head",
                                                                            progress=False),
     ValueError, r"layer must name a submodule of model"),
    ("PrototypeSelection: not fitted", lambda: len(d.PrototypeSelection()), RuntimeError, r"must be fitted first"),
]


@pytest.mark.parametrize("call, error, match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_naming_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_the_matrix_is_broad():
    assert len(CASES) >= 40
    names = {c[0].split(":")[0] for c in CASES}
    assert {"histogram", "select", "argmax", "partition", "table_select", "ScoreTable", "PruningSampler",
            "LossHistogramSelector", "MisclassifiedFilter", "selective_batches"} <= names


def strided(t):
    """The same values as a non-contiguous view (every other element of a buffer twice as long)."""
    buffer = torch.zeros((t.shape[0] * 2,) + tuple(t.shape[1:]), dtype=t.dtype)
    buffer[::2] = t
    view = buffer[::2]
    assert not view.is_contiguous()
    return view


def test_non_contiguous_inputs_give_the_contiguous_results():
    g = torch.Generator().manual_seed(0)
    values = torch.rand(101, generator=g) * 5
    for a, b in zip(d.loss_histogram(strided(values)), d.loss_histogram(values)):
        assert torch.equal(a, b)
    logits, labels = torch.randn(50, 7, generator=g), torch.randint(0, 7, (50,), generator=g)
    wide = torch.randn(7, 50, generator=g).t()  # column-major logits
    wide.copy_(logits)
    for a, b in zip(d.argmax_mismatch(wide, strided(labels), 0.1), d.argmax_mismatch(logits, labels, 0.1)):
        assert torch.equal(a, b)
    h1, s1 = zeros(64), zeros(2, dtype=i64)
    h2, s2 = zeros(64), zeros(2, dtype=i64)
    for a, b in zip(d.histogram_select(h1, s1, strided(values), threshold=0.0),
                    d.histogram_select(h2, s2, values.clone(), threshold=0.0)):
        assert torch.equal(a, b)
    scores, seen = torch.rand(100, generator=g), torch.zeros(100, dtype=torch.int32)
    for a, b in zip(d.table_select(strided(scores), strided(seen), 2), d.table_select(scores, seen, 2)):
        assert torch.equal(a, b)
    embeddings = torch.randn(100, 9, generator=g)
    for a, b in zip(d.centroid_distances(embeddings[:, ::2], strided(labels.repeat(2)[:100]), 7),
                    d.centroid_distances(embeddings[:, ::2].contiguous(), labels.repeat(2)[:100], 7)):
        assert torch.equal(a, b)
    t1, t2 = d.ScoreTable(100), d.ScoreTable(100)
    idx = torch.randperm(100, generator=g)[:40]
    t1.record(strided(idx), strided(values[:40]), wide[:40], strided(labels[:40]))
    t2.record(idx, values[:40], logits[:40], labels[:40])
    assert torch.equal(t1.scores, t2.scores) and torch.equal(t1.correct, t2.correct)
    for a, b in zip(d.weighted_sample(strided(values), 50, 3, 4), d.weighted_sample(values, 50, 3, 4)):
        assert torch.equal(a, b)
    for a, b in zip(d.gradnorm_scores(wide, strided(labels)), d.gradnorm_scores(logits, labels)):
        assert torch.equal(a, b)
