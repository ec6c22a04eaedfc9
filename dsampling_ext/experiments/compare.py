"""The comparison behind `make demo`: every method (and every swept configuration) for every
seed, beside uniform and random subsets, summarised per row (EXPERIMENTS.md rules 1-7).

A budget sweep runs each swept method at each value of its knob (runner.SWEEP_KNOBS). The
random-subset controls run at a fixed grid of budgets (``Config.control_budgets``) for every
seed; a row's control is that random line at the row's measured budget, interpolated linearly
between the two grid budgets around it, seed by seed: the reference line of the Pareto view
that data-pruning papers use, without a control run per configuration.
"""

from __future__ import annotations

import math
import platform
import statistics
import sys
from dataclasses import asdict
from typing import Callable, Optional

import torch
from torch import nn

import dsampling_ext

from .data import ImageData
from .models import build_model
from .runner import SELECTIVE, SWEEP_KNOBS, Config, accuracy, run_method

__all__ = ["compare", "control_accuracy", "label", "summarize", "time_to_target"]


def time_to_target(run: dict, target: float) -> Optional[float]:
    for e in run["evals"]:
        if e["accuracy"] >= target:
            return e["train_seconds"]
    return None


def label(run: dict) -> str:
    """The row a run belongs to: its method with its knob's value (a swept run), or a random subset
    with its requested budget."""
    if run["method"] == "random_subset":
        return f"random_subset@{run['requested_budget']:.2f}"
    if run.get("knob"):
        (name, value), = run["knob"].items()
        return f"{run['method']} {name}={value:g}"
    return run["method"]


def control_accuracy(runs: list[dict], seed: int, budget: float) -> Optional[float]:
    """The random-subset line of ``seed`` at ``budget``: linear interpolation of the final accuracy
    between the two control budgets around it (None outside the controls' range)."""
    points = sorted((r["requested_budget"], r["final_accuracy"]) for r in runs
                    if r["method"] == "random_subset" and r["seed"] == seed and r.get("control"))
    for (b0, a0), (b1, a1) in zip(points, points[1:]):
        if b0 <= budget <= b1:
            return a0 if b1 == b0 else a0 + (a1 - a0) * (budget - b0) / (b1 - b0)
    if len(points) == 1 and abs(points[0][0] - budget) < 1e-9:
        return points[0][1]
    return None


def plan(cfg: Config) -> list[tuple[str, Optional[float], bool]]:
    """The (method, value, is control) runs of one seed: uniform first, each swept method once per
    knob value, then the random-subset controls (a random subset's value is its budget)."""
    methods = list(cfg.methods)
    if "uniform" not in methods:
        methods.insert(0, "uniform")
    runs: list[tuple[str, Optional[float], bool]] = []
    for method in methods:
        if method in cfg.sweep:
            runs += [(method, value, False) for value in cfg.sweep_values(method)]
        elif method != "random_subset":
            runs.append((method, None, False))
        elif not (cfg.controls and cfg.random_subset_fraction in cfg.control_budgets):  # else a control runs it
            runs.append((method, cfg.random_subset_fraction, False))
    if cfg.controls and any(m in SELECTIVE for m, _, _ in runs):
        runs += [("random_subset", b, True) for b in cfg.control_budgets]
    return runs


def compare(data: ImageData, cfg: Config, progress: Callable = lambda iterable, **_: iterable) -> dict:
    """Run the plan for every seed; returns {"config", "data", "dataset", "runs", "summary"}."""
    unknown = [m for m in cfg.sweep if m not in SWEEP_KNOBS or m not in cfg.methods]
    if unknown:
        raise ValueError(f"sweep: {unknown} are not swept methods among the methods run; choose from "
                         f"{sorted(m for m in SWEEP_KNOBS if m in cfg.methods)}")
    torch.set_num_threads(cfg.threads)
    _warm_up(data, cfg)
    runs: list[dict] = []
    seeds = [cfg.seed + s for s in range(cfg.seeds)]
    for seed in seeds:
        for method, value, is_control in progress(plan(cfg), desc=f"{data.name} seed {seed}"):
            if method == "random_subset":
                run = run_method(method, data, cfg, seed, budget=value)
                run["control"] = is_control
            else:
                run = run_method(method, data, cfg, seed, knob=value,
                                 record_histograms=(method == "adonis" and seed == seeds[0]))
            runs.append(run)
    return dict(config=asdict(cfg), data=data.describe(), dataset=data.name, runs=runs, summary=summarize(runs, cfg),
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
        controls = [control_accuracy(runs, r["seed"], r["budget"]) if r["method"] in SELECTIVE else None
                    for r in group]
        vs_control = [r["final_accuracy"] - c for r, c in zip(group, controls) if c is not None]
        rows.append(dict(
            method=name, base_method=group[0]["method"], knob=group[0].get("knob"), dataset=group[0].get("dataset"),
            control=bool(group[0].get("control")), seeds=len(group), final_accuracy=final, best_accuracy=best,
            control_accuracy=_mean_sd([c for c in controls if c is not None]) if vs_control else None,
            control_delta=_mean_sd(vs_control) if len(vs_control) == len(group) else None,
            time_to_target=ttt, median_time_to_target=None if math.isinf(median_ttt) else median_ttt,
            speedup=statistics.median(speedups), speedups=speedups,
            run_share_at_target=statistics.median([math.inf if t is None else t / r["train_seconds"]
                                                   for t, r in zip(ttt, group)]),
            time_ratio=statistics.median(time_ratio), accuracy_delta=statistics.fmean(acc_delta),
            budget=statistics.fmean(r["budget"] for r in group),
            train_seconds=statistics.fmean(train),
            eval_seconds=statistics.fmean(r["eval_seconds"] for r in group),
            forward_samples=statistics.fmean(r["forward_samples"] for r in group),
            backward_samples=statistics.fmean(r["backward_samples"] for r in group),
            selection_share=statistics.fmean(selection) if selection else 0.0,
            stages={k: statistics.fmean(r["stages"].get(k, 0.0) for r in group)
                    for k in sorted({k for r in group for k in r["stages"]})},
        ))
    for row in rows:  # the goal of EXPERIMENTS.md: faster, as accurate, and better than random at its budget
        row["beats_control"] = None if row["control_delta"] is None else row["control_delta"][0] > 0
        row["lossless"] = row["accuracy_delta"] >= -cfg.target_drop
        row["meets_goal"] = bool(row["speedup"] >= 1.5 and row["lossless"] and row["beats_control"])
    return rows
