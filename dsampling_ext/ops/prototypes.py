"""IDS prototype selection (seed 003): the fused class-mean and centroid-distance op, its wrapper,
and the per-class ordering by distance built on it."""

from __future__ import annotations

import torch
from torch import Tensor

from ._common import _check_device, _check_rows_and_labels, _check_tensor

#: Distance orders of class_order: nearest first, or farthest first.
ORDERS = ("easy", "hard")


def centroid_distances(embeddings: Tensor, labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor, Tensor]:
    """Class means of embeddings and each row's squared Euclidean distance to its class mean.

    One fused op, two passes over the embeddings (IDS, seed 003, Alg. 2 lines 11-15: K-Means with
    one cluster per class is the class mean): a stable sort of the rows by label, then per class
    the sum of its rows in chunks of 256 rows, the chunks added in order, divided by the count;
    then for each row sum_j (x_j - c_j)^2 over 32 lanes (lane t adds the dimensions t, t + 32,
    ...) and a binary tree over the lanes. Every sum runs in this one order on both devices, so
    CPU and CUDA results agree to the bit; float16/bfloat16/float32 are accumulated in float32,
    float64 in float64, each operation rounded once (no fused multiply-add).

    Args:
        embeddings (Tensor[N, D]): float16, bfloat16, float32 or float64, D >= 1; finite.
        labels (Tensor[N]): int64 or int32 class of each row, in [0, num_classes).
        num_classes: K >= 1.

    Returns:
        (centroids, sq_distances, counts): Tensor[K, D] and Tensor[N] in float32 (float64 for
        float64 embeddings); Tensor[K] int64 rows per class. An empty class's centroid is 0
        (its count is 0).

    Raises:
        RuntimeError: naming ``labels`` for a label out of range, or ``embeddings`` for a NaN/Inf
            value, on the CPU. On CUDA, where raising would need a host sync, a bad label trips a
            device assertion and a non-finite embedding gives NaN/Inf centroids and distances.

    Example:
        >>> embeddings = torch.tensor([[0.0, 0.0], [2.0, 0.0], [5.0, 5.0], [5.0, 7.0]])
        >>> centroids, d2, counts = centroid_distances(embeddings, torch.tensor([0, 0, 1, 1]), 2)
        >>> centroids, d2, counts
        (tensor([[1., 0.],
                [5., 6.]]), tensor([1., 1., 1., 1.]), tensor([2, 2]))
    """
    _check_rows_and_labels("embeddings", embeddings, labels, "[N, D] with D >= 1")
    _check_device("centroid_distances", "embeddings", embeddings.device)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or not 1 <= num_classes <= 2**31 - 1:
        raise ValueError(f"num_classes must be an int in [1, 2**31 - 1], got {num_classes!r}")
    return torch.ops.dsampling.centroid_distances.default(embeddings, labels, num_classes)


def class_order(labels: Tensor, sq_distances: Tensor, order: str = "easy") -> Tensor:
    """Row indices sorted by (class, distance), ties by row index: IDS's per-class ranking.

    ``"easy"`` puts each class's rows nearest its centroid first, ``"hard"`` farthest first; in
    both, equal distances keep increasing row index. float32 distances (>= 0, so their bits order
    like their values) are sorted once on an int64 key (class << 31 | bits, the bits inverted for
    "hard"); float64 ones by two stable sorts (distance, then class).

    Args:
        labels (Tensor[N]): int64/int32 classes in [0, 2**31).
        sq_distances (Tensor[N]): float32/float64 non-negative, non-NaN distances.
        order: "easy" or "hard".

    Returns:
        Tensor[N] int64: the rows of class 0 in order, then class 1, ...
    """
    _check_tensor("labels", labels)
    _check_tensor("sq_distances", sq_distances)
    if order not in ORDERS:
        raise ValueError(f"order must be one of {list(ORDERS)}, got {order!r}")
    if labels.dim() != 1 or sq_distances.shape != labels.shape:
        raise ValueError(f"labels and sq_distances must be 1-D tensors of one shape, got {tuple(labels.shape)} and "
                         f"{tuple(sq_distances.shape)}")
    if sq_distances.dtype == torch.float32:
        bits = sq_distances.view(torch.int32).to(torch.int64)
        if order == "hard":
            bits = (2**31 - 1) - bits
        return torch.sort(labels.to(torch.int64) * 2**31 + bits, stable=True).indices
    if sq_distances.dtype != torch.float64:
        raise TypeError(f"sq_distances must be float32 or float64, got {sq_distances.dtype}")
    by_distance = torch.sort(sq_distances, stable=True, descending=order == "hard").indices
    return by_distance[torch.sort(labels[by_distance], stable=True).indices]
