"""Models for the experiments: a small CNN that trains fast on a CPU, and the dynamic-training
paper's CNN (seed 001, Table 1)."""

from __future__ import annotations

from torch import nn

__all__ = ["MODELS", "build_model", "dt_paper_cnn", "small_cnn"]


def small_cnn(in_channels: int, classes: int, height: int, width: int) -> nn.Module:
    """Two 3x3 conv layers (16, 32 channels) with max-pooling, then a linear classifier."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * (height // 4) * (width // 4), classes),
    )


def dt_paper_cnn(in_channels: int, classes: int, height: int, width: int, stride128: int = 2) -> nn.Module:
    """Table 1 of the dynamic-training paper: 3x32, 4x64, 4x128, 3x128 conv layers (3x3, ReLU)
    with three max-pools and a global average pool, then one linear layer. The table takes
    8x8 to 4x4 at the first 128-channel conv, which needs stride 2 (``stride128``, default) - or
    stride 1 if that size is a typo."""

    def convs(cin, cout, count, first_stride=1):
        layers = []
        for i in range(count):
            layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, stride=first_stride if i == 0 else 1, padding=1), nn.ReLU()]
        return layers

    return nn.Sequential(
        *convs(in_channels, 32, 3), nn.MaxPool2d(2),
        *convs(32, 64, 4), nn.MaxPool2d(2),
        *convs(64, 128, 4, first_stride=stride128), nn.MaxPool2d(2),
        *convs(128, 128, 3), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(128, classes),
    )


MODELS = {"small_cnn": small_cnn, "dt_cnn": dt_paper_cnn}


def build_model(name: str, shape: tuple[int, int, int], classes: int) -> nn.Module:
    if name not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {name!r}")
    c, h, w = shape
    return MODELS[name](c, classes, h, w)
