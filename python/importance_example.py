"""RAS importance sampling in a plain PyTorch loop: uniform vs ImportanceSampler.

The change to a plain loop is three lines (marked below): the sampler as the loader's
batch_sampler, its scores refreshed from the training forward's logits (no extra pass), and the
loss weighted by 1 / (N p_i). The method is reconstructed from Gopal 2016 and Katharopoulos &
Fleuret 2018 (the seed paper's abstract is all there was): per-class probabilities
p_k ∝ N_k sqrt(mean s^2) of the gradient-norm scores s, mixed with 10% uniform. Each epoch
prints the weights' range and the most and least sampled class's share of the draws.

    python python/importance_example.py --epochs 4
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
    sampler = dsampling_ext.ImportanceSampler(len(train_data), train_data.labels, args.batch,  # (1) the sampler
                                              smoothing=args.smoothing, seed=args.seed)
    if method == "uniform":
        loader = DataLoader(train_data, batch_size=args.batch, shuffle=True,
                            generator=torch.Generator().manual_seed(args.seed))
    else:
        loader = DataLoader(train_data, batch_sampler=sampler)  # PrototypeImages yields indices
    print(f"\n{method}")
    print(f"  {'epoch':>5} {'trained':>8} {'steps':>6} {'seconds':>8} {'min w':>6} {'max w':>6} {'class share':>12} "
          f"{'test acc':>8}")
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        start, trained, steps, low, high = time.perf_counter(), 0, len(loader), float("inf"), 0.0
        for x, y, idx in loader:
            logits = model(x)
            losses = nn.functional.cross_entropy(logits, y, reduction="none")
            if method == "uniform":
                loss = losses.mean()
            else:
                sampler.update(idx, logits.detach(), y)  # (2) the scores come from this forward
                w = sampler.weights(idx)
                loss = dsampling_ext.weighted_mean(losses, w)  # (3) unbiased weights 1 / (N p_i)
                low, high = min(low, float(w.min())), max(high, float(w.max()))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            trained += len(y)
        seconds = time.perf_counter() - start
        if method == "uniform":
            low = high = 1.0
            share = "-"
        else:
            p = sampler.epoch_probabilities
            per_class = torch.zeros(10, dtype=torch.float64).index_add_(0, train_data.labels, p)
            share = f"{float(per_class.min()):.3f}-{float(per_class.max()):.3f}"
        print(f"  {epoch:>5} {trained:>8} {steps:>6} {seconds:>8.2f} {low:>6.3f} {high:>6.3f} {share:>12} "
              f"{accuracy(model, test_data):>8.3f}")


def main(argv=None) -> None:
    parser = example_parser(__doc__, epochs=4)
    parser.add_argument("--smoothing", type=float, default=0.1, help="share of the uniform distribution mixed in")
    args = parser.parse_args(argv)
    train_data, test_data = example_data(args)
    for method in ("uniform", "ras"):
        train(method, args, train_data, test_data)


if __name__ == "__main__":
    main()
