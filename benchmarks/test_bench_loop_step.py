"""What the library's training loop costs per step against the plain loop a user writes, at the
same steps (issue 18, "a loop that costs nothing").

MNIST-1D (16,000 training signals), the MNIST-1D paper's CNN, batch 128, SGD with momentum,
2 threads (conftest). Two loops, each training its own copy of the model:

* plain: ``DataLoader(TensorDataset(x, y), batch_size=128, sampler=SubsetRandomSampler(subset))``
  over a fixed random subset of the size the library keeps in its first pruned epoch, then
  ``F.cross_entropy``, backward, step;
* library: the README's loop, ``IndexedDataset`` + ``PruningSampler`` (defaults: rule "mean",
  prune 0.5) with ``set_epoch`` each epoch, ``table.record(idx, losses)`` and
  ``weighted_mean(losses, sampler.weights(idx))``.

Each round runs one epoch of each, the order alternating between rounds, so that the load of a
shared machine falls on both alike. A loop's time per step in an epoch is the median of its
steps, plus what came before its first batch (set_epoch, the loader's start) over the steps: on a
machine shared by several developers, other processes' bursts land on single steps, and the
median of the steps leaves them out where the epoch's mean would not. The rows are the medians
over rounds; the target is library / plain <= 1.03. extra_info holds the median of the per-round
ratios, of the median and of the mean step, as checks on drift between rounds.
"""

import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, SubsetRandomSampler, TensorDataset

import dsampling_ext
from dsampling_ext.experiments.data import load_dataset
from dsampling_ext.experiments.models import build_model
from targets import measured, target

BATCH, ROUNDS, EPOCHS = 128, 20, 30  # EPOCHS: the run the sampler anneals over; ROUNDS stay before its anneal
GROUP = "loop step mnist1d_cnn b128"
CACHE = Path(__file__).resolve().parent.parent / "runs" / "bench-cache"

target(GROUP, "library", "plain", 1.03, "IndexedDataset + PruningSampler + record + weights + weighted_mean, per step")


def sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def stamped(loader, stamps):
    """The loader's batches, stamping the time each is handed out, and the time the loop ends."""
    for batch in loader:
        stamps.append(time.perf_counter())
        yield batch
    stamps.append(time.perf_counter())


def plain_epoch(model, opt, loader, stamps):
    for x, y in stamped(loader, stamps):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def library_epoch(model, opt, loader, table, sampler, epoch, stamps):
    sampler.set_epoch(epoch)
    for x, y, idx in stamped(loader, stamps):
        losses = F.cross_entropy(model(x), y, reduction="none")
        table.record(idx, losses)
        loss = dsampling_ext.weighted_mean(losses, sampler.weights(idx))
        opt.zero_grad()
        loss.backward()
        opt.step()


def step_times(run):
    """(median step, mean step) of one epoch: a step is the time from one batch handed out to the
    next (its training step and the next batch's fetch); what comes before the first batch (the
    library's set_epoch, the loader's start) is spread over the steps in both."""
    stamps = []
    start = time.perf_counter()
    run(stamps)
    steps = [end - begin for begin, end in zip(stamps, stamps[1:])]
    return statistics.median(steps) + (stamps[0] - start) / len(steps), (stamps[-1] - start) / len(steps)


def test_loop_step(benchmark):
    benchmark.group = "loop step mnist1d_cnn b128, one epoch of each"
    benchmark.extra_info["impl"] = "plain+library"
    data = load_dataset("mnist1d", size=20_000, val_fraction=0, cache_dir=str(CACHE))
    x, y = data.train_x, data.train_y
    n = len(y)
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        models.append(build_model("mnist1d_cnn", tuple(x.shape[1:]), data.classes))
    plain_model, library_model = models
    plain_opt, library_opt = sgd(plain_model), sgd(library_model)

    table = dsampling_ext.ScoreTable(n)
    sampler = dsampling_ext.PruningSampler(table, EPOCHS)
    library_loader = DataLoader(dsampling_ext.IndexedDataset(TensorDataset(x, y)), batch_size=BATCH, sampler=sampler)
    library_epoch(library_model, library_opt, library_loader, table, sampler, 0, [])  # epoch 0 trains on everything
    sampler.set_epoch(1)
    subset = torch.randperm(n, generator=torch.Generator().manual_seed(0))[: len(sampler.indices)]
    plain_loader = DataLoader(TensorDataset(x, y), batch_size=BATCH, sampler=SubsetRandomSampler(subset.tolist()))
    plain_epoch(plain_model, plain_opt, plain_loader, [])  # warm-up, untimed

    per_step = {"plain": [], "library": []}  # per round: (median step, mean step)
    epochs = iter(range(1, EPOCHS))

    def one_round():
        epoch = next(epochs)
        runs = {"plain": lambda stamps: plain_epoch(plain_model, plain_opt, plain_loader, stamps),
                "library": lambda stamps: library_epoch(library_model, library_opt, library_loader, table, sampler,
                                                        epoch, stamps)}
        for name in (("plain", "library") if epoch % 2 else ("library", "plain")):
            per_step[name].append(step_times(runs[name]))

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    assert sampler.epoch < sampler.full_data_from  # every timed library epoch was a pruned one
    for name, rounds in per_step.items():
        measured(GROUP, name, statistics.median(median for median, _ in rounds))
    for i, statistic in enumerate(("median", "mean")):
        ratios = [lib[i] / plain[i] for lib, plain in zip(per_step["library"], per_step["plain"])]
        benchmark.extra_info[f"library/plain per round, {statistic} step: median"] = round(statistics.median(ratios), 4)
