"""Time-to-accuracy comparison of the sampling methods (EXPERIMENTS.md rules).

Every method trains the same model (same initialisation per seed) on the same data (same order
seed) with the same evaluation schedule. Only training is timed (data loading, selection,
forward, backward, optimizer); evaluation on the test set is excluded and reported apart. The
learning rate follows the schedule as a function of training progress (epochs done, counted
in samples), so every method ends its schedule at the end of its last epoch, whatever its
steps. The target is uniform's final test accuracy minus ``target_drop`` (per seed); a
method's time-to-target is the training time at its first evaluation at or above it. Each
selective method gets a random-subset control at the same backward-sample budget.
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import dsampling_ext
from dsampling_ext import (
    BatchAccumulator,
    DynamicPartitionSampler,
    ImportanceSampler,
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
from .models import build_model

#: Methods scored from the training pass (SPEC section 8): a ScoreTable and one sampler each.
TABLE_METHODS = {"pruning": "mean", "pruning_pmf": "pmf", "pruning_percentile": "percentile",
                 "misclassified_training": "mismatch"}
METHODS = ("uniform", "pruning", "pruning_pmf", "pruning_percentile", "misclassified_training", "adonis",
           "selective_backprop", "misclassified", "dynamic_partition", "ids", "ras", "random_subset")
SELECTIVE = ("pruning", "pruning_pmf", "pruning_percentile", "misclassified_training", "adonis", "selective_backprop",
             "misclassified", "dynamic_partition", "ids", "ras")
SCHEDULES = ("cosine", "step", "constant")
DEFAULT_METHODS = ("uniform", "pruning", "pruning_pmf", "pruning_percentile", "misclassified_training",
                   "selective_backprop", "misclassified", "adonis", "dynamic_partition", "ids", "ras")


@dataclass
class Config:
    methods: tuple = DEFAULT_METHODS
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
               record_histograms: bool = False) -> dict:
    """Train one model with one method; returns the run's record (JSON-ready)."""
    torch.manual_seed(seed)
    model = build_model(cfg.model, data.shape, data.classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    scheduler = _schedule(optimizer, cfg)
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    n = len(data.train_y)
    dataset = (RandomShift(data.train_x, data.train_y, cfg.shift, seed) if cfg.shift
               else TensorDataset(data.train_x, data.train_y, torch.arange(n)))
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
            sampler = MisclassifiedFilter(cfg.batch_size, mode="epoch", scores="training", seed=seed).epoch_sampler(table=table)
        else:
            rule = TABLE_METHODS[method]  # "percentile" keeps by its own probabilities: no prune
            sampler = PruningSampler(table, cfg.epochs, prune=None if rule == "percentile" else cfg.prune,
                                     anneal=cfg.anneal, rule=rule, seed=seed)
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
    return dict(method=method, seed=seed, budget=budget, evals=evals, final_accuracy=accuracies[-1],
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


def time_to_target(run: dict, target: float) -> Optional[float]:
    for e in run["evals"]:
        if e["accuracy"] >= target:
            return e["train_seconds"]
    return None


def label(run: dict) -> str:
    """The row a run belongs to: its method, with the budget (and whom it controls) for random subsets."""
    if run["method"] != "random_subset":
        return run["method"]
    return f"random_subset ~ {run['controls']}" if run.get("controls") else f"random_subset@{run['budget']:.2f}"


def compare(data: ImageData, cfg: Config, progress: Callable = lambda iterable, **_: iterable) -> dict:
    """Run every method for every seed; returns {"config", "data", "runs", "summary"}."""
    torch.set_num_threads(cfg.threads)
    methods = list(cfg.methods)
    if "uniform" not in methods:
        methods.insert(0, "uniform")
    _warm_up(data, cfg)
    runs: list[dict] = []
    seeds = [cfg.seed + s for s in range(cfg.seeds)]
    for seed in seeds:
        budgets: dict[float, list[str]] = {}
        for method in progress(methods, desc=f"seed {seed}"):
            if method == "random_subset":
                run = run_method(method, data, cfg, seed, budget=cfg.random_subset_fraction)
            else:
                run = run_method(method, data, cfg, seed, record_histograms=(method == "adonis" and seed == seeds[0]))
            runs.append(run)
            if cfg.controls and method in SELECTIVE:
                fraction = run["backward_samples"] / (cfg.epochs * run["train_size"])  # ras: whole batches, may pass 1
                budgets.setdefault(round(fraction, 2), []).append(method)
        for fraction, controlled in progress(sorted(budgets.items()), desc=f"seed {seed} controls"):
            run = run_method("random_subset", data, cfg, seed, budget=min(1.0, max(fraction, 1.0 / len(data.train_y))))
            run["controls"] = "+".join(controlled)
            runs.append(run)
    return dict(config=asdict(cfg), data=data.describe(), runs=runs, summary=summarize(runs, cfg),
                machine=dict(platform=platform.platform(), processor=platform.processor(), python=sys.version.split()[0],
                             torch=torch.__version__, threads=cfg.threads, build=dsampling_ext.build_info()))


def _warm_up(data: ImageData, cfg: Config) -> None:
    """A few untimed training steps, so that one-time start-up costs (kernel selection, thread
    pools, allocator growth) do not land on whichever method is timed first."""
    model = build_model(cfg.model, data.shape, data.classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    x, y = data.train_x[: cfg.batch_size], data.train_y[: cfg.batch_size]
    for _ in range(3):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    accuracy(model, data.test_x, data.test_y)


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(runs: list[dict], cfg: Config) -> list[dict]:
    uniform = {r["seed"]: r for r in runs if r["method"] == "uniform"}
    targets = {seed: r["final_accuracy"] - cfg.target_drop for seed, r in uniform.items()}
    groups: dict[str, list[dict]] = {}
    for r in runs:
        groups.setdefault(label(r), []).append(r)
    rows = []
    for name, group in groups.items():
        ttt = [time_to_target(r, targets[r["seed"]]) for r in group]
        base = [time_to_target(uniform[r["seed"]], targets[r["seed"]]) for r in group]
        # a seed that never reaches the target counts as speed-up 0 (infinitely slow)
        speedups = [0.0 if t is None else (b / t if t > 0 else math.inf) for b, t in zip(base, ttt)]
        train = [r["train_seconds"] for r in group]
        selection = [sum(r["stages"].values()) / r["train_seconds"] for r in group if r["train_seconds"] > 0]
        final, best = _mean_sd([r["final_accuracy"] for r in group]), _mean_sd([r["best_accuracy"] for r in group])
        median_ttt = statistics.median([math.inf if t is None else t for t in ttt])
        # The InfoBatch/RS2 form: total training time and final accuracy against uniform's, per seed.
        time_ratio = [r["train_seconds"] / uniform[r["seed"]]["train_seconds"] for r in group]
        acc_delta = [r["final_accuracy"] - uniform[r["seed"]]["final_accuracy"] for r in group]
        rows.append(dict(
            method=name, seeds=len(group), final_accuracy=final, best_accuracy=best,
            time_to_target=ttt, median_time_to_target=None if math.isinf(median_ttt) else median_ttt,
            speedup=statistics.median(speedups), speedups=speedups,
            run_share_at_target=statistics.median([math.inf if t is None else t / r["train_seconds"]
                                                   for t, r in zip(ttt, group)]),
            time_ratio=statistics.median(time_ratio), accuracy_delta=statistics.fmean(acc_delta),
            budget=statistics.fmean(r["backward_samples"] / (r["epochs"] * r["train_size"]) for r in group),
            train_seconds=statistics.fmean(train),
            eval_seconds=statistics.fmean(r["eval_seconds"] for r in group),
            forward_samples=statistics.fmean(r["forward_samples"] for r in group),
            backward_samples=statistics.fmean(r["backward_samples"] for r in group),
            selection_share=statistics.fmean(selection) if selection else 0.0,
            stages={k: statistics.fmean(r["stages"].get(k, 0.0) for r in group)
                    for k in sorted({k for r in group for k in r["stages"]})},
        ))
    by_name = {row["method"]: row for row in rows}
    for row in rows:  # the goal of EXPERIMENTS.md: faster, as accurate, and better than its control
        control = by_name.get(f"random_subset ~ {row['method']}")
        if control is None:
            control = next((c for name, c in by_name.items() if name.startswith("random_subset ~ ")
                            and row["method"] in name[len("random_subset ~ "):].split("+")), None)
        row["control"] = None if control is None else control["method"]
        row["beats_control"] = None if control is None else (
            row["speedup"] > control["speedup"] and row["final_accuracy"][0] > control["final_accuracy"][0])
        row["meets_goal"] = bool(row["speedup"] >= 1.5 and row["accuracy_delta"] >= -cfg.target_drop
                                 and row["beats_control"])
    return rows


def format_table(result: dict) -> str:
    cfg = result["config"]
    summary = result["summary"]
    lines = [
        f"Data: {result['data']}",
        f"Model {cfg['model']}, {cfg['epochs']} epochs, batch {cfg['batch_size']}, SGD lr {cfg['lr']} momentum "
        f"{cfg['momentum']}, {cfg['schedule']} schedule by training progress, {cfg['seeds']} "
        f"seed{'s' if cfg['seeds'] != 1 else ''}, {cfg['threads']} threads "
        f"({result['machine']['processor'] or result['machine']['platform']}).",
        f"Target: uniform's final test accuracy - {cfg['target_drop'] * 100:.1f} pp, per seed. Times are training "
        f"seconds (evaluation excluded); speed-up = uniform's time-to-target / the method's (median over seeds).",
        "",
    ]
    width = max(len(row["method"]) for row in summary)
    pm = "±" if cfg["seeds"] > 1 else " "
    lines.append(f"{'method':<{width}} {'final acc':>11} {'time-to-target per seed (s)':>28} {'median':>7} "
                 f"{'speed-up':>8} {'train s':>8} {'time':>6} {'Δ acc':>7} {'bwd':>8} {'budget':>6} {'select':>7}")
    for row in summary:
        ttt = " ".join("never" if t is None else f"{t:.2f}" for t in row["time_to_target"])
        median = "never" if row["median_time_to_target"] is None else f"{row['median_time_to_target']:.2f}"
        sd = f"{pm}{row['final_accuracy'][1]:.3f}" if cfg["seeds"] > 1 else ""
        lines.append(
            f"{row['method']:<{width}} {row['final_accuracy'][0]:.3f}{sd:<6} {ttt:>28} {median:>7} "
            f"{row['speedup']:>7.2f}x {row['train_seconds']:>8.2f} {row['time_ratio'] - 1:>+6.0%} "
            f"{row['accuracy_delta'] * 100:>+6.2f}pp {row['backward_samples']:>8.0f} {row['budget']:>6.2f} "
            f"{row['selection_share']:>7.1%}")
    lines.append("")
    lines.append("speed-up: median over seeds, a seed that never reaches the target counting 0. time: total training "
                 "time against uniform's (median over seeds), Δ acc: final accuracy minus uniform's (mean), the "
                 "InfoBatch/RS2 form. bwd: samples through backward passes (mean per run); budget: backward samples "
                 "per epoch / training set; select: share of training time in selection (selection forwards, "
                 "scoring and batching, DT's validation). random_subset ~ m: the control at method m's budget.")
    uniform = next((row for row in summary if row["method"] == "uniform"), None)
    if uniform is not None:
        share = uniform["run_share_at_target"]
        lines.append("")
        lines.append(f"Uniform first reaches the target after {share:.0%} of its run (median over seeds)."
                     + ("" if share >= 0.5 else " WARNING: under half: time-to-target measures the early epochs, not "
                        "the end of training; use more epochs or a decaying schedule."))
    winners = [row["method"] for row in summary if row.get("meets_goal")]
    lines.append("Goal (>= 1.5x faster to the target, final accuracy within "
                 f"{cfg['target_drop'] * 100:.1f} pp of uniform's, and faster and more accurate than its random-subset "
                 f"control): {'met by ' + ', '.join(winners) if winners else 'not met by any method'}.")
    return "\n".join(lines)


def plot(result: dict, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(9, 5.5))
    colours = {}
    for run in result["runs"]:
        name = label(run)
        colour = colours.setdefault(name, f"C{len(colours) % 10}")
        xs = [e["train_seconds"] for e in run["evals"]]
        ys = [e["accuracy"] for e in run["evals"]]
        ax.plot(xs, ys, color=colour, alpha=0.8, lw=1.2, label=name if run["seed"] == result["config"]["seed"] else None)
    uniform_final = [r["final_accuracy"] for r in result["runs"] if r["method"] == "uniform"]
    if uniform_final:
        target = statistics.fmean(uniform_final) - result["config"]["target_drop"]
        ax.axhline(target, color="grey", ls="--", lw=1, label=f"target (mean) {target:.3f}")
        ax.set_ylim(max(0.0, target - 0.15), min(1.0, max(max(e["accuracy"] for e in r["evals"]) for r in result["runs"]) + 0.02))
    ax.set_xlabel("training wall-clock (s, evaluation excluded)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"Test accuracy vs training time — {result['data'].split(':')[0]}, one line per seed")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    paths.append(out_dir / "accuracy_vs_time.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    snaps = next((r["histograms"] for r in result["runs"] if r["method"] == "adonis" and r["histograms"]), [])
    if snaps:
        fig, axes = plt.subplots(1, len(snaps), figsize=(4.2 * len(snaps), 3.6), squeeze=False)
        for ax, snap in zip(axes[0], snaps):
            edges = snap["edges"]
            widths = [b - a for a, b in zip(edges[:-1], edges[1:])]
            colours = ["C3" if p > snap["threshold"] else "C0" for p in snap["pmf"]]
            ax.bar(edges[:-1], snap["pmf"], width=widths, align="edge", color=colours, edgecolor="white")
            ax.axhline(snap["threshold"], color="k", ls="--", lw=1, label=f"θ = {snap['threshold']}")
            ax.set_title(f"end of epoch {snap['epoch']}")
            ax.set_xlabel("per-sample loss (clipped history)")
            ax.set_ylabel("PMF")
            ax.legend(fontsize=8)
        fig.suptitle("ADONIS loss histogram (red: bins above θ, whose samples are candidates)")
        fig.tight_layout()
        paths.append(out_dir / "adonis_histograms.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths


def write_json(result: dict, path: Path) -> None:
    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    path.write_text(json.dumps(clean(result), indent=1))
