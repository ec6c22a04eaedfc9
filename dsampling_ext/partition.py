"""Dynamic training by random partition resampling (SPEC section 1; seeds 000/001).

Frausto-Perez, Rojas-Dominguez et al., "Entrenamiento dinamico de redes convolucionales
profundas para clasificacion de imagenes": train each epoch on a subset A of fixed size; after
each epoch, depending on how validation accuracy moved, replace a random fraction of A with
random samples of the complement B (Type-I, Eq. 1), or resample from the best set A* with a
geometrically decaying fraction (Type-II, Eqs. 2-3).
"""

from __future__ import annotations

import math
import numbers
from typing import Optional, Sized, Union

import torch
from torch import Tensor

from . import ops
from ._validate import as_int, require_number, require_seed
from .sampling import ResumableSampler, resolve_replicas, shard, sharded_length

__all__ = ["DynamicPartitionSampler"]

RULES = ("variant", "base")
BEST = ("last_improving", "global")


def resolve_size(size: Union[int, float], num_samples: int, name: str = "size") -> int:
    """A count in [1, N], or a fraction in (0, 1] of N rounded to the nearest count (at least 1)."""
    if isinstance(size, bool) or not isinstance(size, numbers.Real):
        raise TypeError(f"{name} must be an int count or a float fraction, got {type(size).__name__}")
    if not isinstance(size, numbers.Integral):
        size = float(size)
        if not 0.0 < size <= 1.0:
            raise ValueError(f"{name} as a fraction must be in (0, 1], got {size}")
        return max(1, round(size * num_samples))
    size = as_int(name, size)
    if not 1 <= size <= num_samples:
        raise ValueError(f"{name} as a count must be in [1, {num_samples}], got {size}")
    return size


def _num_samples(data_source) -> int:
    n = as_int("data_source", data_source) if isinstance(data_source, numbers.Integral) else None
    if n is None:
        if not isinstance(data_source, Sized):
            raise TypeError(f"data_source must be a dataset size (int) or a Sized dataset, got {type(data_source).__name__}")
        n = len(data_source)
    if n < 1:
        raise ValueError(f"the dataset must hold at least 1 sample, got {n}")
    return n


class DynamicPartitionSampler(ResumableSampler):
    """Sampler over the working subset A of dynamic training, resampled from validation accuracy.

    Each epoch yields the indices of A (shuffled when ``shuffle``). Call :meth:`update` with the
    epoch's validation accuracy (a fraction in [0, 1]) at the epoch's end:

    * ``rule="variant"`` (default, Fig. 4-b): accuracy not above the previous one -> Type-I
      (replace round(size * beta0) random members of the current A by random members of B);
      improved by at most ``threshold`` -> Type-II (the same from the best set A*, B its
      complement, with beta = decay**n * beta0 at epoch n); improved by more -> keep A.
    * ``rule="base"`` (Fig. 4-a): improvement below ``threshold`` -> Type-I, else keep.

    The previous accuracy starts at 0. ``best="last_improving"`` (default, the paper's "the best
    set coincides with the training set of the previous iteration") makes A* the set trained
    when accuracy last improved; ``"global"`` the set with the highest accuracy so far.

    Resampling is the ``partition_resample`` op (O(k) swaps on a permutation). Every rank that
    sees the same accuracies holds the same A; with several ranks each yields its shard.

    Args:
        data_source: dataset (anything with len) or its size N.
        size: the size of A: a count (the paper's alpha, e.g. 25000 of 50000) or a fraction of N in (0, 1].
        replace_fraction: beta0, the share of A replaced (0.7, the paper's best).
        threshold: delta, in accuracy units (0.01 = 1 percentage point).
        decay: gamma of Type-II's beta = gamma**n * beta0 (0.97).
        rule: "variant" or "base".  best: "last_improving" or "global".
        shuffle: shuffle A each epoch.  seed: seed of every random draw.
        num_replicas, rank: data-parallel sharding (default: from torch.distributed, else 1, 0).
    """

    def __init__(
        self,
        data_source: Union[int, Sized],
        size: Union[int, float],
        replace_fraction: float = 0.7,
        threshold: float = 0.01,
        decay: float = 0.97,
        rule: str = "variant",
        best: str = "last_improving",
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: Optional[int] = None,
        rank: Optional[int] = None,
    ):
        self.num_samples = _num_samples(data_source)
        self.size = resolve_size(size, self.num_samples)
        self.replace_fraction = require_number("replace_fraction", replace_fraction, 0.0, 1.0)
        self.threshold = require_number("threshold", threshold, 0.0, 1.0)
        self.decay = require_number("decay", decay, 0.0, 1.0)
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
        if best not in BEST:
            raise ValueError(f"best must be one of {BEST}, got {best!r}")
        seed = require_seed(seed)
        if self.size == self.num_samples:
            raise ValueError(f"size must be below the dataset size ({self.num_samples}): a working subset of every "
                             "sample leaves nothing to resample (use a plain sampler)")
        self.rule, self.best, self.shuffle, self.seed = rule, best, shuffle, seed
        self.num_replicas, self.rank = resolve_replicas(num_replicas, rank)
        # Draw offsets: 0 for the initial A, 2e + 2 for epoch e's shuffle, 2n + 1 for update n.
        self.perm = ops.random_subset_(torch.arange(self.num_samples, dtype=torch.int64), self.size, seed, 0)
        self.best_perm: Optional[Tensor] = None
        self.prev_accuracy = 0.0
        self.best_accuracy = -math.inf
        self.updates = 0
        self.epoch = 0
        self.beta = self.replace_fraction
        self.last_action: Optional[str] = None
        self.history: list[dict] = []

    def __repr__(self) -> str:
        return (f"DynamicPartitionSampler(num_samples={self.num_samples}, size={self.size}, "
                f"replace_fraction={self.replace_fraction}, threshold={self.threshold}, decay={self.decay}, "
                f"rule={self.rule!r}, best={self.best!r}, shuffle={self.shuffle}, seed={self.seed})")

    @property
    def indices(self) -> Tensor:
        """The current A (a copy, in partition order)."""
        return self.perm[: self.size].clone()

    def __len__(self) -> int:
        return sharded_length(self.size, self.num_replicas)

    def _epoch_order(self) -> Tensor:
        subset = self.perm[: self.size].clone()
        if self.shuffle:
            ops.random_subset_(subset, self.size, self.seed, 2 * self.epoch + 2)
        return shard(subset, self.num_replicas, self.rank)

    def update(self, val_accuracy: float) -> str:
        """Apply the end-of-epoch rule for this validation accuracy; returns the action taken:
        "type1", "type2" or "keep" (also in ``last_action``; ``history`` logs every update)."""
        acc, prev = require_number("val_accuracy", val_accuracy, 0.0, 1.0, what="a fraction"), self.prev_accuracy
        self.updates += 1
        n = self.updates
        if self.best == "last_improving" and acc > prev:
            self.best_perm = self.perm.clone()
        elif self.best == "global" and acc > self.best_accuracy:
            self.best_accuracy = acc
            self.best_perm = self.perm.clone()
        if self.rule == "variant":
            action = "type1" if acc <= prev else ("type2" if acc - prev <= self.threshold else "keep")
        else:
            action = "type1" if acc - prev < self.threshold else "keep"
        beta, k = 0.0, 0
        if action != "keep":
            beta = self.replace_fraction if action == "type1" else self.decay**n * self.replace_fraction
            k = min(round(self.size * beta), self.size, self.num_samples - self.size)
            if action == "type2" and self.best_perm is not None:
                self.perm = self.best_perm.clone()  # A* with B its complement
            ops.partition_resample(self.perm, self.size, k, self.seed, 2 * n + 1)
            self.beta = beta
        self.prev_accuracy = acc
        self.last_action = action
        self.history.append(dict(epoch=n, accuracy=acc, action=action, beta=beta, k=k))
        return action

    def _state(self) -> dict:
        return dict(perm=self.perm.clone(), best_perm=None if self.best_perm is None else self.best_perm.clone(),
                    prev_accuracy=self.prev_accuracy, best_accuracy=self.best_accuracy, updates=self.updates,
                    beta=self.beta, last_action=self.last_action, history=list(self.history))

    def _load_state(self, state: dict) -> None:
        self.perm = state["perm"].clone()
        self.best_perm = None if state["best_perm"] is None else state["best_perm"].clone()
        for key in ("prev_accuracy", "best_accuracy", "updates", "beta", "last_action"):
            setattr(self, key, state[key])
        self.history = list(state["history"])
