"""A small synthetic image task and CNN shared by the examples (the end-to-end harness has real data)."""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.utils.data import Dataset


class PrototypeImages(Dataset):
    """Images = class prototype + noise; yields (image, label, index)."""

    def __init__(self, n: int, classes: int = 10, size: int = 16, noise: float = 2.5, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        prototypes = torch.randn(classes, 1, size, size, generator=torch.Generator().manual_seed(1234))
        self.labels = torch.randint(0, classes, (n,), generator=g)
        self.images = prototypes[self.labels] + noise * torch.randn(n, 1, size, size, generator=g)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], self.labels[i], i


def small_cnn(classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, classes),
    )


def accuracy(model: nn.Module, data: PrototypeImages) -> float:
    model.eval()
    with torch.no_grad():
        correct = (model(data.images).argmax(1) == data.labels).float().mean().item()
    model.train()
    return correct


def example_parser(doc: str, epochs: int = 4) -> argparse.ArgumentParser:
    """The flags every example shares: epochs, data sizes, batch size, seed."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def example_data(args: argparse.Namespace) -> tuple[PrototypeImages, PrototypeImages]:
    """The examples' set-up: 2 threads, and the train and test (or validation) sets from the flags."""
    torch.set_num_threads(2)
    return PrototypeImages(args.train_size, seed=args.seed), PrototypeImages(args.test_size, seed=args.seed + 1)
