"""The score table filled from the training pass and the epoch-level selection from it
(SPEC section 8): wrappers and fakes."""

from __future__ import annotations

import math
from typing import Optional, Union

import torch
from torch import Tensor

from .._validate import require_int, require_number, require_threshold
from ._common import _as_int64, _bin_rule, _check_device, _check_tensor, _choice


TABLE_RULES = {"mean": 0, "pmf": 1, "percentile": 2, "mismatch": 3}
#: Rules whose kept candidates get weight 1/q by default (their q is 1 - prune: bounded weights).
REWEIGHT_DEFAULT = {"mean": True, "pmf": True, "percentile": False, "mismatch": False}


def table_select(
    scores: Tensor,
    seen_epoch: Tensor,
    epoch: int,
    rule: str = "mean",
    *,
    prune: float = 0.5,
    staleness: int = 3,
    bins: Union[int, str] = "sturges",
    threshold: float = 0.1,
    beta: float = 2.0,
    reweight: Optional[bool] = None,
    seed: int = 0,
    offset: int = 0,
) -> tuple[Tensor, Tensor]:
    """One epoch's training set from a per-sample score table, in one call (SPEC section 8).

    Every index i is either forced (never scored: ``seen_epoch[i] < 0``; not trained for more
    than ``staleness`` epochs: ``epoch - seen_epoch[i] > staleness``; for "mismatch", of unknown
    correctness), and then kept with weight 1, or judged by the rule over the scored entries:

    * ``"mean"`` (InfoBatch, Qin et al. 2024): a candidate iff its score is below the mean of the
      scored entries (summed in a fixed order, so CPU and CUDA agree to the bit);
    * ``"pmf"`` (ADONIS's rule): the scored entries' numpy.histogram (float64, ``bins`` rule on
      their number); a candidate iff its bin holds more than ``threshold`` of them;
    * ``"percentile"`` (Selective-Backprop): every scored index is a candidate, kept with
      probability q = percentile**beta, percentile = (#(< s) + #(<= s) + [#(< s) < #(<= s)]) / 2n;
    * ``"mismatch"`` (the misclassified filter): ``scores`` is int8 correctness (1 right,
      0 wrong, -1 unknown); a right one is a candidate.

    A candidate is kept with probability q = 1 - ``prune`` (percentile: its own q) when
    u_i < q, u_i = ``philox_uniform(N, seed, offset)[i]``; with ``reweight`` a kept candidate's
    weight is 1/q, so that the expected weighted loss over the epoch is the full-data one.

    Args:
        scores (Tensor[N]): float32/float64 per-sample scores (int8 correctness for "mismatch").
        seen_epoch (Tensor[N]): int32 epoch each score was recorded in, -1 for none.
        epoch: the epoch being selected (>= 0).
        rule: "mean", "pmf", "percentile" or "mismatch".
        prune: share of the candidates dropped, in [0, 1] (not used by "percentile"; 1 drops
            every candidate, which needs ``reweight=False``).
        staleness: epochs an index may go untrained before it is forced back, >= 1.
        bins, threshold: the "pmf" histogram's bin rule (or count) and PMF threshold in [0, 1).
        beta: the "percentile" exponent (> 0).
        reweight: weights 1/q for kept candidates (default: on for "mean" and "pmf", off for
            the others; "percentile" refuses it, its 1/q being unbounded).
        seed, offset: the Philox key and counter offset (use the epoch as offset).

    Returns:
        (indices, weights): Tensor[M] int64 kept indices in increasing order, Tensor[M] float32.
        On CUDA the size M is read back once (one host sync per call; "pmf" and "percentile"
        also read the number of scored entries).
    """
    _check_tensor("scores", scores)
    _check_tensor("seen_epoch", seen_epoch)
    _check_device("table_select", "scores", scores.device)
    rule_id = _choice("rule", rule, TABLE_RULES)
    epoch = require_int("epoch", epoch, 0)
    staleness = require_int("staleness", staleness, 1)
    prune = require_number("prune", prune, 0.0, 1.0)
    threshold = require_threshold(threshold)
    beta = require_number("beta", beta, 0.0)
    if not 0.0 < beta < math.inf:
        raise ValueError(f"beta must be a finite number > 0, got {beta!r}")
    if reweight is None:
        reweight = REWEIGHT_DEFAULT[rule]
    elif not isinstance(reweight, bool):
        raise TypeError(f"reweight must be a bool or None, got {type(reweight).__name__}")
    if reweight and prune == 1.0 and rule != "percentile":
        raise ValueError("reweight must be False with prune=1.0 (a kept candidate's weight would be 1/(1 - prune))")
    if reweight and rule == "percentile":
        raise ValueError("reweight must be False for rule='percentile': its keep probabilities reach 1/(2N)**beta, "
                         "so 1/q weights are unbounded")
    bin_rule, fixed = _bin_rule(bins, 65536)
    return torch.ops.dsampling.table_select.default(
        scores.contiguous(), seen_epoch.contiguous(), epoch, rule_id, float(prune), staleness, bin_rule, fixed, float(threshold), float(beta),
        reweight, _as_int64(seed, "seed"), _as_int64(offset, "offset"),
    )


def table_record_(
    scores: Tensor,
    correct: Tensor,
    seen_epoch: Tensor,
    indices: Tensor,
    losses: Tensor,
    epoch: int,
    logits: Optional[Tensor] = None,
    targets: Optional[Tensor] = None,
) -> None:
    """Write one step's per-sample losses into a score table, in place (no host sync).

    ``scores[indices] = losses``, ``seen_epoch[indices] = epoch`` and, given ``logits`` and
    ``targets``, ``correct[indices] = (argmax(logits) == targets)`` (torch.argmax's rule: first
    maximum, NaN wins). An index given twice keeps its last record on the CPU (one of them on
    CUDA).

    Args:
        scores (Tensor[N]): float32/float64 table of losses.
        correct (Tensor[N]): int8.
        seen_epoch (Tensor[N]): int32.
        indices (Tensor[B]): int64/int32 dataset indices in [0, N).
        losses (Tensor[B]): finite per-sample losses, any float dtype (stored in the dtype of
            ``scores``).
        epoch: the epoch being trained, >= 0.
        logits (Tensor[B, C], optional): the batch's logits, given with ``targets``.
        targets (Tensor[B], optional): int64/int32 in [0, C).

    Raises:
        RuntimeError: naming the argument for indices or targets out of range and non-finite
            losses (on the CPU; on CUDA a bad index or target trips a device assertion and a
            non-finite loss leaves its entry unchanged, since raising would need a host sync).
    """
    for name, value in (("scores", scores), ("correct", correct), ("seen_epoch", seen_epoch), ("indices", indices),
                        ("losses", losses)):
        _check_tensor(name, value)
    _check_device("table_record_", "scores", scores.device)
    epoch = require_int("epoch", epoch, 0)
    torch.ops.dsampling.table_record_.default(scores, correct, seen_epoch, indices, losses, epoch, logits, targets)
