"""Accuracy filtering in a plain PyTorch loop: train only on the samples the model gets wrong.

Batch mode (thesis Alg. 10): every raw batch is forwarded without gradients, misclassified
samples are collected until a full training batch exists, then one ordinary step runs on them.
Epoch mode (Alg. 8): one filtering pass at the start of each epoch picks the samples to train on.

    python python/misclassified_example.py --epochs 4
"""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.data import DataLoader
from toy_data import accuracy, example_data, example_parser, small_cnn

import dsampling_ext


def main(argv=None) -> None:
    parser = example_parser(__doc__)
    parser.add_argument("--margin", type=float, default=None, help="soft-accuracy margin (Alg. 6)")
    args = parser.parse_args(argv)
    train_data, test_data = example_data(args)
    loss_fn = nn.CrossEntropyLoss()

    for mode in ("batch", "epoch"):
        torch.manual_seed(args.seed)
        model = small_cnn()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        filt = dsampling_ext.MisclassifiedFilter(args.batch, mode=mode, margin=args.margin, seed=args.seed)
        shuffled = DataLoader(train_data, batch_size=args.batch, shuffle=True, generator=torch.Generator().manual_seed(args.seed))
        print(f"\n{mode} mode")
        print(f"  {'epoch':>5} {'trained':>8} {'steps':>6} {'seconds':>8} {'test acc':>8}")
        for epoch in range(args.epochs):
            filt.set_epoch(epoch)
            start = time.perf_counter()
            if mode == "batch":
                batches = ((x, y) for x, y, _ in filt.batches(shuffled, model))
            else:
                sampler = filt.epoch_sampler(model, DataLoader(train_data, batch_size=1024))
                batches = ((x, y) for x, y, _ in DataLoader(train_data, batch_size=args.batch, sampler=sampler))
            trained = steps = 0
            for x, y in batches:
                loss = loss_fn(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                trained, steps = trained + len(y), steps + 1
            seconds = time.perf_counter() - start
            print(f"  {epoch:>5} {trained:>8} {steps:>6} {seconds:>8.2f} {accuracy(model, test_data):>8.3f}")
        if mode == "batch":
            print(f"  counters: {filt.counters()}")


if __name__ == "__main__":
    main()
