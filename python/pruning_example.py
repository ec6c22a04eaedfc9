"""Unbiased pruning from training-pass scores in a plain PyTorch loop: uniform vs PruningSampler.

The change to a plain loop is three lines (marked below): a ScoreTable and a PruningSampler,
the loss recorded into the table, and the loss weighted by the sampler. No extra forward pass:
the scores are the losses the training step computes anyway. The learning rate follows a cosine
by training progress (dsampling_ext.ProgressLR), so both runs end their schedule on time even
though pruning takes fewer steps per epoch.

    python python/pruning_example.py --epochs 6
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
    table = dsampling_ext.ScoreTable(len(train_data))  # (1) a table of per-sample scores ...
    sampler = dsampling_ext.PruningSampler(table, args.epochs, prune=args.prune, seed=args.seed)  # ... and its sampler
    if method == "uniform":
        loader = DataLoader(train_data, batch_size=args.batch, shuffle=True,
                            generator=torch.Generator().manual_seed(args.seed))
    else:
        loader = DataLoader(train_data, batch_size=args.batch, sampler=sampler)  # PrototypeImages yields indices
    print(f"\n{method}")
    print(f"  {'epoch':>5} {'trained':>8} {'steps':>6} {'seconds':>8} {'last lr':>8} {'test acc':>8}")
    for epoch in range(args.epochs):
        if method == "pruning":
            sampler.set_epoch(epoch)
        start, trained, steps = time.perf_counter(), 0, len(loader)
        for i, (x, y, idx) in enumerate(loader):
            losses = nn.functional.cross_entropy(model(x), y, reduction="none")
            if method == "uniform":
                loss = losses.mean()
            else:
                table.record(idx, losses)  # (2) the scores come from this forward
                loss = dsampling_ext.weighted_mean(losses, sampler.weights(idx))  # (3) unbiased weights
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step(epoch + (i + 1) / steps)
            trained += len(y)
        seconds = time.perf_counter() - start
        lr = optimizer.param_groups[0]["lr"]
        print(f"  {epoch:>5} {trained:>8} {steps:>6} {seconds:>8.2f} {lr:>8.4f} {accuracy(model, test_data):>8.3f}")


def main(argv=None) -> None:
    parser = example_parser(__doc__, epochs=6)
    parser.add_argument("--prune", type=float, default=0.5, help="share of the below-mean samples skipped each epoch")
    args = parser.parse_args(argv)
    train_data, test_data = example_data(args)
    for method in ("uniform", "pruning"):
        train(method, args, train_data, test_data)


if __name__ == "__main__":
    main()
