"""Fake (meta) kernels of every dsampling op, for torch.compile and opcheck.

One module, as torchvision keeps them: csrc/ops.cpp's ``set_python_module`` points the
dispatcher here. Each repeats its op's checks in csrc/common/checks.h with the same wording,
and returns empty tensors of the right shapes (an unbacked size where the output's size
depends on the data).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from ._common import LOSS_DTYPES
from .histogram import MAX_HISTORY


@torch.library.register_fake("dsampling::philox_fill_uniform_")
def _philox_fill_uniform_fake(out: Tensor, seed: int, offset: int) -> None:
    torch._check(out.dtype == torch.float32, lambda: f"philox_fill_uniform_: out must be float32, got {out.dtype}")
    torch._check(
        out.dim() == 1 and out.is_contiguous(),
        lambda: f"philox_fill_uniform_: out must be a contiguous 1-D tensor, got shape {tuple(out.shape)}",
    )



@torch.library.register_fake("dsampling::_philox4x32_10")
def _philox4x32_10_fake(counter: Tensor, seed: int) -> Tensor:
    torch._check(counter.dtype == torch.int64, lambda: f"_philox4x32_10: counter must be int64, got {counter.dtype}")
    torch._check(
        counter.dim() == 2 and counter.shape[1] == 4,
        lambda: f"_philox4x32_10: counter must have shape [N, 4], got {tuple(counter.shape)}",
    )
    return torch.empty_like(counter, memory_format=torch.contiguous_format)



@torch.library.register_fake("dsampling::loss_histogram")
def _loss_histogram_fake(values: Tensor, bins: int, range: Optional[list[float]] = None) -> tuple[Tensor, Tensor]:
    torch._check(
        values.dtype in LOSS_DTYPES,
        lambda: f"loss_histogram: values must be float16, bfloat16, float32 or float64, got {values.dtype}",
    )
    torch._check(values.numel() > 0, lambda: f"loss_histogram: values must be non-empty, got shape {tuple(values.shape)}")
    torch._check(1 <= bins <= 2**31 - 1, lambda: f"loss_histogram: bins must be in [1, 2**31 - 1], got {bins}")
    if range is not None:
        torch._check(len(range) == 2, lambda: f"loss_histogram: range must be (min, max), got {len(range)} values")
        torch._check(
            math.isfinite(range[0]) and math.isfinite(range[1]),
            lambda: f"loss_histogram: range must be finite, got ({range[0]}, {range[1]})",
        )
        torch._check(range[0] <= range[1], lambda: f"loss_histogram: range must have min <= max, got ({range[0]}, {range[1]})")
    return values.new_empty(bins, dtype=torch.int64), values.new_empty(bins + 1)



@torch.library.register_fake("dsampling::histogram_select")
def _histogram_select_fake(history, state, losses, rule, bin_rule, bins, threshold, clip_sigma, clip_mode,
                           keep_fraction, keep_mode, beta, skip_nonfinite, seed, offset, keys=None):
    op = "histogram_select: "
    torch._check(history.dtype in (torch.float32, torch.float64),
                 lambda: f"{op}history must be float32 or float64, got {history.dtype}")
    torch._check(history.dim() == 1 and 1 <= history.numel() <= MAX_HISTORY,
                 lambda: f"{op}history must be a contiguous 1-D tensor of 1 to 65536 values, got shape {tuple(history.shape)}")
    torch._check(state.dtype == torch.int64 and state.shape == (2,),
                 lambda: f"{op}state must be a contiguous int64 tensor of shape [2] (length, write position)")
    torch._check(losses.dtype == history.dtype, lambda: f"{op}losses must have the dtype of history")
    torch._check(losses.dim() == 1 and losses.numel() >= 1, lambda: f"{op}losses must be a non-empty 1-D tensor")
    if keys is not None:
        torch._check(keys.dtype == torch.int64 and keys.shape == losses.shape,
                     lambda: f"{op}keys must be an int64 tensor of shape [{losses.numel()}] (one per loss)")
    torch._check(0 <= keep_fraction <= 1, lambda: f"{op}keep_fraction must be in [0, 1], got {keep_fraction}")
    return losses.new_empty(losses.shape, dtype=torch.bool), losses.new_empty(losses.shape, dtype=torch.float64)



def _rows_and_labels_fake(op: str, name: str, rows: Tensor, labels: Tensor, shape: str) -> None:
    """ops._common._check_rows_and_labels for the fakes."""
    torch._check(rows.dtype in LOSS_DTYPES,
                 lambda: f"{op}{name} must be float16, bfloat16, float32 or float64, got {rows.dtype}")
    torch._check(rows.dim() == 2 and rows.shape[1] >= 1, lambda: f"{op}{name} must have shape {shape}, got {tuple(rows.shape)}")
    torch._check(labels.dtype in (torch.int64, torch.int32), lambda: f"{op}labels must be int64 or int32, got {labels.dtype}")
    torch._check(labels.dim() == 1 and labels.shape[0] == rows.shape[0],
                 lambda: f"{op}labels must have shape [{rows.shape[0]}], got {tuple(labels.shape)}")


@torch.library.register_fake("dsampling::argmax_mismatch")
def _argmax_mismatch_fake(logits: Tensor, labels: Tensor, margin: Optional[float] = None):
    _rows_and_labels_fake("argmax_mismatch: ", "logits", logits, labels, "[B, C] with C >= 1")
    rows = logits.shape[0]
    return (logits.new_empty(rows, dtype=torch.bool), logits.new_empty(rows, dtype=torch.int64),
            logits.new_empty((), dtype=torch.int64))



@torch.library.register_fake("dsampling::partition_resample")
def _partition_resample_fake(perm: Tensor, size: int, k: int, seed: int, offset: int) -> None:
    torch._check(perm.dtype == torch.int64 and perm.dim() == 1,
                 lambda: f"partition_resample: perm must be a contiguous 1-D int64 tensor, got {perm.dtype}")



@torch.library.register_fake("dsampling::random_subset_")
def _random_subset_fake(perm: Tensor, size: int, seed: int, offset: int) -> None:
    torch._check(perm.dtype == torch.int64 and perm.dim() == 1,
                 lambda: f"random_subset_: perm must be a contiguous 1-D int64 tensor, got {perm.dtype}")



def _table_tensors_fake(op: str, scores: Tensor, seen_epoch: Tensor, correctness: bool) -> None:
    if correctness:
        torch._check(scores.dtype == torch.int8, lambda: f"{op}scores must be int8 correctness (1 right, 0 wrong, "
                     f"-1 unknown) for the mismatch rule, got {scores.dtype}")
    else:
        torch._check(scores.dtype in (torch.float32, torch.float64),
                     lambda: f"{op}scores must be float32 or float64, got {scores.dtype}")
    torch._check(scores.dim() == 1, lambda: f"{op}scores must be a contiguous 1-D tensor, got shape {tuple(scores.shape)}")
    torch._check(seen_epoch.dtype == torch.int32 and seen_epoch.shape == scores.shape,
                 lambda: f"{op}seen_epoch must be a contiguous int32 tensor of shape [{scores.numel()}], got "
                         f"{seen_epoch.dtype} {tuple(seen_epoch.shape)}")



@torch.library.register_fake("dsampling::table_select")
def _table_select_fake(scores, seen_epoch, epoch, rule, prune, staleness, bin_rule, bins, threshold, beta, reweight,
                       seed, offset):
    op = "table_select: "
    torch._check(0 <= rule <= 3, lambda: f"{op}rule must be 0 (mean), 1 (pmf), 2 (percentile) or 3 (mismatch), got {rule}")
    _table_tensors_fake(op, scores, seen_epoch, rule == 3)
    torch._check(0 <= prune <= 1, lambda: f"{op}prune must be in [0, 1], got {prune}")
    torch._check(staleness >= 1, lambda: f"{op}staleness must be in [1, 2**31 - 1], got {staleness}")
    torch._check(0 <= threshold < 1, lambda: f"{op}threshold must be in [0, 1) (a PMF threshold of 1 or more selects "
                                             f"nothing), got {threshold}")
    torch._check(not (reweight and rule == 2), lambda: f"{op}reweight must be false for rule 2 (percentile)")
    kept = torch.library.get_ctx().new_dynamic_size()
    return scores.new_empty(kept, dtype=torch.int64), scores.new_empty(kept, dtype=torch.float32)



@torch.library.register_fake("dsampling::table_record_")
def _table_record_fake(scores, correct, seen_epoch, indices, losses, epoch, logits=None, targets=None) -> None:
    op = "table_record_: "
    _table_tensors_fake(op, scores, seen_epoch, False)
    torch._check(correct.dtype == torch.int8 and correct.shape == scores.shape,
                 lambda: f"{op}correct must be a contiguous int8 tensor of shape [{scores.numel()}]")
    torch._check(indices.dtype in (torch.int64, torch.int32), lambda: f"{op}indices must be int64 or int32, got {indices.dtype}")
    torch._check(losses.dim() == 1 and losses.shape == indices.shape,
                 lambda: f"{op}losses must have shape [{indices.numel()}] (one per index; reduction='none'), got "
                         f"{tuple(losses.shape)}")
    torch._check((logits is None) == (targets is None), lambda: f"{op}logits and targets must be given together")


@torch.library.register_fake("dsampling::gradnorm_scores")
def _gradnorm_scores_fake(logits: Tensor, labels: Tensor, groups: Optional[Tensor], num_groups: int):
    op = "gradnorm_scores: "
    _rows_and_labels_fake(op, "logits", logits, labels, "[B, C] with C >= 1")
    torch._check(1 <= num_groups <= 2**31 - 1, lambda: f"{op}num_groups must be in [1, 2**31 - 1], got {num_groups}")
    if groups is not None:
        torch._check(groups.dtype in (torch.int64, torch.int32),
                     lambda: f"{op}groups must be int64 or int32, got {groups.dtype}")
        torch._check(groups.dim() == 1 and groups.shape[0] == logits.shape[0],
                     lambda: f"{op}groups must have shape [{logits.shape[0]}], got {tuple(groups.shape)}")
    acc = torch.float64 if logits.dtype == torch.float64 else torch.float32
    return (logits.new_empty(logits.shape[0], dtype=acc), logits.new_empty(num_groups, dtype=acc),
            logits.new_empty(num_groups, dtype=torch.int64))


@torch.library.register_fake("dsampling::weighted_sample")
def _weighted_sample_fake(weights: Tensor, num_samples, seed: int, offset: int):
    op = "weighted_sample: "
    torch._check(weights.dtype in LOSS_DTYPES,
                 lambda: f"{op}weights must be float16, bfloat16, float32 or float64, got {weights.dtype}")
    torch._check(weights.dim() == 1 and weights.numel() >= 1,
                 lambda: f"{op}weights must be a non-empty 1-D tensor, got shape {tuple(weights.shape)}")
    torch._check(num_samples >= 0, lambda: f"{op}num_samples must be >= 0, got {num_samples}")
    return weights.new_empty(num_samples, dtype=torch.int64), weights.new_empty(num_samples, dtype=torch.float64)


@torch.library.register_fake("dsampling::centroid_distances")
def _centroid_distances_fake(embeddings: Tensor, labels: Tensor, num_classes: int):
    op = "centroid_distances: "
    _rows_and_labels_fake(op, "embeddings", embeddings, labels, "[N, D] with D >= 1")
    torch._check(1 <= num_classes <= 2**31 - 1, lambda: f"{op}num_classes must be in [1, 2**31 - 1], got {num_classes}")
    acc = torch.float64 if embeddings.dtype == torch.float64 else torch.float32
    return (embeddings.new_empty((num_classes, embeddings.shape[1]), dtype=acc),
            embeddings.new_empty(embeddings.shape[:1], dtype=acc),
            embeddings.new_empty((num_classes,), dtype=torch.int64))
