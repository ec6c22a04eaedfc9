"""Dynamic training in a plain PyTorch loop: train each epoch on a subset A of the data and let
validation accuracy decide whether to resample it (Type-I after a drop, Type-II after a small
gain, keep after a large one); the random-subset control trains on a fresh random subset of the
same size every epoch.

    python python/dynamic_training_example.py --epochs 6 --size 0.4
"""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.data import DataLoader
from toy_data import accuracy, example_data, example_parser, small_cnn

import dsampling_ext


def main(argv=None) -> None:
    parser = example_parser(__doc__, epochs=6)
    parser.add_argument("--size", type=float, default=0.4, help="|A| as a fraction of the training set")
    args = parser.parse_args(argv)
    train_data, val_data = example_data(args)
    loss_fn = nn.CrossEntropyLoss()

    samplers = {
        "dynamic partition": dsampling_ext.DynamicPartitionSampler(train_data, args.size, seed=args.seed),
        "random subset": dsampling_ext.RandomSubsetSampler(train_data, args.size, seed=args.seed),
    }
    for name, sampler in samplers.items():
        torch.manual_seed(args.seed)
        model = small_cnn()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        loader = DataLoader(train_data, batch_size=args.batch, sampler=sampler)
        print(f"\n{name}")
        print(f"  {'epoch':>5} {'trained':>8} {'seconds':>8} {'val acc':>8}  action")
        for epoch in range(args.epochs):
            sampler.set_epoch(epoch)
            start, trained = time.perf_counter(), 0
            for x, y, _ in loader:
                loss = loss_fn(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                trained += len(y)
            seconds = time.perf_counter() - start
            val = accuracy(model, val_data)
            action = sampler.update(val) if isinstance(sampler, dsampling_ext.DynamicPartitionSampler) else "fresh subset"
            print(f"  {epoch:>5} {trained:>8} {seconds:>8.2f} {val:>8.3f}  {action}")


if __name__ == "__main__":
    main()
