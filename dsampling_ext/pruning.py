"""Unbiased epoch-level pruning from training-pass scores (SPEC section 8).

InfoBatch (Qin et al., "InfoBatch: Lossless Training Speed Up by Unbiased Dynamic Data Pruning",
ICLR 2024): each epoch, a random share of the well-learned samples (loss below the mean) is
skipped, and the kept ones' losses are scaled up so that the expected gradient is the
full-data one; the last epochs train on everything. The scores are the losses the training
forward already computed (a :class:`~dsampling_ext.ScoreTable`), so choosing costs no forward.
The same sampler runs ADONIS's PMF rule, Selective-Backprop's percentile rule and the
misclassified filter's rule on those scores.
"""

from __future__ import annotations

from typing import Optional, Union

from .scores import ScoreTable, TableSampler

__all__ = ["PruningSampler"]


class PruningSampler(TableSampler):
    """InfoBatch-style unbiased pruning: a ``Sampler[int]`` of each epoch's kept indices.

    Defaults reproduce InfoBatch: candidates are the samples whose last loss is below the mean
    of the table (``rule="mean"``), each dropped with probability ``prune`` = 0.5; kept
    candidates weigh 1/(1 - prune) (InfoBatch's rescaling, so E[weighted epoch loss] = the
    full-data one); the last ceil(``anneal`` * epochs) epochs (12.5%, at least one) train on
    everything. Never-seen samples, and samples untrained for more than ``staleness`` epochs,
    are always kept, so each score is refreshed by training on it.

    Other rules on the same scores: ``"pmf"`` (ADONIS's PMF > threshold candidates, at no
    forward cost), ``"percentile"`` (Selective-Backprop's stale variant: keep with probability
    percentile**beta, no reweighting), ``"mismatch"`` (candidates are the correctly classified
    samples; needs logits in :meth:`ScoreTable.record`). See :class:`TableSampler` for every
    argument, DDP and resume.

    Example (the three-line change to a plain loop, marked +1 to +3; epoch 0 has no scores yet
    and the last, annealed epoch trains on everything):

        >>> import torch, dsampling_ext
        >>> from torch.nn import functional as F
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> _ = torch.manual_seed(0)
        >>> train_set = TensorDataset(torch.randn(256, 8), torch.randint(0, 4, (256,)))
        >>> model, epochs = torch.nn.Linear(8, 4), 4
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> table = dsampling_ext.ScoreTable(len(train_set))                                # +1
        >>> sampler = dsampling_ext.PruningSampler(table, epochs)
        >>> loader = DataLoader(dsampling_ext.IndexedDataset(train_set), batch_size=32, sampler=sampler)
        >>> trained = []
        >>> for epoch in range(epochs):
        ...     sampler.set_epoch(epoch)
        ...     trained.append(len(sampler))
        ...     for x, y, idx in loader:
        ...         losses = F.cross_entropy(model(x), y, reduction="none")
        ...         table.record(idx, losses)                                                # +2
        ...         loss = dsampling_ext.weighted_mean(losses, sampler.weights(idx))         # +3
        ...         optimizer.zero_grad(); loss.backward(); optimizer.step()
        >>> trained[0], trained[-1], all(n < 256 for n in trained[1:-1])
        (256, 256, True)
    """

    def __init__(self, table: ScoreTable, epochs: int, prune: Optional[float] = None, anneal: float = 0.125,
                 rule: str = "mean", seed: int = 0, *, staleness: int = 3, bins: Union[int, str, None] = None,
                 threshold: Optional[float] = None, beta: Optional[float] = None, reweight: Optional[bool] = None,
                 max_weight: Optional[float] = None, min_size: int = 1, shuffle: bool = True,
                 num_replicas: Optional[int] = None, rank: Optional[int] = None):
        super().__init__(table, epochs, rule=rule, prune=prune, anneal=anneal, staleness=staleness, bins=bins,
                         threshold=threshold, beta=beta, reweight=reweight, max_weight=max_weight, min_size=min_size,
                         seed=seed, shuffle=shuffle, num_replicas=num_replicas, rank=rank)
