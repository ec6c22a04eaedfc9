"""Models for the experiments: a small CNN that trains fast on a CPU, the dynamic-training
paper's CNN (seed 001, Table 1), and the MNIST-1D paper's 1-D CNN."""

from __future__ import annotations

from torch import nn

__all__ = ["MODELS", "build_model", "dt_paper_cnn", "mnist1d_cnn", "small_cnn"]


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


def mnist1d_cnn(in_channels: int, classes: int, length: int, channels: int = 25) -> nn.Module:
    """The MNIST-1D paper's ConvBase (Greydanus & Kobak, its ``models.py``): three 1-D convs of 25
    channels (kernels 5, 3, 3, strides 2, padding 1, ReLU), then one linear layer."""
    out = length
    for kernel in (5, 3, 3):
        out = (out + 2 - kernel) // 2 + 1
    return nn.Sequential(
        nn.Conv1d(in_channels, channels, 5, stride=2, padding=1), nn.ReLU(),
        nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(channels * out, classes),
    )


MODELS = {"small_cnn": small_cnn, "dt_cnn": dt_paper_cnn, "mnist1d_cnn": mnist1d_cnn}
#: Spatial dimensions each model takes: images (H, W) or signals (L).
_SPATIAL_DIMS = {"small_cnn": 2, "dt_cnn": 2, "mnist1d_cnn": 1}


def build_model(name: str, shape: tuple[int, ...], classes: int) -> nn.Module:
    """``name`` for inputs of ``shape`` = (C, H, W) for the image models, (C, L) for mnist1d_cnn."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {name!r}")
    if len(shape) != 1 + _SPATIAL_DIMS[name]:
        raise ValueError(f"model {name!r} takes inputs of shape {'(C, L)' if _SPATIAL_DIMS[name] == 1 else '(C, H, W)'}, "
                         f"got {tuple(shape)}")
    return MODELS[name](shape[0], classes, *shape[1:])
