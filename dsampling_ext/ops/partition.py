"""Dynamic training's partition resampling and the random-subset control: wrappers and fakes."""

from __future__ import annotations

from typing import Union

import torch
from torch import Tensor

from .._validate import require_int
from ._common import _as_int64, _check_device, _check_tensor


def _check_perm(op: str, perm: Tensor) -> None:
    _check_tensor("perm", perm)
    _check_device(op, "perm", perm.device)
    if perm.dtype != torch.int64 or perm.dim() != 1 or not perm.is_contiguous():
        raise ValueError(f"perm must be a contiguous 1-D int64 tensor, got {perm.dtype} {tuple(perm.shape)}")


def _check_count(name: str, value, high: int, high_text: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise ValueError(f"{name} must be an int in [0, {high_text}] = [0, {high}], got {value!r}")
    return value


def partition_resample(perm: Tensor, size: int, k: int, seed: int = 0, offset: int = 0) -> Tensor:
    """Swap k random members of A = perm[:size] with k random members of B = perm[size:], in place.

    Dynamic training's resampling (Eq. 1 of seed 000/001): A keeps size - k random elements and
    takes k random elements of B. Partial Fisher-Yates on both sides with Philox draws keyed by
    (seed, offset, position): O(k) work, the same swaps on CPU and CUDA, A keeps ``size`` members
    and ``perm`` stays a permutation.

    Args:
        perm (Tensor[N]): contiguous int64 tensor (normally a permutation of 0..N-1), mutated.
        size: the size of A, in [0, N].
        k: elements exchanged, in [0, min(size, N - size)].

    Returns:
        ``perm``.
    """
    _check_perm("partition_resample", perm)
    n = perm.numel()
    _check_count("size", size, n, "N")
    _check_count("k", k, min(size, n - size), "min(size, N - size)")
    torch.ops.dsampling.partition_resample.default(perm, size, k, _as_int64(seed, "seed"), _as_int64(offset, "offset"))
    return perm


def random_subset_(perm: Tensor, size: int, seed: int = 0, offset: int = 0) -> Tensor:
    """Partially shuffle ``perm`` in place so that ``perm[:size]`` is a uniformly random subset of
    its elements, in random order (O(size) swaps; ``size = N`` shuffles it all). Returns ``perm``."""
    _check_perm("random_subset_", perm)
    _check_count("size", size, perm.numel(), "N")
    torch.ops.dsampling.random_subset_.default(perm, size, _as_int64(seed, "seed"), _as_int64(offset, "offset"))
    return perm


def random_subset(num_samples: int, size: int, seed: int = 0, offset: int = 0,
                  device: Union[torch.device, str, None] = None) -> Tensor:
    """``size`` distinct indices drawn uniformly from ``range(num_samples)``, in random order.

    Returns:
        Tensor[size] int64 (the same values on CPU and CUDA for the same seed and offset).
    """
    require_int("num_samples", num_samples, 0)
    _check_count("size", size, num_samples, "num_samples")
    perm = torch.arange(num_samples, dtype=torch.int64, device=device)
    return random_subset_(perm, size, seed, offset)[:size].clone()
