"""InfoBatch as its paper states it (Qin et al., ICLR 2024, Algorithm 1), a baseline for the sweep.

Written from the paper and the authors' ``prune()`` (NUS-HPC-AI-Lab/InfoBatch), not from the
library, so that the demo compares the library's ``rule="mean"`` with the method it is modelled on.
Each epoch t < delta * epochs: the well-learned samples are those whose last loss is below the
mean of all scores; exactly int(keep * |well-learned|) of them (keep = 1 - prune) are kept, drawn
without replacement, and weigh 1/keep; every other sample is kept with weight 1. From epoch
delta * epochs on, every sample is trained with weight 1 (annealing). Scores start at 3.0 (the
authors' initial value), so the first epoch, where every score equals the mean, prunes nothing.

Where it differs from :class:`dsampling_ext.PruningSampler` (``rule="mean"``):

* an exact count of kept candidates (``np.random.choice``) instead of an independent Bernoulli
  draw per candidate (Philox keyed by seed, epoch and index);
* no staleness rule: a pruned sample keeps its old score until it is drawn again, however many
  epochs that takes (the library forces it back after ``staleness`` epochs);
* never-trained samples hold the initial score 3.0 and count in the mean (the library keeps them
  and leaves them out of the mean);
* annealing starts at epoch ceil(delta * epochs) (epochs t >= delta * E), the library's at
  epochs - ceil(anneal * epochs): with 30 epochs, 3 full-data epochs here and 4 there;
* one process only, a torch Generator seeded by (seed, epoch) instead of the global numpy RNG.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
from torch import Tensor
from torch.utils.data import Sampler

__all__ = ["InfoBatchSampler"]

INITIAL_SCORE = 3.0  # the authors' initial per-sample score


class InfoBatchSampler(Sampler[int]):
    """The paper's per-epoch pruning: ``set_epoch``, iterate, ``update`` each step, ``weights``.

    Args:
        num_samples: dataset size N.
        epochs: the run's epochs C (annealing from delta * C on).
        prune: the paper's prune probability r of a well-learned sample (0.5).
        delta: the paper's annealing point (0.875).
        seed: seed of the draws.
    """

    def __init__(self, num_samples: int, epochs: int, prune: float = 0.5, delta: float = 0.875, seed: int = 0):
        if not 0.0 <= prune < 1.0:
            raise ValueError(f"prune must be in [0, 1), got {prune}")
        if not 0.0 <= delta <= 1.0:
            raise ValueError(f"delta must be in [0, 1], got {delta}")
        self.num_samples, self.epochs, self.prune, self.delta, self.seed = num_samples, epochs, prune, delta, seed
        self.scores = torch.full((num_samples,), INITIAL_SCORE, dtype=torch.float64)
        self.epoch = 0
        self._weights = torch.ones(num_samples)
        self._kept = torch.arange(num_samples)

    def set_epoch(self, epoch: int) -> None:
        """Choose epoch ``epoch``'s samples and weights from the scores recorded so far."""
        self.epoch = epoch
        self._weights = torch.ones(self.num_samples)
        if epoch >= self.delta * self.epochs:  # annealing: the full data, weight 1
            self._kept = torch.arange(self.num_samples)
            return
        well_learned = (self.scores < self.scores.mean()).nonzero().flatten()
        keep = 1.0 - self.prune
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        chosen = well_learned[torch.randperm(well_learned.numel(), generator=generator)[: int(keep * well_learned.numel())]]
        self._weights[chosen] = 1.0 / keep
        rest = torch.ones(self.num_samples, dtype=torch.bool)
        rest[well_learned] = False
        rest[chosen] = True
        self._kept = rest.nonzero().flatten()

    def __len__(self) -> int:
        return self._kept.numel()

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch + 2**31)
        return iter(self._kept[torch.randperm(self._kept.numel(), generator=generator)].tolist())

    @property
    def indices(self) -> Tensor:
        """This epoch's kept indices, increasing."""
        return self._kept.clone()

    def update(self, indices: Tensor, losses: Tensor) -> None:
        """Record a step's per-sample losses as the samples' scores."""
        self.scores[indices.cpu()] = losses.detach().cpu().double()

    def weights(self, indices: Tensor) -> Tensor:
        """The loss weights of these indices this epoch (1/keep for kept well-learned ones, else 1)."""
        return self._weights[indices.cpu()].to(indices.device)

    @property
    def full_data_from(self) -> int:
        """The first epoch trained on every sample."""
        return math.ceil(self.delta * self.epochs)
