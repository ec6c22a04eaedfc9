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
shared machine falls on both alike; a loop's time per step is its epoch's time over its steps.
The rows are the medians over rounds; the target is library / plain <= 1.03. The median of the
per-round ratios is printed too (extra_info), as a check on drift between rounds.
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

BATCH, ROUNDS, EPOCHS = 128, 15, 30  # EPOCHS: the run the sampler anneals over; ROUNDS stay before its anneal
GROUP = "loop step mnist1d_cnn b128"
CACHE = Path(__file__).resolve().parent.parent / "runs" / "bench-cache"

target(GROUP, "library", "plain", 1.03, "IndexedDataset + PruningSampler + record + weights + weighted_mean, per step")


def sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def plain_epoch(model, opt, loader):
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def library_epoch(model, opt, loader, table, sampler, epoch):
    sampler.set_epoch(epoch)
    for x, y, idx in loader:
        losses = F.cross_entropy(model(x), y, reduction="none")
        table.record(idx, losses)
        loss = dsampling_ext.weighted_mean(losses, sampler.weights(idx))
        opt.zero_grad()
        loss.backward()
        opt.step()


def seconds(run):
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


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
    library_epoch(library_model, library_opt, library_loader, table, sampler, 0)  # epoch 0 trains on everything
    sampler.set_epoch(1)
    subset = torch.randperm(n, generator=torch.Generator().manual_seed(0))[: len(sampler.indices)]
    plain_loader = DataLoader(TensorDataset(x, y), batch_size=BATCH, sampler=SubsetRandomSampler(subset.tolist()))
    plain_epoch(plain_model, plain_opt, plain_loader)  # warm-up, untimed

    per_step = {"plain": [], "library": []}
    epochs = iter(range(1, EPOCHS))

    def one_round():
        epoch = next(epochs)
        runs = {"plain": lambda: plain_epoch(plain_model, plain_opt, plain_loader),
                "library": lambda: library_epoch(library_model, library_opt, library_loader, table, sampler, epoch)}
        for name in (("plain", "library") if epoch % 2 else ("library", "plain")):
            elapsed = seconds(runs[name])
            steps = len(plain_loader) if name == "plain" else len(library_loader)
            per_step[name].append(elapsed / steps)

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    assert sampler.epoch < sampler.full_data_from  # every timed library epoch was a pruned one
    for name, times in per_step.items():
        measured(GROUP, name, statistics.median(times))
    ratios = [a / b for a, b in zip(per_step["library"], per_step["plain"])]
    benchmark.extra_info["library/plain, median of per-round ratios"] = round(statistics.median(ratios), 4)
    benchmark.extra_info["ms per step, plain / library"] = [round(statistics.median(per_step[k]) * 1e3, 3)
                                                            for k in ("plain", "library")]
