"""What each method's selection machinery costs per epoch, against a uniform RandomSampler epoch.

Synthetic epochs of N samples with the losses and logits given (no model, no data loading):
only what the library adds to a training loop is timed. Per-batch selectors (ADONIS,
Selective-Backprop, the misclassified filter) run their real loop (``selective_batches`` /
``MisclassifiedFilter.batches``) over precomputed batches of 256 in a uniformly shuffled
order, with an identity "model" that returns the given losses or logits; epoch-level samplers
select, yield the epoch, and (table methods) record every batch and look up its weights. The
summary prints one "overhead vs uniform" line per method; the selection forward that the
per-batch selectors also need is not included (it is a model cost: see the demo's StageTimer).
"""

import pytest
import torch
from torch import nn
from torch.utils.data import RandomSampler

import dsampling_ext
from dsampling_ext import (
    BatchAccumulator,
    DynamicPartitionSampler,
    LossHistogramSelector,
    MisclassifiedFilter,
    PruningSampler,
    RandomSubsetSampler,
    ScoreTable,
)

SIZES = [50_000, 1_281_167]
BATCH, CLASSES = 256, 10
METHODS = ["uniform", "random_subset", "dynamic_partition", "pruning", "pruning_pmf", "pruning_percentile",
           "filter_training", "adonis", "selective_backprop", "misclassified"]


def data(n):
    g = torch.Generator().manual_seed(n)
    losses = torch.empty(n).exponential_(generator=g)
    logits = torch.randn(n, CLASSES, generator=g)
    targets = torch.randint(0, CLASSES, (n,), generator=g)
    return losses, logits, targets


def uniform_batches(n, epoch, values, targets):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch))
    return [(values[i], targets[i], i) for i in order.split(BATCH)]


class Epochs:
    """Calls one epoch of a method per __call__ (epochs advance, as in training)."""

    def __init__(self, method, n):
        self.n, self.epoch, self.method = n, 0, method
        self.losses, self.logits, self.targets = data(n)
        if method == "uniform":
            self.sampler = RandomSampler(range(n), generator=torch.Generator().manual_seed(0))
        elif method == "random_subset":
            self.sampler = RandomSubsetSampler(n, 0.5)
        elif method == "dynamic_partition":
            self.sampler = DynamicPartitionSampler(n, 0.5)
        elif method.startswith("pruning") or method == "filter_training":
            self.table = ScoreTable(n)
            if method == "filter_training":
                self.sampler = MisclassifiedFilter(BATCH, mode="epoch", scores="training").epoch_sampler(table=self.table)
            else:
                rule = {"pruning": "mean", "pruning_pmf": "pmf", "pruning_percentile": "percentile"}[method]
                self.sampler = PruningSampler(self.table, epochs=10**6, rule=rule)
        elif method in ("adonis", "selective_backprop"):
            self.selector = (LossHistogramSelector(warmup_epochs=0) if method == "adonis"
                             else LossHistogramSelector.selective_backprop(warmup_epochs=0))
            self.accumulator = BatchAccumulator(BATCH)
        else:
            self.filter = MisclassifiedFilter(BATCH)

    def __call__(self):
        n, epoch = self.n, self.epoch
        self.epoch += 1
        if self.method in ("uniform", "random_subset"):
            if hasattr(self.sampler, "set_epoch"):
                self.sampler.set_epoch(epoch)
            return len(list(self.sampler))
        if self.method == "dynamic_partition":
            self.sampler.update(0.5 - 1e-6 * epoch)  # always a drop: a Type-I resample
            self.sampler.set_epoch(epoch)
            return len(list(self.sampler))
        if hasattr(self, "table"):
            self.sampler.set_epoch(epoch)
            order = torch.tensor(list(self.sampler))
            logits = self.method == "filter_training"
            for idx in order.split(BATCH):
                self.table.record(idx, self.losses[idx], self.logits[idx] if logits else None,
                                  self.targets[idx] if logits else None)
                self.sampler.weights(idx)
            return order.numel()
        if hasattr(self, "selector"):
            self.selector.set_epoch(epoch)
            batches = uniform_batches(n, epoch, self.losses, self.targets)
            out = dsampling_ext.selective_batches(batches, nn.Identity(), lambda losses, y: losses, self.selector,
                                                  self.accumulator)
            return sum(len(b[1]) for b in out)
        batches = uniform_batches(n, epoch, self.logits, self.targets)
        return sum(len(b[1]) for b in self.filter.batches(batches, nn.Identity()))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n", SIZES)
def test_selection_overhead(benchmark, n, method):
    benchmark.group = f"overhead N={n}"
    benchmark.extra_info["impl"] = method
    epochs = Epochs(method, n)
    trained = epochs()  # epoch 0 (table methods: everything is new)
    assert 0 < trained <= n
    rounds = dict(rounds=3, iterations=1, warmup_rounds=1) if n >= 1_000_000 else dict(rounds=10, iterations=1, warmup_rounds=1)
    benchmark.pedantic(epochs, **rounds)
