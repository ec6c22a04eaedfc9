"""Accuracy filtering (seed 004): the fused argmax-mismatch op, wrapper and fake."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .._validate import require_number
from ._common import _check_device, _check_rows_and_labels


def argmax_mismatch(logits: Tensor, labels: Tensor, margin: Optional[float] = None) -> tuple[Tensor, Tensor, Tensor]:
    """Which samples a classifier gets wrong, in one pass over the logits (seed 004, Alg. 7).

    Keeps row i iff ``argmax(logits[i]) != labels[i]`` (argmax as torch.argmax: the first
    maximum; NaN counts as the maximum). With ``margin``, also keeps a correctly classified row
    whose top-2 softmax gap p1 - p2 is ``<= margin`` (Alg. 6, soft accuracy), computed in float64
    as (1 - exp(z2 - z1)) / sum_j exp(z_j - z1) with the sum in one fixed order on both devices;
    a row holding NaN or +inf, or all -inf, has no gap (as torch.softmax gives NaN there). No [B]
    argmax or [B, C] softmax tensor is made, and on CUDA nothing synchronises with the host.
    Without a margin CPU and CUDA return identical results. With one, ``exp`` comes from each
    device's math library, which may round the last bit differently, so the gap may differ by a
    few ulps and a row whose gap lies that close to ``margin`` may be decided differently.

    Args:
        logits (Tensor[B, C]): float16, bfloat16, float32 or float64.
        labels (Tensor[B]): int64 or int32 in [0, C) (checked on the CPU; a device assertion on CUDA).
        margin: optional soft-accuracy margin in [0, 1].

    Returns:
        (keep, kept_indices, count): Tensor[B] bool; Tensor[B] int64 holding the kept row indices
        in increasing order, then -1; a 0-d int64 tensor with their number.
    """
    _check_rows_and_labels("logits", logits, labels, "[B, C] with C >= 1")
    _check_device("argmax_mismatch", "logits", logits.device)
    if margin is not None:
        margin = require_number("margin", margin, 0.0, 1.0, what="None or a number")
    return torch.ops.dsampling.argmax_mismatch.default(logits, labels, margin)
