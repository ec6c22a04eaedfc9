"""IDS prototype selection in a plain PyTorch loop: uniform vs PrototypeSelection (seed 003).

The change to a plain loop is two lines (marked below): embed the training set once with the
model itself (the input of its last nn.Linear, taken with a forward hook, under inference_mode)
and rank every sample by its squared distance to its class centroid; then use the selection as
the DataLoader's sampler. Epochs before --switch train on each class's ceil(fraction * L)
samples nearest the centroid (EASY), epochs from it on the farthest plus the class prototype
(HARD). With --refit-every the dataset is re-embedded with the model being trained.

    python python/ids_example.py --epochs 6 --switch 4
"""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.data import DataLoader
from toy_data import accuracy, example_data, example_parser, small_cnn

import dsampling_ext


def train(method: str, args, train_data, test_data) -> None:
    torch.manual_seed(args.seed)
    model = small_cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    schedule = dsampling_ext.ProgressLR(optimizer, args.epochs)
    if method == "uniform":
        sampler = None
        loader = DataLoader(train_data, batch_size=args.batch, shuffle=True,
                            generator=torch.Generator().manual_seed(args.seed))
    else:
        sampler = dsampling_ext.PrototypeSelection(args.fraction, switch_epoch=args.switch, seed=args.seed,
                                                   refit_every=args.refit_every)
        sampler.fit_model(model, DataLoader(train_data, batch_size=512), progress=args.progress)  # (1) embed, rank
        per_class = torch.bincount(train_data.labels, minlength=10).tolist()
        print(f"\nIDS fit: classes of {per_class} samples; EASY {sampler.easy_indices.numel()}, "
              f"HARD {sampler.hard_indices.numel()} samples; prototypes {sampler.prototypes.tolist()}")
        loader = DataLoader(train_data, batch_size=args.batch, sampler=sampler)  # (2) PrototypeImages yields indices
    print(f"\n{method}")
    print(f"  {'epoch':>5} {'subset':>7} {'trained':>8} {'steps':>6} {'seconds':>8} {'test acc':>8}")
    for epoch in range(args.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)  # EASY or HARD; re-embeds every --refit-every epochs
        start, trained, steps = time.perf_counter(), 0, len(loader)
        for i, (x, y, _) in enumerate(loader):
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step(epoch + (i + 1) / steps)
            trained += len(y)
        seconds = time.perf_counter() - start
        subset = "all" if sampler is None else sampler.subset_name()
        print(f"  {epoch:>5} {subset:>7} {trained:>8} {steps:>6} {seconds:>8.2f} {accuracy(model, test_data):>8.3f}")


def main(argv=None) -> None:
    parser = example_parser(__doc__, epochs=6)
    parser.add_argument("--fraction", type=float, default=0.8, help="share of each class kept (the paper's alpha)")
    parser.add_argument("--switch", type=int, default=4, help="first epoch on the HARD subset (the paper's gamma)")
    parser.add_argument("--refit-every", type=int, default=None, help="re-embed with the trained model every N epochs")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no tqdm bar while embedding")
    args = parser.parse_args(argv)
    train_data, test_data = example_data(args)
    for method in ("uniform", "ids"):
        train(method, args, train_data, test_data)


if __name__ == "__main__":
    main()
