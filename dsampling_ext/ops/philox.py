"""The counter-based RNG every kernel draws from (csrc/common/philox.h): wrapper and fakes."""

from __future__ import annotations

from typing import Union

import torch
from torch import Tensor

from ._common import _as_int64, _check_device


def philox_uniform(
    n: int, seed: int, offset: int = 0, device: Union[torch.device, str, None] = None
) -> Tensor:
    """Float32 uniforms in [0, 1) from the Philox4x32-10 counter-based generator.

    Element ``i`` is word ``i % 4`` of the Philox block with counter
    ``(i // 4, offset)`` and key ``seed`` (each split into two 32-bit words, low first),
    keeping its top 24 bits. It depends only on ``(seed, offset, i)``, so CPU and CUDA return the
    same values, and ``philox_uniform(n, s, o)[:m] == philox_uniform(m, s, o)``.

    Args:
        n: number of values, ``>= 0``.
        seed: 64-bit key (any int in [-2**63, 2**64)).
        offset: 64-bit counter offset; use a fresh offset per draw to get independent streams.
        device: where the result lives (default: CPU).

    Returns:
        Tensor[n] float32.

    Example:
        >>> u = philox_uniform(8, seed=3)
        >>> torch.equal(u[:5], philox_uniform(5, seed=3)), torch.equal(u, philox_uniform(8, seed=3, offset=1))
        (True, False)
    """
    for name, value in (("n", n), ("seed", seed), ("offset", offset)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    _check_device("philox_uniform", "device", device)
    out = torch.empty(n, dtype=torch.float32, device=device)
    torch.ops.dsampling.philox_fill_uniform_.default(out, _as_int64(seed, "seed"), _as_int64(offset, "offset"))
    return out
