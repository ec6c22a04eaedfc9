"""ADONIS in a plain PyTorch loop: a small CNN on synthetic images, uniform vs loss-histogram sampling.

Each epoch of the ADONIS run makes a no-grad selection forward over every batch, keeps the
samples whose loss falls in a dense bin of the recent loss histogram (PMF > theta, then a
fraction alpha), and back-propagates only full batches of those. The table shows what each
epoch cost and what it reached.

    python python/adonis_example.py --epochs 4
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
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    loader = DataLoader(train_data, batch_size=args.batch, shuffle=True, generator=torch.Generator().manual_seed(args.seed))
    selector = dsampling_ext.LossHistogramSelector(warmup_epochs=args.warmup, seed=args.seed)
    accumulator = dsampling_ext.BatchAccumulator(args.batch, leftover="carry")
    print(f"\n{method}")
    print(f"  {'epoch':>5} {'trained':>8} {'sel. fwd':>8} {'seconds':>8} {'test acc':>8}")
    for epoch in range(args.epochs):
        start, trained = time.perf_counter(), 0
        if method == "uniform":
            batches = ((x, y) for x, y, _ in loader)
        else:
            selector.set_epoch(epoch)
            batches = ((x, y) for x, y, _ in dsampling_ext.selective_batches(loader, model, loss_fn, selector, accumulator))
        for x, y in batches:
            loss = loss_fn(model(x), y).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            trained += len(y)
        seconds = time.perf_counter() - start
        forwarded = 0 if method == "uniform" or selector.in_warmup else len(train_data)
        print(f"  {epoch:>5} {trained:>8} {forwarded:>8} {seconds:>8.2f} {accuracy(model, test_data):>8.3f}")


def main(argv=None) -> None:
    parser = example_parser(__doc__)
    parser.add_argument("--warmup", type=int, default=1, help="ADONIS warm-up epochs (omega)")
    args = parser.parse_args(argv)
    train_data, test_data = example_data(args)
    for method in ("uniform", "adonis"):
        train(method, args, train_data, test_data)


if __name__ == "__main__":
    main()
