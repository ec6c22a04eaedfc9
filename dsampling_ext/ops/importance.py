"""RAS importance sampling (SPEC section 4): gradient-norm scores and weighted sampling with
replacement past torch.multinomial's 2^24 categories. Wrappers; the fakes are in ``_fakes``."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ._common import LOSS_DTYPES, _as_int64, _check_device, _check_rows_and_labels, _check_tensor


def gradnorm_scores(logits: Tensor, labels: Tensor, groups: Optional[Tensor] = None,
                    num_groups: Optional[int] = None) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample gradient-norm scores from the logits, fused with their per-group sums.

    ``scores[i] = ||softmax(logits[i]) - onehot(labels[i])||_2``, the norm of the cross-entropy
    gradient with respect to the logits: Katharopoulos & Fleuret (2018)'s upper bound of the
    per-sample gradient norm, up to a factor that is the same for every sample. Computed from a
    stable log-sum-exp as sqrt(S^2 + Q) / Z (Z = sum_j e_j, S = sum_{j != y} e_j, Q = sum_{j != y}
    e_j^2, e_j = exp(z_j - max z)), so that a well-learned sample keeps an accurate small score
    where ``1 - p_y`` would cancel to 0. Accumulated in float32 (float64 for float64 logits), the
    sums in one fixed lane order on both devices; with float16, bfloat16 and float32 logits exp is
    a polynomial that both devices round alike, so CPU and CUDA scores are bit-identical (float64
    uses each device's exp and may differ in the last bit). A row holding NaN or +inf scores NaN,
    as the composite does.

    The group sums add ``scores**2`` in one fixed order on both devices (no atomics), so they too
    are deterministic and bit-identical: each group's rows in increasing row order, in chunks of
    256 rows added in order, then the chunk sums in order (the GPU adds the chunks in parallel).

    Args:
        logits (Tensor[B, C]): float16, bfloat16, float32 or float64.
        labels (Tensor[B]): int64 or int32 class labels in [0, C).
        groups (Tensor[B], optional): int64 or int32 group ids in [0, num_groups); ``None``: the
            labels are the groups (they must then be below ``num_groups`` too).
        num_groups: G >= 1 (default: C when ``groups`` is None, else required).

    Returns:
        (scores, group_sum_sq, group_count): Tensor[B] and Tensor[G] float32 (float64 for float64
        logits), Tensor[G] int64. Labels and groups out of range raise on the CPU and trip a
        device assertion on CUDA. Not differentiable (a score, not a loss).
    """
    _check_rows_and_labels("logits", logits, labels, "[B, C] with C >= 1")
    _check_device("gradnorm_scores", "logits", logits.device)
    if groups is not None:
        _check_tensor("groups", groups)
        if groups.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"groups must be int64 or int32, got {groups.dtype}")
        if groups.shape != logits.shape[:1]:
            raise ValueError(f"groups must have shape [{logits.shape[0]}], got {tuple(groups.shape)}")
        if num_groups is None:
            raise ValueError("num_groups must be given with groups")
    elif num_groups is None:
        num_groups = logits.shape[1]
    if isinstance(num_groups, bool) or not isinstance(num_groups, int) or not 1 <= num_groups <= 2**31 - 1:
        raise ValueError(f"num_groups must be an int in [1, 2**31 - 1], got {num_groups!r}")
    return torch.ops.dsampling.gradnorm_scores.default(logits, labels, groups, num_groups)


def weighted_sample(weights: Tensor, num_samples: int, seed: int = 0, offset: int = 0) -> tuple[Tensor, Tensor]:
    """Draw ``num_samples`` indices with replacement, index i with probability w_i / sum(w).

    Works for any N up to 2**40 (``torch.multinomial`` refuses more than 2**24 categories), and
    the same (seed, offset) gives the same draws on the CPU and CUDA. The weights are turned into
    64-bit fixed-point integers q_i = floor(w_i * 2**s), with s as large as the total allows
    (T = sum q_i < 2**63); draw j is the exact integer u_j = floor(bits_j * T / 2**64), bits_j
    the 64 Philox bits of counter (j, offset) under key ``seed``, and its index is the i with
    C_(i-1) <= u_j < C_i, C the prefix sums of q. Integer sums are exact in any order, so the
    prefix sums need no fixed summation order to agree across devices, and a weight's share is
    resolved to about sum(w) * 2**-61 (a float64 running sum resolves sum(w) * 2**-53; float32,
    which multinomial uses, 2**-24): tiny weights among 10**8 keep their share.

    Prefix sum + binary search or an alias table? Both are O(N) to build per distribution;
    an alias table then draws in O(1), a search in O(log N). Vose's alias construction is
    sequential (its parallel forms are intricate) and not exact in floating point; the prefix
    sums here are exact, parallel on both devices, and with a guide table over the tile prefixes
    (Chen & Asau's cutpoints) a draw also costs O(1) expected: the bucket of u's top bits, a binary
    search over one or two tile prefixes, a scan of at most 32 weights. Measured at N = 10**7,
    10**6 draws on 2 CPU threads: see benchmarks/test_bench_importance.py and README.

    Args:
        weights (Tensor[N]): float16, bfloat16, float32 or float64; finite, >= 0, not all zero
            (checked on the CPU, the error naming the first bad index; a device assertion on CUDA,
            which has no host sync).
        num_samples: number of draws, >= 0.
        seed, offset: the Philox key and counter offset (64-bit ints).

    Returns:
        (indices, probs): Tensor[num_samples] int64 and Tensor[num_samples] float64, the exact
        probability q_i / T each index was drawn with (w_i / sum(w) to within about
        sum(w) * 2**-61 / w_i relative). Lemire's multiply-shift maps the 64 bits onto [0, T), so
        the true probability of an index differs from q_i / T by at most 2**-64. Not
        differentiable (the draws are discrete; divide by ``probs`` as a constant).
    """
    _check_tensor("weights", weights)
    _check_device("weighted_sample", "weights", weights.device)
    if weights.dtype not in LOSS_DTYPES:
        raise TypeError(f"weights must be float16, bfloat16, float32 or float64, got {weights.dtype}")
    if weights.dim() != 1 or weights.numel() < 1:
        raise ValueError(f"weights must be a non-empty 1-D tensor, got shape {tuple(weights.shape)}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 0:
        raise ValueError(f"num_samples must be an int >= 0, got {num_samples!r}")
    return torch.ops.dsampling.weighted_sample.default(weights, num_samples, _as_int64(seed, "seed"),
                                                       _as_int64(offset, "offset"))
