"""Scores recorded from the training pass, and epoch-level selection from them (SPEC section 8).

The training forward already computes every trained sample's loss and logits. A
:class:`ScoreTable` keeps them per dataset index (last loss, last argmax correctness, the epoch
it was recorded in) on the training device, and a :class:`TableSampler` picks each epoch's
indices and loss weights from it with one ``table_select`` call, so choosing costs no extra
forward pass. Shared by every epoch-level method (pruning, the misclassified filter's
training-scored mode).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Optional, Union

import torch
from torch import Tensor, nn
from torch.utils import _pytree as pytree

from . import distributed, ops
from ._validate import require_epoch, require_index_range, require_int, require_number, require_seed, rule_parameters
from .sampling import ResumableSampler, resolve_replicas, shard, sharded_length

__all__ = ["ScoreTable", "TableSampler", "scoring_forward", "weighted_mean"]

# Philox offsets: epoch e's selection draws at offset e, its shuffle at _SHUFFLE_OFFSET + e and
# its top-up (min_size) at _FILL_OFFSET + e, so the three never share a stream.
_SHUFFLE_OFFSET = 2**40
_FILL_OFFSET = 2**41


def _index_tensor(name: str, value) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of dataset indices, got {type(value).__name__}")
    if value.dtype not in (torch.int64, torch.int32) or value.dim() != 1:
        raise ValueError(f"{name} must be a 1-D int64/int32 tensor of dataset indices, got {value.dtype} "
                         f"{tuple(value.shape)}")
    return value


def _lookup_weights(by_device: dict, indices: Tensor, num_samples: int) -> Tensor:
    """``weights[indices]`` from a sampler's per-index weights, kept per device (``by_device``:
    device -> Tensor[N], copied from the CPU one at a device's first lookup). On the CPU an index
    outside [0, N) is a ValueError naming ``indices`` (index_select refuses it, and only then is
    the range read back); on CUDA a device assertion (no host sync)."""
    weights = by_device.get(indices.device)
    if weights is None:
        weights = by_device[indices.device] = by_device[torch.device("cpu")].to(indices.device)
    try:
        return weights.index_select(0, indices)
    except IndexError:
        require_index_range("indices", indices, num_samples)
        raise


def _sharded_again(done: int, expected: int, num_replicas: int) -> bool:
    """Whether a sampler's rank saw fewer than halfway between 1/num_replicas and all of what it
    handed out (``done`` of ``expected``): the loader sharded its per-rank share again."""
    return done * 2 * num_replicas < expected * (num_replicas + 1)


def _last_occurrence(idx: Tensor) -> tuple[Tensor, Tensor]:
    """(ordered, source): the indices sorted, and for each the position in ``idx`` of its index's
    last occurrence, so that writing ``values[source]`` at ``ordered`` gives every index its last
    value in any write order. No host sync (no torch.unique)."""
    ordered, perm = torch.sort(idx, stable=True)  # copies of an index: increasing positions
    position = torch.arange(idx.numel(), device=idx.device)
    run_end = torch.ones_like(ordered, dtype=torch.bool)
    run_end[:-1] = ordered[1:] != ordered[:-1]
    # for each k, the first run end at or after k: a cumulative minimum from the right
    end = torch.where(run_end, position, idx.numel()).flip(0).cummin(0).values.flip(0)
    return ordered, perm[end]


class ScoreTable:
    """Per-sample scores kept from the training pass: last loss, last correctness, epoch seen.

    Call :meth:`record` once per training step with the indices of the batch and what the loss
    function returned with ``reduction="none"`` (and, for correctness, the logits and targets).
    It is one fused op (``table_record_``) that never synchronises with the host. Samplers
    built on the table call :meth:`set_epoch` for you.

    Under torch.distributed every rank records its own batches; :meth:`sync`, which the
    samplers call before each selection, all-gathers the epoch's records (indices, losses,
    correctness) once and replays them in rank order, so every rank holds the same table. One
    gather per epoch, not per step: the bytes are the same, and a per-step collective would add
    its latency to every step (see README, "Distributed data parallel").

    Args:
        num_samples: dataset size N; indices are 0..N-1.
        device: where the table lives (default CPU); put it on the training device.
        dtype: float32 (default) or float64 scores.

    Attributes:
        scores (Tensor[N]): last recorded loss (0 where never recorded).
        correct (Tensor[N]): int8, 1 right / 0 wrong / -1 unknown (no logits recorded yet).
        seen_epoch (Tensor[N]): int32 epoch of the last record, -1 for never.
        selections (dict): each sampler's last selection from the table, by the sampler's
            configuration; saved with the table, so that a run resumed within an epoch selects
            nothing again (the epoch's records have changed the scores since).
    """

    def __init__(self, num_samples: int, device: Union[torch.device, str, None] = None,
                 dtype: torch.dtype = torch.float32):
        self.num_samples = require_int("num_samples", num_samples, 1)
        if num_samples > 2**31 - 1:
            raise ValueError(f"num_samples must be below 2**31, got {num_samples}")
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.scores = torch.zeros(num_samples, dtype=dtype, device=device)
        self.correct = torch.full((num_samples,), -1, dtype=torch.int8, device=device)
        self.seen_epoch = torch.full((num_samples,), -1, dtype=torch.int32, device=device)
        self.epoch = 0
        self._pending: list[tuple[Tensor, Tensor, Tensor, int]] = []  # records not yet gathered (DDP)
        self._nonfinite: Optional[Tensor] = None  # CUDA: non-finite losses skipped, counted lazily
        # sampler configuration -> (epoch, kept, weights) it selected from this table: the epoch's
        # records change the table, so a resumed epoch must take its selection from here
        self.selections: dict[str, tuple[int, Tensor, Tensor]] = {}

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        return (f"ScoreTable(num_samples={self.num_samples}, device={self.device}, dtype={self.scores.dtype}, "
                f"epoch={self.epoch})")

    @property
    def device(self) -> torch.device:
        return self.scores.device

    def to(self, device) -> "ScoreTable":
        self.scores, self.correct, self.seen_epoch = (t.to(device) for t in (self.scores, self.correct, self.seen_epoch))
        self._nonfinite = None if self._nonfinite is None else self._nonfinite.to(device)
        return self

    def set_epoch(self, epoch: int) -> None:
        """The epoch that :meth:`record` stamps its records with (0-based)."""
        self.epoch = require_epoch(epoch)

    def record(self, indices: Tensor, losses: Tensor, logits: Optional[Tensor] = None,
               targets: Optional[Tensor] = None) -> None:
        """Record one training step's per-sample losses (detached; no host sync).

        Args:
            indices (Tensor[B]): int64/int32 dataset indices of the batch, in [0, N).
            losses (Tensor[B]): per-sample losses (``reduction="none"``), finite.
            logits (Tensor[B, C], optional): with ``targets``, also record whether
                argmax(logits) == target (needed by the "mismatch" rule).
            targets (Tensor[B], optional): the class of each row of ``logits``.

        Raises:
            ValueError: for a wrong shape (e.g. a ``reduction="mean"`` scalar).
            TypeError: for a wrong type.
            RuntimeError: naming ``indices``, ``losses`` or ``targets`` for out-of-range indices,
                NaN/Inf losses or bad targets (on CUDA: a device assertion for indices and targets;
                non-finite losses are skipped there and reported by the next selection).
        """
        indices = _index_tensor("indices", indices)
        if not isinstance(losses, Tensor):
            raise TypeError(f"losses must be a torch.Tensor, got {type(losses).__name__}")
        if losses.shape != indices.shape:
            raise ValueError(f"losses must have shape {tuple(indices.shape)} (one per index: use reduction='none'), "
                             f"got {tuple(losses.shape)}")
        if (logits is None) != (targets is None):
            raise ValueError("logits and targets must be given together")
        device = self.device
        indices, losses = indices.to(device), losses.detach().to(device)
        if logits is not None:
            if not isinstance(logits, Tensor) or not isinstance(targets, Tensor):
                raise TypeError("logits and targets must be torch.Tensors")
            logits, targets = logits.detach().to(device), targets.to(device)
        ops.table_record_(self.scores, self.correct, self.seen_epoch, indices, losses, self.epoch, logits, targets)
        if device.type == "cuda":  # counted on the device, read at the next selection
            bad = (~torch.isfinite(losses)).sum()
            self._nonfinite = bad if self._nonfinite is None else self._nonfinite + bad
        if distributed.active():
            right = (torch.full(indices.shape, -1, dtype=torch.int8, device=device) if logits is None
                     else (logits.argmax(1) == targets).to(torch.int8))
            self._pending.append((indices.to(torch.int64), losses.to(self.scores.dtype), right, self.epoch))

    def check(self) -> None:
        """Raise if a CUDA record skipped non-finite losses since the last check (one host sync)."""
        if self._nonfinite is not None:
            bad, self._nonfinite = int(self._nonfinite), None
            if bad:
                raise ValueError(f"losses must be finite: {bad} NaN/Inf losses were recorded (and skipped) since the "
                                 f"last selection")

    def sync(self) -> None:
        """Under torch.distributed, give every rank every rank's records since the last sync.

        A collective: every rank must call it at the same point (the samplers do, once per
        epoch). Records are replayed in rank order, each index keeping its last record (and the
        correctness of its last record with logits), so all ranks end with the same table.
        Without a process group it does nothing.
        """
        if not distributed.active():
            self._pending.clear()
            return
        device = self.device
        if self._pending:
            idx = torch.cat([p[0] for p in self._pending])
            loss = torch.cat([p[1] for p in self._pending])
            right = torch.cat([p[2] for p in self._pending])
            epoch = torch.cat([torch.full(p[0].shape, p[3], dtype=torch.int32, device=device) for p in self._pending])
        else:
            idx = torch.zeros(0, dtype=torch.int64, device=device)
            loss = torch.zeros(0, dtype=self.scores.dtype, device=device)
            right = torch.zeros(0, dtype=torch.int8, device=device)
            epoch = torch.zeros(0, dtype=torch.int32, device=device)
        self._pending.clear()
        idx, _ = distributed.all_gather_cat(idx)
        loss, _ = distributed.all_gather_cat(loss)
        right, _ = distributed.all_gather_cat(right)
        epoch, _ = distributed.all_gather_cat(epoch)
        finite = torch.isfinite(loss)  # CUDA records skip non-finite losses; so does the replay
        idx, loss, right, epoch = idx[finite], loss[finite], right[finite], epoch[finite]
        if idx.numel() == 0:
            return
        ordered, last = _last_occurrence(idx)
        self.scores[ordered] = loss[last]
        self.seen_epoch[ordered] = epoch[last]
        # a record without logits leaves an index's correctness alone (as record does), so each
        # index takes its last record that has one, not its last record
        known = right >= 0
        ordered, last = _last_occurrence(idx[known])
        self.correct[ordered] = right[known][last]

    def state_dict(self) -> dict:
        return dict(num_samples=self.num_samples, epoch=self.epoch, scores=self.scores.clone(),
                    correct=self.correct.clone(), seen_epoch=self.seen_epoch.clone(),
                    pending=[(i.clone(), l.clone(), r.clone(), e) for i, l, r, e in self._pending],
                    selections={k: (e, kept.clone(), w.clone()) for k, (e, kept, w) in self.selections.items()})

    def load_state_dict(self, state: dict) -> None:
        if state["num_samples"] != self.num_samples or state["scores"].dtype != self.scores.dtype:
            raise ValueError(f"state is for a table of {state['num_samples']} {state['scores'].dtype} scores; this one "
                             f"holds {self.num_samples} {self.scores.dtype}")
        device = self.device
        self.epoch = state["epoch"]
        self.scores, self.correct, self.seen_epoch = (state[k].to(device).clone()
                                                      for k in ("scores", "correct", "seen_epoch"))
        self._pending = [(i.to(device), l.to(device), r.to(device), e) for i, l, r, e in state["pending"]]
        self.selections = {k: (e, kept.clone(), w.clone()) for k, (e, kept, w) in state["selections"].items()}


def scoring_forward(model: nn.Module, inputs: Any, *, device: Union[torch.device, str, None] = None,
                    mode: str = "eval", scale: Optional[float] = None, score_fn=None) -> Tensor:
    """The gradient-free forward that the per-batch selectors score a raw batch with.

    Runs under ``torch.inference_mode`` (cheaper than ``no_grad``: no version counters or view
    tracking) with the model in ``mode`` ("eval" or "train"), the inputs (any pytree of
    tensors) moved to ``device``; ``scale`` in (0, 1) first downsamples every 4-D floating
    input bilinearly (Composer's SelectiveBackprop ``scale_factor``; the model must accept the
    smaller size, e.g. end in adaptive pooling). Returns ``score_fn(outputs)`` (default: the
    outputs), computed in inference mode too.
    """
    x = pytree.tree_map(lambda t: t.to(device), inputs) if device is not None else inputs
    if scale is not None:
        x = pytree.tree_map(lambda t: nn.functional.interpolate(t, scale_factor=scale, mode="bilinear",
                                                                align_corners=False)
                            if isinstance(t, Tensor) and t.dim() == 4 and t.is_floating_point() else t, x)
    was_training = model.training
    model.train(mode == "train")
    try:
        with torch.inference_mode():
            out = model(x)
            return out if score_fn is None else score_fn(out)
    finally:
        model.train(was_training)


def check_score_scale(scale) -> Optional[float]:
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0.0 < scale < 1.0):
        raise ValueError(f"score_scale must be None or a number in (0, 1), got {scale!r}")
    return None if scale is None else float(scale)


def weighted_mean(losses: Tensor, weights: Optional[Tensor] = None) -> Tensor:
    """``(losses * weights).sum() / len(losses)``: the batch loss with per-sample weights.

    With the weights of :meth:`TableSampler.weights` (1/q for a sample kept with probability q)
    the expected weighted loss of an epoch equals the full-data one (InfoBatch's rescaling).
    ``weights=None`` gives the plain mean.

    Args:
        losses (Tensor[B]): per-sample losses (``reduction="none"``).
        weights (Tensor[B], optional): per-sample weights, moved to the device and dtype of losses.

    Example:
        >>> import torch, dsampling_ext
        >>> dsampling_ext.weighted_mean(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([2.0, 1.0, 1.0, 0.0]))
        tensor(1.7500)
    """
    if not isinstance(losses, Tensor) or losses.dim() != 1:
        raise ValueError(f"losses must be a 1-D tensor of per-sample losses (reduction='none'), got "
                         f"{tuple(getattr(losses, 'shape', ())) if isinstance(losses, Tensor) else type(losses).__name__}")
    if weights is None:
        return losses.mean()
    if not isinstance(weights, Tensor) or weights.shape != losses.shape:
        raise ValueError(f"weights must be a tensor of shape {tuple(losses.shape)}, got "
                         f"{tuple(weights.shape) if isinstance(weights, Tensor) else type(weights).__name__}")
    # one dot product with the weights scaled by 1/B: a single autograd node, as in losses.mean()
    return torch.dot(losses, weights.to(device=losses.device, dtype=losses.dtype) / max(losses.numel(), 1))


#: Each table rule's own parameters and their defaults; the others are refused.
_RULE_PARAMS = {
    "mean": dict(prune=0.5),
    "pmf": dict(prune=0.5, bins="sturges", threshold=0.1),
    "percentile": dict(beta=2.0),
    "mismatch": dict(prune=0.5),
}
#: What table_select gets for a parameter its rule ignores.
_OP_NEUTRAL = dict(prune=0.5, bins="sturges", threshold=0.1, beta=2.0)


class TableSampler(ResumableSampler):
    """A Sampler whose epoch is chosen from a :class:`ScoreTable` by one ``table_select`` call.

    Each epoch's indices (and their loss weights, :meth:`weights`) come from the table's scores
    recorded in earlier epochs, by ``rule`` (see :func:`dsampling_ext.ops.table_select`):
    forced indices (never scored, or untrained for more than ``staleness`` epochs) and
    non-candidates are always kept with weight 1; each candidate is dropped with probability
    ``prune``, and with ``reweight`` a kept one weighs 1/(1 - prune). In the last
    ceil(``anneal`` * ``epochs``) epochs (``full_data_from`` on) every index is kept with
    weight 1. The kept indices are shuffled (Philox, keyed by seed and epoch).

    :meth:`set_epoch` makes the epoch's selection (so ``len(sampler)`` is known from the start
    of the epoch, for LR schedulers) and stamps the table's records with the epoch. The
    selection depends only on (table, epoch, configuration), so every rank that holds the same
    table (see :meth:`ScoreTable.sync`, which set_epoch calls) makes the same one; each rank
    then yields its shard, like DistributedSampler. Iterated in the DataLoader's main process,
    so workers (persistent or not) need nothing.

    Parameters a rule does not use must be left out (None): ``prune`` belongs to "mean", "pmf"
    and "mismatch", ``bins`` and ``threshold`` to "pmf", ``beta`` to "percentile"; giving one
    to another rule is a ValueError, not a silently ignored value.

    Args:
        table: the ScoreTable the training loop records into.
        epochs: the run's total number of epochs (for the annealing).
        rule: "mean", "pmf", "percentile" or "mismatch".
        prune: share of the candidates dropped each epoch, in (0, 1] (default 0.5; 0 would
            keep everything).
        anneal: share of the last epochs trained on everything, in [0, 1).
        staleness: epochs an index may go untrained before it is forced back (>= 1).
        bins, threshold: the "pmf" rule's bins ("sturges") and PMF threshold in [0, 1) (0.1).
        beta: the "percentile" exponent, > 0 (2).
        reweight: weights 1/(1 - prune) for kept candidates (default: on for "mean" and "pmf").
        max_weight: with reweight, a kept candidate weighs min(1/(1 - prune), max_weight) (>= 1;
            default None: no cap). A cap trades the rescaling's unbiasedness for a bounded
            gradient: at high prune ratios, 1/(1 - prune) (5 at 0.8, 20 at 0.95) makes the
            gradient noisy enough to lose to a random subset (README, the budget sweep).
        min_size: if fewer indices are kept, random others are added (weight 1) up to it.
        seed: seed of every draw.  shuffle: shuffle the kept indices each epoch.
        num_replicas, rank: data-parallel sharding (default: from torch.distributed, else 1, 0).
    """

    def __init__(self, table: ScoreTable, epochs: int, rule: str = "mean", prune: Optional[float] = None,
                 anneal: float = 0.0, staleness: int = 3, bins: Union[int, str, None] = None,
                 threshold: Optional[float] = None, beta: Optional[float] = None, reweight: Optional[bool] = None,
                 max_weight: Optional[float] = None, min_size: int = 1, seed: int = 0, shuffle: bool = True,
                 num_replicas: Optional[int] = None, rank: Optional[int] = None):
        if not isinstance(table, ScoreTable):
            raise TypeError(f"table must be a dsampling_ext.ScoreTable, got {type(table).__name__}")
        anneal = require_number("anneal", anneal, 0.0, 1.0, high_open=True)
        ops._choice("rule", rule, ops.TABLE_RULES)
        given = dict(prune=prune, bins=bins, threshold=threshold, beta=beta)
        own = rule_parameters(rule, given, _RULE_PARAMS[rule])
        values = {name: own.get(name) for name in given}
        if values["prune"] is not None and require_number("prune", values["prune"], 0.0, 1.0) == 0.0:
            raise ValueError("prune must be in (0, 1], got 0.0 (nothing would ever be pruned)")
        reweight = ops.REWEIGHT_DEFAULT[rule] if reweight is None else reweight
        if max_weight is not None:
            max_weight = require_number("max_weight", max_weight, 1.0, why="a weight cap below 1 would shrink kept "
                                        "candidates below the samples that are never pruned")
            if not reweight:
                raise ValueError(f"max_weight caps the reweighting, which is off for rule {rule!r} here "
                                 f"(reweight=False): leave max_weight out or pass reweight=True")
        # Every selection argument is checked now, on an empty table, not at the first epoch.
        op_values = {**_OP_NEUTRAL, **{k: v for k, v in values.items() if v is not None}}
        ops.table_select(torch.zeros(0, dtype=torch.int8 if rule == "mismatch" else torch.float32),
                         torch.zeros(0, dtype=torch.int32), 0, rule, staleness=staleness, reweight=reweight, seed=seed,
                         **op_values)
        self.table = table
        self.epochs = require_int("epochs", epochs, 1)
        self.rule, self.anneal, self.reweight, self.max_weight = rule, anneal, reweight, max_weight
        self.staleness = require_int("staleness", staleness, 1)
        self.bins = values["bins"]
        self.prune, self.threshold, self.beta = (None if values[k] is None else float(values[k])
                                                 for k in ("prune", "threshold", "beta"))
        self.min_size = require_int("min_size", min_size, 0)
        self.seed = require_seed(seed)
        self.shuffle = bool(shuffle)
        self.num_replicas, self.rank = resolve_replicas(num_replicas, rank)
        self.epoch = 0
        self._key = repr(self)  # this configuration's entry in table.selections
        self._selection: Optional[tuple[int, Tensor, Tensor]] = None  # (epoch, kept indices, weights)
        self._lookup: dict = {}  # device -> every index's weight this epoch

    def __repr__(self) -> str:
        rule_params = "".join(f"{k}={getattr(self, k)!r}, " for k in _RULE_PARAMS[self.rule])
        return (f"{type(self).__name__}(num_samples={self.table.num_samples}, epochs={self.epochs}, rule={self.rule!r}, "
                f"{rule_params}anneal={self.anneal}, staleness={self.staleness}, reweight={self.reweight}, "
                f"max_weight={self.max_weight}, "
                f"min_size={self.min_size}, seed={self.seed}, shuffle={self.shuffle})")

    @property
    def full_data_from(self) -> float:
        """The first epoch trained on every index, as the last ceil(anneal * epochs) epochs are
        (at least one when anneal > 0; infinity when anneal is 0)."""
        if self.anneal == 0:
            return math.inf
        return self.epochs - math.ceil(round(self.anneal * self.epochs, 9))

    def set_epoch(self, epoch: int) -> None:
        """Select epoch ``epoch``'s indices and weights (a collective under torch.distributed).

        Raises ValueError for an epoch at or past ``epochs`` when ``anneal`` > 0: the full-data
        epochs are placed by ``epochs``, so a longer run would train everything from there on.
        """
        if require_epoch(epoch) >= self.epochs and self.anneal > 0:
            raise ValueError(f"epoch must be below the sampler's epochs={self.epochs} (the run's length, which places "
                             f"its full-data epochs), got {epoch}")
        super().set_epoch(epoch)
        self.table.set_epoch(self.epoch)
        self._select()

    def _start(self, start: int):
        # an epoch this sampler ran through, restarted over its own records: set_epoch was not called
        # (a fresh sampler replaying a resumed epoch from its start, as accelerate does, is not warned)
        if start == 0 and self._finished == self.epoch and bool((self.table.seen_epoch == self.epoch).any()):
            warnings.warn(f"{type(self).__name__}: epoch {self.epoch} is iterated again after its records: call "
                          f"sampler.set_epoch(epoch) before each epoch (without it every epoch repeats epoch "
                          f"{self.epoch}'s selection)", RuntimeWarning, stacklevel=2)
        yield from ()

    def _select(self) -> tuple[Tensor, Tensor]:
        stored = self.table.selections.get(self._key)
        if stored is not None and stored[0] == self.epoch:
            if self._selection is not stored:  # selected before a resume: loaded with the table
                self._set_selection(stored)
            return stored[1], stored[2]
        table, n = self.table, self.table.num_samples
        table.sync()
        table.check()
        self._check_previous_epoch_trained(stored)
        if self.epoch >= self.full_data_from:
            kept, weights = torch.arange(n), torch.ones(n)
        else:
            source = table.correct if self.rule == "mismatch" else table.scores
            rule_values = {k: getattr(self, k) for k in _RULE_PARAMS[self.rule]}
            kept, weights = ops.table_select(
                source, table.seen_epoch, self.epoch, self.rule, staleness=self.staleness, reweight=self.reweight,
                seed=self.seed, offset=self.epoch, **{**_OP_NEUTRAL, **rule_values})
            kept, weights = kept.cpu(), weights.cpu()
            if self.max_weight is not None:
                weights = weights.clamp(max=self.max_weight)
            if kept.numel() < min(self.min_size, n):
                kept, weights = self._top_up(kept, weights)
        selection = (self.epoch, kept, weights)
        table.selections[self._key] = selection
        self._set_selection(selection)
        return kept, weights

    def _check_previous_epoch_trained(self, previous: Optional[tuple[int, Tensor, Tensor]]) -> None:
        """Before selecting epoch e from the table: warn when nothing was ever recorded (every
        index is then kept), and raise when this sampler ran through epoch e - 1 but fewer than
        halfway between 1/num_replicas and all of its selection was recorded across the ranks: the
        loader shards this sampler's shards again (accelerate's prepare, Lightning's distributed
        sampler). A sampler that did not yield the epoch (another one on the table did) is not
        checked."""
        seen = self.table.seen_epoch
        if self.epoch > 0 and self.epoch < self.full_data_from and not bool((seen >= 0).any()):
            warnings.warn(f"{type(self).__name__}: no losses were recorded in the table before epoch {self.epoch}, so it "
                          f"keeps every index: call table.record(indices, losses) each training step",
                          RuntimeWarning, stacklevel=3)
        if previous is None or previous[0] != self.epoch - 1 or self._finished != previous[0] or self.num_replicas == 1:
            return
        kept = previous[1]
        trained = int((seen[kept.to(seen.device)] == previous[0]).sum())
        if _sharded_again(trained, kept.numel(), self.num_replicas):
            raise RuntimeError(
                f"{type(self).__name__}: epoch {previous[0]} selected {kept.numel()} indices but only {trained} were "
                f"recorded on the {self.num_replicas} ranks: the loader shards this sampler's per-rank indices again "
                f"(accelerate's prepare, Lightning's use_distributed_sampler). Build the sampler with num_replicas=1, "
                f"rank=0 when the framework shards, or use dsampling_ext.integrations")

    def _set_selection(self, selection: tuple[int, Tensor, Tensor]) -> None:
        """Keep the epoch's selection, and every index's weight for O(1) lookups (0 = not drawn)."""
        self._selection = selection
        _, kept, weights = selection
        dense = torch.zeros(self.table.num_samples)
        dense[kept] = weights
        self._lookup = {torch.device("cpu"): dense}

    def _top_up(self, kept: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
        """Add random unkept indices (weight 1) up to min_size: Philox-ranked, ties to the lower index."""
        u = ops.philox_uniform(self.table.num_samples, self.seed, _FILL_OFFSET + self.epoch)
        u[kept] = 2.0
        extra = torch.sort(u, stable=True).indices[: self.min_size - kept.numel()]
        kept, order = torch.cat([kept, extra]).sort()
        return kept, torch.cat([weights, torch.ones(extra.numel())])[order]

    @property
    def indices(self) -> Tensor:
        """This epoch's kept indices, in increasing order (a copy)."""
        return self._select()[0].clone()

    def __len__(self) -> int:
        return sharded_length(self._select()[0].numel(), self.num_replicas)

    def _epoch_order(self) -> Tensor:
        kept, _ = self._select()
        order = kept.clone()
        if self.shuffle:
            ops.random_subset_(order, order.numel(), self.seed, _SHUFFLE_OFFSET + self.epoch)
        return shard(order, self.num_replicas, self.rank)

    def weights(self, indices: Tensor) -> Tensor:
        """Loss weights of these dataset indices in this epoch (float32, on their device).

        A lookup in every index's weight (a float32 per sample, 0 for one not drawn) made at
        selection. Checks on the CPU that every index was drawn this epoch (a ValueError names
        the first that was not); CUDA indices are looked up on the device without that check
        (no host sync).
        """
        indices = _index_tensor("indices", indices)
        self._select()
        weights = _lookup_weights(self._lookup, indices, self.table.num_samples)
        if indices.device.type == "cpu" and not bool(weights.all()):
            raise ValueError(f"indices must be drawn by this sampler in epoch {self.epoch}; "
                             f"{int(indices[weights == 0][0])} was not")
        return weights

