"""What a comparison prints and draws: the time-to-accuracy table, the budget sweep's table, the
accuracy-vs-time curves, the frontier (accuracy against training time, one line per method through
its budgets, random subsets as the reference line), and the JSON record."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from .compare import label

__all__ = ["format_sweep", "format_table", "plot", "plot_frontier", "write_json"]


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
                 f"{'speed-up':>8} {'train s':>8} {'time':>6} {'Δ acc':>7} {'vs rand':>8} {'bwd':>8} {'budget':>6} "
                 f"{'select':>7}")
    for row in summary:
        ttt = " ".join("never" if t is None else f"{t:.2f}" for t in row["time_to_target"])
        median = "never" if row["median_time_to_target"] is None else f"{row['median_time_to_target']:.2f}"
        sd = f"{pm}{row['final_accuracy'][1]:.3f}" if cfg["seeds"] > 1 else ""
        lines.append(
            f"{row['method']:<{width}} {row['final_accuracy'][0]:.3f}{sd:<6} {ttt:>28} {median:>7} "
            f"{row['speedup']:>7.2f}x {row['train_seconds']:>8.2f} {row['time_ratio'] - 1:>+6.0%} "
            f"{row['accuracy_delta'] * 100:>+6.2f}pp {_pp(row['control_delta']):>8} {row['backward_samples']:>8.0f} "
            f"{row['budget']:>6.2f} {row['selection_share']:>7.1%}")
    lines.append("")
    lines.append("speed-up: median over seeds, a seed that never reaches the target counting 0. time: total training "
                 "time against uniform's (median over seeds), Δ acc: final accuracy minus uniform's (mean), the "
                 "InfoBatch/RS2 form. bwd: samples through backward passes (mean per run); budget: backward samples "
                 "per epoch / training set; select: share of training time in selection (selection forwards, "
                 "scoring and batching, DT's validation). vs rand: final accuracy minus the random-subset line's at the "
                 "row's budget (interpolated between the control budgets, per seed; mean). random_subset@b: a random "
                 "b of the data each epoch.")
    uniform = next((row for row in summary if row["method"] == "uniform"), None)
    if uniform is not None:
        share = uniform["run_share_at_target"]
        lines.append("")
        lines.append(f"Uniform first reaches the target after {share:.0%} of its run (median over seeds)."
                     + ("" if share >= 0.5 else " WARNING: under half: time-to-target measures the early epochs, not "
                        "the end of training; use more epochs or a decaying schedule."))
    winners = [row["method"] for row in summary if row.get("meets_goal")]
    lines.append("Goal (>= 1.5x faster to the target, final accuracy within "
                 f"{cfg['target_drop'] * 100:.1f} pp of uniform's, and above the random-subset line at its budget): "
                 f"{'met by ' + ', '.join(winners) if winners else 'not met by any method'}.")
    return "\n".join(lines)


def _pp(mean_sd) -> str:
    return "-" if mean_sd is None else f"{mean_sd[0] * 100:+.2f}pp"


def format_sweep(result: dict) -> str:
    """The frontier as a table: every selective row by method and budget, beside uniform and the
    random-subset line at the same budget."""
    summary, cfg = result["summary"], result["config"]
    uniform = next(row for row in summary if row["method"] == "uniform")
    rows = sorted((row for row in summary if row["base_method"] not in ("uniform", "random_subset")),
                  key=lambda row: (row["base_method"], -row["budget"]))
    rows += sorted((row for row in summary if row["base_method"] == "random_subset"), key=lambda row: -row["budget"])
    width = max(len(row["method"]) for row in rows) if rows else 6
    pm = "±" if cfg["seeds"] > 1 else " "
    lines = [f"Budget sweep on {result['dataset']} ({cfg['epochs']} epochs, {cfg['seeds']} seeds): uniform "
             f"{uniform['final_accuracy'][0]:.4f}{pm}{uniform['final_accuracy'][1]:.4f}. A row is lossless within "
             f"{cfg['target_drop'] * 100:.1f} pp of uniform; 'vs random' is against the random-subset line at its "
             f"budget (mean{pm}sd over seeds).",
             f"{'configuration':<{width}} {'budget':>6} {'final acc':>15} {'Δ uniform':>10} {'random there':>12} "
             f"{'vs random':>16} {'time':>5} {'':>9}"]
    for row in rows:
        acc = row["final_accuracy"]
        ctrl = row["control_accuracy"]
        vs = row["control_delta"]
        verdict = ("lossless" if row["lossless"] else "") + (" >random" if row["beats_control"] else "")
        lines.append(f"{row['method']:<{width}} {row['budget']:>6.3f} {acc[0]:>8.4f}{pm}{acc[1]:.4f} "
                     f"{row['accuracy_delta'] * 100:>+8.2f}pp {'-' if ctrl is None else f'{ctrl[0]:.4f}':>12} "
                     f"{'-' if vs is None else f'{vs[0] * 100:+.2f}{pm}{vs[1] * 100:.2f}pp':>16} "
                     f"{row['time_ratio']:>5.2f} {verdict.strip():>9}")
    lines.append("time: training time against uniform's (median over seeds); budget: backward samples / "
                 "(epochs x training set), measured.")
    return "\n".join(lines)


def plot_frontier(results: list[dict], path: Path) -> Path:
    """Final accuracy against training time (relative to uniform), one panel per dataset: a line per
    method through its budgets, random subsets as the dashed reference line, uniform as a star.
    The y-axis spans the random line and uniform; a configuration below it (a diverged run) is
    drawn on the axis's floor as a down-pointing triangle (its accuracy is in the sweep table)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6.2 * len(results), 4.8), squeeze=False)
    for ax, result in zip(axes[0], results):
        summary = result["summary"]
        groups: dict[str, list[dict]] = {}
        for row in summary:
            groups.setdefault(row["base_method"], []).append(row)
        uniform = groups.pop("uniform")[0]
        top = uniform["final_accuracy"][0]
        randoms = [r["final_accuracy"][0] for r in groups.get("random_subset", [])]
        floor = min(randoms + [top - 0.01]) - 0.004
        for i, (name, rows) in enumerate(sorted(groups.items())):
            rows = sorted(rows, key=lambda row: row["budget"])
            random_line = name == "random_subset"
            colour = "grey" if random_line else f"C{i % 10}"
            xs = [r["time_ratio"] for r in rows]
            ys = [max(r["final_accuracy"][0], floor) for r in rows]
            ax.errorbar(xs, ys, yerr=[0.0 if r["final_accuracy"][0] < floor else r["final_accuracy"][1] for r in rows],
                        marker="s" if random_line else "o", ms=4, capsize=2, lw=1.4, ls="--" if random_line else "-",
                        color=colour, label="random subset" if random_line else name)
            for r, x in zip(rows, xs):
                if r["final_accuracy"][0] < floor:
                    ax.plot([x], [floor], marker="v", ms=9, color=colour, ls="")
        ax.plot([uniform["time_ratio"]], [top], marker="*", ms=12, color="k", ls="", label="uniform")
        ax.axhline(top - result["config"]["target_drop"], color="k", lw=0.8, ls=":",
                   label=f"uniform - {result['config']['target_drop'] * 100:.1f} pp")
        ax.set_ylim(floor - 0.002, top + 0.004)
        ax.set_xlabel("training time / uniform's (median over seeds)")
        ax.set_ylabel(f"final test accuracy (mean ± sd, {result['config']['seeds']} seeds)")
        ax.set_title(f"{result['dataset']}, {result['config']['epochs']} epochs (▼: far below the axis)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
