"""Watch the per-sample loss distribution of a small classifier while it trains.

Each step computes per-sample losses (reduction="none"), bins them with
``dsampling_ext.loss_histogram`` (Sturges bins, numpy.histogram semantics) and prints the
histogram as bars, marking the bins whose share of samples exceeds the ADONIS PMF threshold
(the bins that loss-histogram sampling would draw its candidates from).

    python python/loss_histogram_example.py --steps 30 --every 10
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import dsampling_ext


def make_data(n: int, dim: int, classes: int, generator: torch.Generator):
    centers = torch.randn(classes, dim, generator=generator) * 2.0
    labels = torch.randint(0, classes, (n,), generator=generator)
    inputs = centers[labels] + torch.randn(n, dim, generator=generator)
    return inputs, labels


def render(counts: torch.Tensor, edges: torch.Tensor, threshold: float, width: int = 40) -> str:
    pmf = counts.double() / counts.sum()
    lines = []
    for j, share in enumerate(pmf.tolist()):
        bar = "#" * round(share / max(pmf.max().item(), 1e-12) * width)
        mark = "*" if share > threshold else " "
        lines.append(f"  [{edges[j].item():7.3f}, {edges[j + 1].item():7.3f}) {share:6.1%} {mark} {bar}")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--every", type=int, default=10, help="print the histogram every this many steps")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--threshold", type=float, default=0.1, help="PMF threshold theta (ADONIS default 0.1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    g = torch.Generator().manual_seed(args.seed)
    inputs, labels = make_data(8192, 32, 10, g)
    torch.manual_seed(args.seed)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss(reduction="none")

    print(f"dsampling_ext {dsampling_ext.build_info()['path']} build, torch {torch.__version__}")
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, len(inputs), (args.batch,), generator=g)
        losses = loss_fn(model(inputs[idx]), labels[idx])
        counts, edges = dsampling_ext.loss_histogram(losses.detach(), "sturges")
        optimizer.zero_grad()
        losses.mean().backward()
        optimizer.step()
        if step % args.every == 0 or step == 1:
            print(f"step {step:4d}  mean loss {losses.mean().item():.4f}  ({len(counts)} Sturges bins; * = PMF > {args.threshold})")
            print(render(counts, edges, args.threshold))


if __name__ == "__main__":
    main()
