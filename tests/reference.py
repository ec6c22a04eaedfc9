"""Pure-Python/numpy references that the kernels are tested against and benchmarked against."""

from __future__ import annotations

import numpy as np
import torch

M0, M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
W0, W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
MASK = np.uint64(0xFFFFFFFF)


def philox4x32_10(counter: np.ndarray, key0: int, key1: int) -> np.ndarray:
    """Philox4x32-10 on rows of uint32 counters [N, 4], written from Salmon et al. (SC'11)."""
    c = counter.astype(np.uint64)
    k0, k1 = np.uint64(key0), np.uint64(key1)
    x0, x1, x2, x3 = c[:, 0], c[:, 1], c[:, 2], c[:, 3]
    for _ in range(10):
        p0, p1 = M0 * x0, M1 * x2
        x0, x1, x2, x3 = ((p1 >> np.uint64(32)) ^ x1 ^ k0, p1 & MASK, (p0 >> np.uint64(32)) ^ x3 ^ k1, p0 & MASK)
        k0, k1 = (k0 + W0) & MASK, (k1 + W1) & MASK
    return np.stack([x0, x1, x2, x3], axis=1).astype(np.uint32)


def philox_uniform(n: int, seed: int, offset: int) -> np.ndarray:
    """Reference of ops.philox_uniform: word i % 4 of block (i // 4, offset), key seed, top 24 bits."""
    seed, offset = seed % 2**64, offset % 2**64
    blocks = np.arange((n + 3) // 4, dtype=np.uint64)
    counter = np.stack(
        [blocks & MASK, blocks >> np.uint64(32), np.full_like(blocks, offset & 0xFFFFFFFF), np.full_like(blocks, offset >> 32)],
        axis=1,
    )
    words = philox4x32_10(counter, seed & 0xFFFFFFFF, seed >> 32).reshape(-1)[:n]
    return (words >> np.uint32(8)).astype(np.float32) * np.float32(2.0**-24)


def histogram_composite(values: torch.Tensor, bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What a user writes without the library: min/max, torch.histc, linspace edges."""
    lo, hi = torch.aminmax(values)
    lo, hi = lo.item(), hi.item()
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    counts = torch.histc(values, bins=bins, min=lo, max=hi)
    return counts, torch.linspace(lo, hi, bins + 1, device=values.device)
