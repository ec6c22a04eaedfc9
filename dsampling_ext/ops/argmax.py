"""Accuracy filtering (seed 004): the fused argmax-mismatch op, wrapper and fake."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ._common import LOSS_DTYPES, _check_device, _check_tensor


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
    _check_tensor("logits", logits)
    _check_tensor("labels", labels)
    _check_device("argmax_mismatch", "logits", logits.device)
    if logits.dtype not in LOSS_DTYPES:
        raise TypeError(f"logits must be float16, bfloat16, float32 or float64, got {logits.dtype}")
    if labels.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"labels must be int64 or int32, got {labels.dtype}")
    if logits.dim() != 2 or logits.shape[1] < 1:
        raise ValueError(f"logits must have shape [B, C] with C >= 1, got {tuple(logits.shape)}")
    if labels.shape != logits.shape[:1]:
        raise ValueError(f"labels must have shape [{logits.shape[0]}], got {tuple(labels.shape)}")
    if margin is not None:
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0.0 <= margin <= 1.0:
            raise ValueError(f"margin must be None or a number in [0, 1], got {margin!r}")
        margin = float(margin)
    return torch.ops.dsampling.argmax_mismatch.default(logits, labels, margin)
