"""One training run of one method: the unit that the comparison and the budget sweep repeat.

Every method trains the same model (same initialisation per seed) on the same data (same order
seed) with the same evaluation schedule. Only training is timed (data loading, selection,
forward, backward, optimizer); evaluation on the test set is excluded and reported apart. The
learning rate follows the schedule as a function of training progress (epochs done, counted
in samples), so every method ends its schedule at the end of its last epoch, whatever its
steps. The target is uniform's final test accuracy minus ``target_drop`` (per seed); a
method's time-to-target is the training time at its first evaluation at or above it. Each
selective method gets a random-subset control at the same backward-sample budget (compare.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import dsampling_ext
from dsampling_ext import (
    BatchAccumulator,
    DynamicPartitionSampler,
    ImportanceSampler,
    IndexedDataset,
    LossHistogramSelector,
    MisclassifiedFilter,
    ProgressLR,
    PrototypeSelection,
    PruningSampler,
    RandomSubsetSampler,
    ScoreTable,
    StageTimer,
    weighted_mean,
)

from .data import ImageData
from .infobatch import InfoBatchSampler
from .models import build_model

#: Methods scored from the training pass (SPEC section 8): a ScoreTable and one sampler each.
TABLE_METHODS = {"pruning": "mean", "pruning_capped": "mean", "pruning_pmf": "pmf", "pruning_percentile": "percentile",
                 "misclassified_training": "mismatch"}
#: The sampler options of a table method beyond its rule: "pruning_capped" is the configuration the
#: budget sweep recommends below ~0.6 of the data (README): kept candidates weigh at most 2, and a
#: sample may go untrained for 6 epochs, so that high prune ratios reach budgets near 0.4.
TABLE_OPTIONS = {"pruning_capped": dict(max_weight=2.0, staleness=6)}
METHODS = ("uniform", "pruning", "pruning_capped", "pruning_pmf", "pruning_percentile", "misclassified_training", "infobatch",
           "adonis", "selective_backprop", "misclassified", "dynamic_partition", "ids", "ras", "random_subset")
SELECTIVE = ("pruning", "pruning_capped", "pruning_pmf", "pruning_percentile", "misclassified_training", "infobatch", "adonis",
             "selective_backprop", "misclassified", "dynamic_partition", "ids", "ras")
SCHEDULES = ("cosine", "step", "constant")
#: What `make demo` runs: the methods scored from the training pass and InfoBatch as published.
#: The seeds' methods that pay a scoring forward (or a validation pass, or an embedding pass)
#: and RAS (a full-budget method) run with ``--methods all``.
DEFAULT_METHODS = ("uniform", "pruning", "pruning_capped", "pruning_pmf", "pruning_percentile", "misclassified_training", "infobatch")
#: The knob a budget sweep turns for each method: the share of candidates pruned, the
#: percentile rule's exponent (keep probability percentile**beta), or the misclassified
#: filter's probability of keeping a correctly classified sample.
SWEEP_KNOBS = {"pruning": "prune", "pruning_capped": "prune", "pruning_pmf": "prune", "infobatch": "prune", "pruning_percentile": "beta",
               "misclassified_training": "keep_correct"}


@dataclass
class Config:
    methods: tuple = DEFAULT_METHODS
    sweep: tuple = ()  # methods run once per value of their knob (SWEEP_KNOBS) instead of once
    prunes: tuple = (0.5, 0.8, 0.95)  # the sweep's values of "prune"
    betas: tuple = (0.5, 1.0, 2.0)  # of the percentile rule's "beta"
    keep_corrects: tuple = (0.5, 0.3, 0.1)  # of the misclassified filter's "keep_correct"
    control_budgets: tuple = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # random subsets run for every seed
    epochs: int = 8
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    schedule: str = "cosine"
    model: str = "small_cnn"
    seeds: int = 3
    seed: int = 0
    target_drop: float = 0.005
    eval_steps: int = 4  # optimizer steps between test evaluations (plus every epoch end)
    threads: int = 2
    dt_size: float = 0.5
    controls: bool = True
    random_subset_fraction: float = 0.5  # when random_subset is asked for by name
    shift: int = 2  # training-image augmentation: random shifts of up to this many pixels (0: none)
    prune: float = 0.5  # the pruning samplers' share of candidates dropped
    anneal: float = 0.125  # the pruning samplers' share of last epochs on all data
    progress: bool = True
    ids_fraction: float = 0.8  # IDS: share of each class kept (the paper's alpha)
    ids_switch: float = 0.6  # IDS: share of the epochs on EASY (gamma / epochs; CIFAR-100's 120/200); re-embedded then

    def sweep_values(self, method: str) -> tuple:
        """The values a budget sweep gives ``method``'s knob."""
        return {"prune": self.prunes, "beta": self.betas, "keep_correct": self.keep_corrects}[SWEEP_KNOBS[method]]


class RandomShift(Dataset):
    """Training images shifted by a random whole number of pixels in [-shift, shift] along each
    axis (zero padding), a fresh shift at every access: the standard MNIST/CIFAR augmentation,
    which keeps the test accuracy rising over more epochs. Yields (image, label, index)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, shift: int, seed: int):
        self.x = nn.functional.pad(x, (shift, shift, shift, shift))
        self.y, self.shift, self.size = y, shift, x.shape[-2:]
        self.generator = torch.Generator().manual_seed(seed + 10_000)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        dy, dx = torch.randint(0, 2 * self.shift + 1, (2,), generator=self.generator).tolist()
        return self.x[i, :, dy : dy + self.size[0], dx : dx + self.size[1]], self.y[i], i


class TrainClock:
    """Seconds of training only: paused around evaluations."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start: Optional[float] = None

    def start(self) -> None:
        self._start = time.perf_counter()

    def stop(self) -> None:
        if self._start is not None:
            self.seconds += time.perf_counter() - self._start
            self._start = None

    def now(self) -> float:
        return self.seconds + (time.perf_counter() - self._start if self._start is not None else 0.0)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    if len(y) == 0:
        return float("nan")
    was_training = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), batch):
            correct += int((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum())
    model.train(was_training)
    return correct / len(y)


def _step_factor(t: float) -> float:
    """The papers' step schedule, by progress: x0.1 at 50% of the run and again at 75%."""
    return 1.0 if t < 0.5 else (0.1 if t < 0.75 else 0.01)


def _schedule(optimizer, cfg: Config) -> ProgressLR:
    return ProgressLR(optimizer, cfg.epochs, _step_factor if cfg.schedule == "step" else cfg.schedule)


def _histogram_snapshot(selector: LossHistogramSelector, epoch: int) -> Optional[dict]:
    """The clipped loss history's PMF as ADONIS sees it (clamped at mean -+ sigma sd)."""
    history = selector.loss_history
    if history is None or history.numel() == 0:
        return None
    h = history.double()
    if selector.clip_sigma is not None:
        sd = h.std(unbiased=False)
        h = h.clamp(float(h.mean() - selector.clip_sigma * sd), float(h.mean() + selector.clip_sigma * sd))
    counts, edges = dsampling_ext.loss_histogram(h, selector.bins)
    return dict(epoch=epoch, pmf=(counts.double() / counts.sum()).tolist(), edges=edges.tolist(),
                threshold=selector.threshold)


def run_method(method: str, data: ImageData, cfg: Config, seed: int, budget: Optional[float] = None,
               record_histograms: bool = False, knob: Optional[float] = None) -> dict:
    """Train one model with one method; returns the run's record (JSON-ready).

    ``budget``: a random subset's share of the data per epoch. ``knob``: the value of the
    method's sweep knob (SWEEP_KNOBS) for this run, instead of the configuration's.
    """
    if knob is not None and method not in SWEEP_KNOBS:
        raise ValueError(f"method {method!r} has no sweep knob; the swept methods are {sorted(SWEEP_KNOBS)}")
    prune = knob if knob is not None and SWEEP_KNOBS.get(method) == "prune" else cfg.prune
    torch.manual_seed(seed)
    model = build_model(cfg.model, data.shape, data.classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    scheduler = _schedule(optimizer, cfg)
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    n = len(data.train_y)
    # what a user of the library writes: an IndexedDataset (batched fetch from a TensorDataset)
    dataset = (RandomShift(data.train_x, data.train_y, cfg.shift, seed) if cfg.shift
               else IndexedDataset(TensorDataset(data.train_x, data.train_y)))
    order = torch.Generator().manual_seed(seed)
    timer = StageTimer()
    clock = TrainClock()
    evals: list[dict] = []
    counts = dict(forward=0, backward=0, steps=0)
    histograms: list[dict] = []
    eval_seconds = 0.0

    def evaluate(epoch: float) -> None:
        nonlocal eval_seconds
        start = time.perf_counter()
        evals.append(dict(train_seconds=clock.seconds, backward=counts["backward"], epoch=epoch,
                          accuracy=accuracy(model, data.test_x, data.test_y)))
        eval_seconds += time.perf_counter() - start

    sampler = selector = accumulator = filt = table = None
    if method == "uniform":
        loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, generator=order)
    elif method in ("random_subset", "dynamic_partition"):
        sampler = (RandomSubsetSampler(n, budget, seed=seed) if method == "random_subset"
                   else DynamicPartitionSampler(n, cfg.dt_size, seed=seed))
        loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler)
    elif method == "ids":
        switch = max(1, round(cfg.ids_switch * cfg.epochs))
        sampler = PrototypeSelection(cfg.ids_fraction, switch_epoch=switch, seed=seed, refit_every=switch)
        embed = DataLoader(TensorDataset(data.train_x, data.train_y, torch.arange(n)), batch_size=4 * cfg.batch_size)
        loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler)
    elif method == "ras":  # RAS importance sampling (SPEC section 4): N draws per epoch, weighted 1 / (N p_i)
        sampler = ImportanceSampler(n, data.train_y, cfg.batch_size, seed=seed)
        loader = DataLoader(dataset, batch_sampler=sampler)
    elif method in TABLE_METHODS:
        table = ScoreTable(n)
        if method == "misclassified_training":
            keep = {} if knob is None else dict(keep_correct=knob)
            sampler = MisclassifiedFilter(cfg.batch_size, mode="epoch", scores="training", seed=seed,
                                          **keep).epoch_sampler(table=table)
        else:
            rule = TABLE_METHODS[method]  # "percentile" keeps by its own probabilities: no prune
            sampler = PruningSampler(table, cfg.epochs, prune=None if rule == "percentile" else prune,
                                     beta=knob if rule == "percentile" else None, anneal=cfg.anneal, rule=rule, seed=seed,
                                     **TABLE_OPTIONS.get(method, {}))
        loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler)
    elif method == "infobatch":  # the paper's algorithm, written from it (infobatch.py); delta = 1 - anneal
        sampler = InfoBatchSampler(n, cfg.epochs, prune=prune, delta=1.0 - cfg.anneal, seed=seed)
        loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler)
    else:
        loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, generator=order)
        if method == "adonis":
            selector = LossHistogramSelector(seed=seed)
        elif method == "selective_backprop":
            selector = LossHistogramSelector.selective_backprop(seed=seed)
        elif method == "misclassified":
            filt = MisclassifiedFilter(cfg.batch_size, seed=seed)
        else:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        accumulator = BatchAccumulator(cfg.batch_size, leftover="carry")

    snapshot_epochs = {0, cfg.epochs // 2, cfg.epochs - 1} if record_histograms else set()
    evaluate(0.0)
    for epoch in range(cfg.epochs):
        clock.start()
        # Progress through the epoch (the LR schedule's clock): raw batches consumed for the
        # per-batch methods (their `position`, as a user's loop reads it), steps otherwise.
        if selector is not None:
            raw_batches = max(1, len(loader))
            selector.set_epoch(epoch)
            if not selector.in_warmup:
                counts["forward"] += n  # the selection forward sees every sample
            batches: Iterator = dsampling_ext.selective_batches(loader, model, loss_fn, selector, accumulator, timer=timer)
            done = lambda step: selector.position / raw_batches  # noqa: E731
        elif filt is not None:
            raw_batches = max(1, len(loader))
            filt.set_epoch(epoch)
            seen_before = filt.seen
            batches = filt.batches(loader, model, timer=timer)
            done = lambda step: filt.position / raw_batches  # noqa: E731
        else:
            if sampler is not None:
                with timer.stage("select"):  # table methods select here: one op call over the table
                    if method == "ids":
                        counts["forward"] += _ids_epoch(sampler, epoch, model, embed, data.classes)
                    else:
                        sampler.set_epoch(epoch)
            raw_batches = max(1, len(loader))  # after the epoch's selection, which sets the loader's length
            batches = iter(loader)
            done = lambda step: step / raw_batches  # noqa: E731
        steps_in_epoch = 0
        for x, y, idx in batches:
            logits = model(x)
            losses = loss_fn(logits, y)
            if table is not None:
                with timer.stage("select"):  # recording scores and looking up weights
                    table.record(idx, losses, logits, y)
                    loss = weighted_mean(losses, sampler.weights(idx))
            elif method == "ras":
                with timer.stage("select"):  # scores from this forward's logits, and the weights
                    sampler.update(idx, logits.detach(), y)
                    loss = weighted_mean(losses, sampler.weights(idx))
            elif method == "infobatch":
                with timer.stage("select"):
                    sampler.update(idx, losses)
                    loss = weighted_mean(losses, sampler.weights(idx))
            else:
                loss = losses.mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            counts["forward"] += len(y)
            counts["backward"] += len(y)
            counts["steps"] += 1
            steps_in_epoch += 1
            scheduler.step(epoch + min(1.0, done(steps_in_epoch)))
            if counts["steps"] % cfg.eval_steps == 0:
                clock.stop()
                evaluate(epoch + min(1.0, done(steps_in_epoch)))
                clock.start()
        if filt is not None:
            counts["forward"] += filt.seen - seen_before
        if method == "dynamic_partition":
            with timer.stage("validation"):  # the method's own per-epoch cost: it needs validation accuracy
                val = accuracy(model, data.val_x, data.val_y)
                counts["forward"] += len(data.val_y)
            with timer.stage("select"):
                sampler.update(val)
        scheduler.step(epoch + 1.0)
        clock.stop()
        evaluate(epoch + 1.0)
        if selector is not None and epoch in snapshot_epochs:
            snap = _histogram_snapshot(selector, epoch)
            if snap is not None:
                histograms.append(snap)
    accuracies = [e["accuracy"] for e in evals]
    knob_name = SWEEP_KNOBS.get(method) if knob is not None else None
    return dict(method=method, dataset=data.name, seed=seed, knob=None if knob_name is None else {knob_name: knob},
                requested_budget=budget, budget=counts["backward"] / (cfg.epochs * n), evals=evals, final_accuracy=accuracies[-1],
                best_accuracy=max(accuracies), train_seconds=clock.seconds, eval_seconds=eval_seconds,
                forward_samples=counts["forward"], backward_samples=counts["backward"], steps=counts["steps"],
                stages=dict(timer.seconds), histograms=histograms, epochs=cfg.epochs, train_size=n)


def _ids_epoch(sampler: PrototypeSelection, epoch: int, model: nn.Module, embed: DataLoader, classes: int) -> int:
    """IDS's selection for an epoch: the first embeds the training set (unaugmented) with the
    model being trained and ranks it; set_epoch re-embeds at the switch to HARD. Returns the
    samples embedded (forward passes, timed as selection)."""
    before = sampler.fitted_epoch
    if before is None:
        sampler.fit_model(model, embed, num_classes=classes, progress=False)
    sampler.set_epoch(epoch)
    return 0 if sampler.fitted_epoch == before else sampler.num_samples
