"""RAS: minimum-variance regularized adaptive importance sampling (SPEC section 4).

Only the abstract of the seed paper (Soft Computing 27:13237, 2023) was available; the method is
reconstructed from Gopal ("Adaptive sampling for SGD by exploiting side information", ICML 2016)
and Katharopoulos & Fleuret ("Not all samples are created equal: deep learning with importance
sampling", ICML 2018):

- a sample's score is an upper bound of its gradient norm from the logits the training forward
  already computed, s_i = ||softmax(z_i) - onehot(y_i)||_2 (Katharopoulos & Fleuret), kept as an
  exponential moving average per sample;
- side information = a group per sample (the class labels, or any int ids); the group
  distribution minimising the variance of the gradient estimate (Gopal) is
  p_k ∝ N_k * sqrt(mean_(i in k) s_i^2), drawn uniformly (or ∝ s_i) within the group;
- regularisation: p <- (1 - smoothing) p + smoothing * uniform, so no probability is below
  smoothing / N and no weight 1 / (N p_i) above 1 / smoothing;
- each drawn sample carries w_i = 1 / (N p_i): E[mean of w_i * loss_i] = the full-data mean loss.

The per-sample scores live in the sampler, refreshed by :meth:`ImportanceSampler.update` from the
training forward's logits: the shared ScoreTable (SPEC section 8) keeps each sample's last loss
and correctness, not the gradient-norm score RAS weighs by.
"""

from __future__ import annotations

import math
import warnings
from typing import Iterator, Optional

import torch
from torch import Tensor
from torch.utils.data import Sampler

from . import distributed, ops
from ._validate import require_epoch, require_index_range, require_int, require_number, require_seed
from .sampling import resolve_replicas
from .scores import _index_tensor, _last_occurrence, _lookup_weights, _sharded_again

__all__ = ["ImportanceSampler"]

WITHIN = ("uniform", "score")


class ImportanceSampler(Sampler[list]):
    """RAS importance sampling as a batch sampler: batches of dataset indices drawn with replacement.

    Each epoch (:meth:`set_epoch`) fixes one distribution over the N samples from the scores
    gathered so far, and draws the epoch's ``len(self)`` batches from it in one
    :func:`~dsampling_ext.ops.weighted_sample` call (Philox keyed by ``seed`` and the epoch). With
    G the groups, N_k their sizes and m_k the group's mean squared score,

        P_k = N_k sqrt(m_k) / sum_j N_j sqrt(m_j)            (Gopal 2016's minimum variance)
        p_i = (1 - smoothing) * P_k * q(i | k) + smoothing / N

    with q(i | k) = 1 / N_k (``within="uniform"``) or s_i / sum_(j in k) s_j (``within="score"``).
    A group nothing was scored in counts with the mean over all groups; before any score, or if
    every score is 0, P_k = N_k / N (uniform sampling). Within a group, a never-scored sample
    counts with its group's mean score (or the global mean).

    :meth:`update` is called once per step with the batch's indices, logits and labels (the
    training forward's, no extra pass): one fused :func:`~dsampling_ext.ops.gradnorm_scores` call
    gives the scores and their per-group sums of squares and counts. The group statistics are
    exponential moving averages over the steps that saw the group (sum_sq_k <- d * sum_sq_k +
    batch sum, count_k <- d * count_k + batch count, m_k = sum_sq_k / count_k, d =
    ``score_decay``); each sample's score is one over the times it was trained (s_i <- d s_i +
    (1 - d) new; an index drawn twice in one batch counts once, with its last score). Updates
    change the next epoch's distribution; within an epoch the distribution is fixed, so every
    batch of the epoch is drawn from the p that :meth:`weights` divides by. Call
    :meth:`set_epoch` before each epoch, as with DistributedSampler (without it every iteration
    repeats epoch 0's draws). An iteration stopped early resumes at the next batch
    (``position``, kept by :meth:`state_dict`).

    Distributed data parallel: each step draws one global batch of ``batch_size * num_replicas``
    indices and rank r takes its r-th slice of ``batch_size`` (disjoint shards of one draw);
    :meth:`update` all-reduces the per-group sums and counts (2G numbers), so every rank holds
    the same group statistics and the same distribution. With ``within="score"`` the per-sample
    scores matter too: the batch's (index, score) pairs are gathered from every rank. A loader
    that shards the rank's batches again (plain ``accelerator.prepare``) is caught at the next
    :meth:`set_epoch`: a RuntimeError when ``update`` saw fewer than halfway between
    1/num_replicas and all of the batches of the epoch last yielded to its end
    (``dsampling_ext.integrations.accelerate.prepare`` shards them once).

    Args:
        num_samples: N, the dataset size.
        groups (Tensor[N]): group of each sample: the class labels or any int ids (remapped to
            0..G-1 in increasing order).
        batch_size: indices per batch (per rank).
        smoothing: share of the uniform distribution mixed in, in [0, 1]; 1 is uniform sampling
            with replacement. Every p_i >= smoothing / N, every weight <= 1 / smoothing.
        within: "uniform" or "score", the distribution inside a group.
        score_decay: moving-average decay of the scores and group statistics, in [0, 1).
        seed: seed of every draw.
        batches_per_epoch: default ceil(N / (batch_size * num_replicas)), one epoch's samples.
        num_replicas, rank: data-parallel sharding (default: from torch.distributed, else 1, 0).
        device: where the per-sample tables live (default CPU); logits on another device are
            moved there.

    Example (the sampler as the loader's ``batch_sampler``; every weight is 1 / (N p_i), at most
    1 / smoothing):

        >>> import torch, dsampling_ext
        >>> from torch.nn import functional as F
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> _ = torch.manual_seed(0)
        >>> train_labels = torch.randint(0, 4, (256,))
        >>> train_set = TensorDataset(torch.randn(256, 8), train_labels)
        >>> model, epochs = torch.nn.Linear(8, 4), 3
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> sampler = dsampling_ext.ImportanceSampler(len(train_set), train_labels, batch_size=32)
        >>> loader = DataLoader(dsampling_ext.IndexedDataset(train_set), batch_sampler=sampler)
        >>> for epoch in range(epochs):
        ...     sampler.set_epoch(epoch)
        ...     for x, y, idx in loader:
        ...         logits = model(x)
        ...         losses = F.cross_entropy(logits, y, reduction="none")
        ...         scores = sampler.update(idx, logits.detach(), y)  # ||softmax(z) - onehot(y)||
        ...         weights = sampler.weights(idx)
        ...         loss = dsampling_ext.weighted_mean(losses, weights)
        ...         optimizer.zero_grad(); loss.backward(); optimizer.step()
        >>> len(loader), bool((weights > 0).all() and (weights <= 1 / 0.1).all())
        (8, True)
    """

    def __init__(self, num_samples: int, groups: Tensor, batch_size: int, smoothing: float = 0.1,
                 within: str = "uniform", score_decay: float = 0.9, seed: int = 0, *,
                 batches_per_epoch: Optional[int] = None, num_replicas: Optional[int] = None,
                 rank: Optional[int] = None, device=None):
        self.num_samples = require_int("num_samples", num_samples, 1)
        if not isinstance(groups, Tensor):
            raise TypeError(f"groups must be a torch.Tensor of int group ids, got {type(groups).__name__}")
        if groups.dtype.is_floating_point or groups.dtype.is_complex or groups.dtype == torch.bool:
            raise TypeError(f"groups must hold integer ids, got {groups.dtype}")
        if groups.shape != (num_samples,):
            raise ValueError(f"groups must have shape [{num_samples}] (one id per sample), got {tuple(groups.shape)}")
        self.batch_size = require_int("batch_size", batch_size, 1)
        self.smoothing = require_number("smoothing", smoothing, 0.0, 1.0)
        if within not in WITHIN:
            raise ValueError(f"within must be one of {WITHIN}, got {within!r}")
        self.within = within
        self.score_decay = require_number("score_decay", score_decay, 0.0, 1.0, high_open=True)
        self.seed = require_seed(seed)
        self.num_replicas, self.rank = resolve_replicas(num_replicas, rank)
        per_epoch = math.ceil(num_samples / (batch_size * self.num_replicas))
        self.batches_per_epoch = per_epoch if batches_per_epoch is None else require_int(
            "batches_per_epoch", batches_per_epoch, 1)
        self.device = torch.device("cpu") if device is None else torch.device(device)
        ids, group_of = torch.unique(groups.cpu(), return_inverse=True)
        self.group_ids = ids  # the user's id of each group
        self.num_groups = ids.numel()
        self.group_of = group_of.to(self.device)  # [N] int64 in [0, G)
        self.group_size = torch.bincount(group_of, minlength=self.num_groups).double().to(self.device)
        acc = torch.float64
        self.scores = torch.zeros(num_samples, dtype=torch.float32, device=self.device)
        self.scored = torch.zeros(num_samples, dtype=torch.bool, device=self.device)
        self.group_sum_sq = torch.zeros(self.num_groups, dtype=acc, device=self.device)
        self.group_count = torch.zeros(self.num_groups, dtype=acc, device=self.device)
        self.epoch = 0
        self.position = 0  # batches yielded in this epoch (a resumed iteration starts here)
        self._epoch_named: Optional[int] = None  # the epoch set_epoch last named
        self._updates = 0  # update() calls since this epoch's iteration began
        # (epoch, batches this iteration handed out) once an epoch's last batch is out, until set_epoch
        self._handed_out: Optional[tuple[int, int]] = None
        self._dist: Optional[tuple[int, Tensor, Tensor]] = None  # (epoch, p [N] float64 CPU, draws)
        self._lookup: dict = {}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_samples={self.num_samples}, num_groups={self.num_groups}, "
                f"batch_size={self.batch_size}, smoothing={self.smoothing}, within={self.within!r}, "
                f"score_decay={self.score_decay}, seed={self.seed}, batches_per_epoch={self.batches_per_epoch}, "
                f"num_replicas={self.num_replicas})")

    # ------------------------------------------------------------------ the distribution

    def probabilities(self) -> Tensor:
        """p_i of every sample under the current statistics (float64, on the table's device)."""
        n, lam = self.num_samples, self.smoothing
        count, sum_sq = self.group_count, self.group_sum_sq
        seen = count > 0
        if bool(seen.any()):
            global_mean = sum_sq[seen].sum() / count[seen].sum()
            mean_sq = torch.where(seen, sum_sq / count.clamp_min(1e-300), global_mean)
            mass = self.group_size * mean_sq.clamp_min(0).sqrt()
        else:
            mass = torch.zeros_like(self.group_size)
        total = mass.sum()
        group_p = mass / total if float(total) > 0 else self.group_size / n
        if self.within == "uniform":
            within = 1.0 / self.group_size[self.group_of]
        else:
            within = self._within_score()
        p = (1.0 - lam) * group_p[self.group_of] * within
        return p + lam / n

    def _within_score(self) -> Tensor:
        """q(i | k) ∝ s_i, a never-scored sample counting with its group's mean score (or the
        global mean); a group whose scores sum to 0 is uniform."""
        s = self.scores.double()
        scored = self.scored
        g, G = self.group_of, self.num_groups
        n_scored = torch.bincount(g[scored], minlength=G).double()
        s_sum = torch.zeros(G, dtype=torch.float64, device=s.device).index_add_(0, g[scored], s[scored])
        any_scored = n_scored.sum()
        global_mean = s_sum.sum() / any_scored if float(any_scored) > 0 else torch.ones((), dtype=torch.float64)
        group_mean = torch.where(n_scored > 0, s_sum / n_scored.clamp_min(1), global_mean)
        filled = torch.where(scored, s, group_mean[g])
        group_total = torch.zeros(G, dtype=torch.float64, device=s.device).index_add_(0, g, filled)
        uniform = 1.0 / self.group_size[g]
        return torch.where(group_total[g] > 0, filled / group_total[g].clamp_min(1e-300), uniform)

    def set_epoch(self, epoch: int) -> None:
        """Fix epoch ``epoch``'s distribution and draw its batches (the same on every rank)."""
        self.epoch = self._epoch_named = require_epoch(epoch)
        handed_out, self._handed_out = self._handed_out, None
        if self._dist is None or self._dist[0] != self.epoch:
            self.position = 0
            self._check_previous_epoch_trained(handed_out)
        self._draw()

    def _check_previous_epoch_trained(self, handed_out: Optional[tuple[int, int]]) -> None:
        """Raise when the last epoch this sampler handed out to its last batch had fewer than
        halfway between 1/num_replicas and those batches passed to :meth:`update`: the loader
        shards this rank's batches again (accelerate's ``prepare`` keeps every num_replicas-th)."""
        if handed_out is None or self.num_replicas == 1:
            return
        epoch, batches = handed_out
        if _sharded_again(self._updates, batches, self.num_replicas):
            raise RuntimeError(
                f"{type(self).__name__}: epoch {epoch} yielded {batches} batches on this rank but update() saw only "
                f"{self._updates}: the loader shards this sampler's per-rank batches again (accelerate's prepare). "
                f"Use dsampling_ext.integrations.accelerate.prepare(accelerator, loader), or call update() for every "
                f"batch")

    def _draw(self) -> tuple[Tensor, Tensor]:
        if self._dist is not None and self._dist[0] == self.epoch:
            return self._dist[1], self._dist[2]
        p = self.probabilities().cpu()
        draws = self.batches_per_epoch * self.batch_size * self.num_replicas
        indices, _ = ops.weighted_sample(p, draws, self.seed, self.epoch)
        self._set_distribution(self.epoch, p, indices)
        return p, indices

    def _set_distribution(self, epoch: int, p: Tensor, indices: Tensor) -> None:
        self._dist = (epoch, p, indices)
        self._lookup = {torch.device("cpu"): (1.0 / (self.num_samples * p)).float()}

    @property
    def epoch_probabilities(self) -> Tensor:
        """The p_i this epoch's batches are drawn from (float64, CPU; a copy)."""
        return self._draw()[0].clone()

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[list]:
        _, indices = self._draw()
        step = self.batch_size * self.num_replicas
        start = self.position
        if self._handed_out is not None:
            # every batch of the epoch was handed out, and set_epoch was not called since (loaders
            # that know len() stop without exhausting the iterator, Lightning's among them: the
            # position then says the epoch is done, and it would yield nothing)
            warnings.warn(f"{type(self).__name__}: epoch {self.epoch} is iterated again after all its batches: call "
                          f"sampler.set_epoch(epoch) before each epoch (a framework that sets a DataLoader's "
                          f"sampler's epoch, as Lightning and accelerate do, does not reach a batch_sampler's)",
                          RuntimeWarning, stacklevel=2)
            start = 0
        self._updates = 0
        for b in range(start, self.batches_per_epoch):
            first = b * step + self.rank * self.batch_size
            self.position = b + 1
            if self.position == self.batches_per_epoch:
                self._handed_out = (self.epoch, self.batches_per_epoch - start)
            yield indices[first : first + self.batch_size].tolist()
        self.position = 0

    def weights(self, indices: Tensor) -> Tensor:
        """Loss weights w_i = 1 / (N p_i) of these indices under this epoch's distribution
        (float32, on their device), for :func:`~dsampling_ext.weighted_mean`."""
        indices = _index_tensor("indices", indices)
        self._draw()
        return _lookup_weights(self._lookup, indices, self.num_samples)

    # ------------------------------------------------------------------ scores

    def update(self, indices: Tensor, logits: Tensor, labels: Tensor) -> Tensor:
        """Refresh the scores of a trained batch from its logits (no grad needed) and labels.

        Returns the batch's raw scores ||softmax(z) - onehot(y)||_2 (float32; float64 for
        float64 logits). A collective under torch.distributed: call it on every rank each step.
        """
        indices = _index_tensor("indices", indices)
        if not isinstance(logits, Tensor) or logits.dim() != 2:
            raise ValueError(f"logits must be a [B, C] tensor, got "
                             f"{tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__}")
        if logits.shape[0] != indices.numel():
            raise ValueError(f"logits must have one row per index ({indices.numel()}), got {logits.shape[0]}")
        if not isinstance(labels, Tensor):
            raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
        if indices.device.type == "cpu":  # CUDA: no host sync
            require_index_range("indices", indices, self.num_samples)
        self._updates += 1
        logits = logits.detach()
        idx = indices.to(logits.device)
        groups = self.group_of.to(logits.device)[idx]
        raw, sums, counts = ops.gradnorm_scores(logits, labels.to(logits.device), groups, self.num_groups)
        stats = torch.cat([sums.double(), counts.double()]).to(self.device)
        if distributed.active():
            stats = distributed.all_sum(stats)
        sums, counts = stats[: self.num_groups], stats[self.num_groups :]
        present = counts > 0
        d = self.score_decay
        self.group_sum_sq = torch.where(present, d * self.group_sum_sq + sums, self.group_sum_sq)
        self.group_count = torch.where(present, d * self.group_count + counts, self.group_count)
        idx, new = idx.to(self.device), raw.detach().float().to(self.device)
        if distributed.active() and self.within == "score":
            idx, _ = distributed.all_gather_cat(idx)
            new, _ = distributed.all_gather_cat(new)
        if idx.numel():  # an index drawn twice in the batch: its last occurrence counts, once
            idx, last = _last_occurrence(idx)
            new = new[last]
            old = self.scores[idx]
            self.scores[idx] = torch.where(self.scored[idx], d * old + (1 - d) * new, new)
            self.scored[idx] = True
        return raw

    # ------------------------------------------------------------------ resume

    def state_dict(self) -> dict:
        """Configuration, epoch, position in it, the epoch's distribution and draws, and the scores."""
        dist_ = self._dist
        return dict(config=repr(self), epoch=self.epoch, position=self.position,
                    distribution=None if dist_ is None else (dist_[0], dist_[1].clone(), dist_[2].clone()),
                    scores=self.scores.clone(), scored=self.scored.clone(), group_sum_sq=self.group_sum_sq.clone(),
                    group_count=self.group_count.clone())

    def load_state_dict(self, state: dict) -> None:
        """Restore a saved state, before or after ``set_epoch``: a state of the epoch that
        set_epoch named (or of any epoch, when set_epoch was not called) resumes that epoch with
        its draws at its position; a state of an earlier epoch only restores the scores, and the
        named epoch is drawn from them (torchdata's ``StatefulDataLoader`` loads a state at the
        next ``iter()``, after the loop's set_epoch for the next epoch)."""
        if state["config"] != repr(self):
            raise ValueError(f"state was saved by {state['config']}, not by {self!r}")
        for name in ("scores", "scored", "group_sum_sq", "group_count"):
            setattr(self, name, state[name].clone().to(self.device))
        self._dist, self._lookup, self._handed_out = None, {}, None
        if self._epoch_named is not None and self._epoch_named > state["epoch"]:
            self.position = 0
            return
        self.epoch, self.position = state["epoch"], state["position"]
        if state["distribution"] is not None:
            e, p, indices = state["distribution"]
            self._set_distribution(e, p.clone(), indices.clone())
