"""What every op wrapper shares: dtypes, argument checks, the device check, bin-count rules."""

from __future__ import annotations

import math
from typing import Union

import torch
from torch import Tensor
from torch.cuda import is_available as _cuda_available  # a name of our own: tests patch it, not Dynamo's

from .._library import load as _load_library
from .._validate import require_seed


LOSS_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

#: Bin-count rules, numbered as in csrc/common/binning.h.
BIN_RULES = {"sturges": 1, "sqrt": 2, "rice": 3}


def bin_count(rule: Union[int, str], n: int) -> int:
    """Number of histogram bins a rule gives for ``n`` values (the same integers as binning.h).

    Args:
        rule: an int ``>= 1`` (returned as is), or ``"sturges"`` (ceil(log2 n) + 1), ``"sqrt"``
            (ceil(sqrt n)) or ``"rice"`` (ceil(2 n^(1/3))).
        n: number of values, ``>= 1``.
    """
    if isinstance(rule, bool) or not isinstance(rule, (int, str)):
        raise TypeError(f"bins must be an int or one of {sorted(BIN_RULES)}, got {type(rule).__name__}")
    if isinstance(rule, int):
        if not 1 <= rule <= 2**31 - 1:
            raise ValueError(f"bins must be in [1, 2**31 - 1], got {rule}")
        return rule
    if rule not in BIN_RULES:
        raise ValueError(f"bins must be an int or one of {sorted(BIN_RULES)}, got {rule!r}")
    if n < 1:
        raise ValueError(f"n must be >= 1 for the {rule!r} rule, got {n}")
    if rule == "sturges":
        return (n - 1).bit_length() + 1
    if rule == "sqrt":
        return math.isqrt(n - 1) + 1
    r = max(1, int(2.0 * n ** (1.0 / 3.0)))  # rice: smallest r with r**3 >= 8 n
    while r**3 < 8 * n:
        r += 1
    while r > 1 and (r - 1) ** 3 >= 8 * n:
        r -= 1
    return r


def _check_tensor(name: str, value) -> None:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")


#: Whether the loaded library has CUDA kernels, decided once at import: the check below runs inside
#: traced code, where Dynamo refuses a torch op returning an int (torch.ops.dsampling._cuda_version).
_CUDA_KERNELS: bool = _load_library()["cuda"]


def _check_rows_and_labels(name: str, rows: Tensor, labels: Tensor, shape: str) -> None:
    """A float16/bfloat16/float32/float64 tensor of shape [R, W >= 1] (``shape`` says it in words,
    e.g. "[B, C] with C >= 1") and int64/int32 labels of shape [R]: the inputs of argmax_mismatch,
    gradnorm_scores and centroid_distances (csrc/common/checks.h's rows_and_labels)."""
    _check_tensor(name, rows)
    _check_tensor("labels", labels)
    if rows.dtype not in LOSS_DTYPES:
        raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got {rows.dtype}")
    if rows.dim() != 2 or rows.shape[1] < 1:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(rows.shape)}")
    if labels.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"labels must be int64 or int32, got {labels.dtype}")
    if labels.shape != rows.shape[:1]:
        raise ValueError(f"labels must have shape [{rows.shape[0]}], got {tuple(labels.shape)}")


def _check_device(op: str, name: str, device: torch.device) -> None:
    """Fail clearly when CUDA is asked for but this torch, machine or build cannot run it."""
    if device.type != "cuda":
        return
    if not _cuda_available():
        raise RuntimeError(f"{op}: {name} is on {device} but CUDA is not available to torch {torch.__version__}")
    if not _CUDA_KERNELS:
        raise RuntimeError(
            f"{op}: {name} is on {device} but dsampling_ext was built without CUDA kernels; rebuild it with "
            "a CUDA build of torch and the CUDA toolkit (DSAMPLING_FORCE_CUDA=1 pip install --no-build-isolation -e .)"
        )


def _as_int64(value: int, name: str) -> int:
    """Reinterpret an int in [-2**63, 2**64) as a signed 64-bit schema int (same bits)."""
    value = require_seed(value, name)
    return value - 2**64 if value >= 2**63 else value


def _choice(name: str, value, options: dict):
    if value not in options:
        raise ValueError(f"{name} must be one of {sorted(map(repr, options))}, got {value!r}")
    return options[value]


def _bin_rule(bins: Union[int, str], high: int) -> tuple[int, int]:
    """(bin_rule id, fixed count) of a ``bins`` argument: a rule name or an int in [1, high]."""
    if isinstance(bins, str):
        if bins not in BIN_RULES:
            raise ValueError(f"bins must be an int or one of {sorted(BIN_RULES)}, got {bins!r}")
        return BIN_RULES[bins], 1
    if isinstance(bins, bool) or not isinstance(bins, int) or not 1 <= bins <= high:
        raise ValueError(f"bins must be an int in [1, {high}] or one of {sorted(BIN_RULES)}, got {bins!r}")
    return 0, bins
