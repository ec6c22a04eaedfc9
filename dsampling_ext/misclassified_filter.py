"""Accuracy filtering: train on the samples the model gets wrong (SPEC section 3, seed 004).

Thesis Alg. 7 (the filter), Alg. 10 (batchwise filtering with batch accumulation, the main
method), Alg. 8 (epochwise filtering), Alg. 6 (soft accuracy: a top-2 softmax margin), and the
random fill of Alg. 5 for when too few samples are misclassified.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Iterable, Iterator, Optional, Union

import torch
from torch import Tensor, nn

from . import distributed, ops
from ._validate import require_epoch, require_int, require_number, require_seed
from .accumulate import BatchAccumulator
from .batches import batches_from, check_loader, check_model, is_sequential, skip_empty, split_batch
from .sampling import IndexSubsetSampler
from .schedules import SelectionWindow
from .scores import ScoreTable, TableSampler, check_score_scale, scoring_forward
from .timing import StageTimer, stage

__all__ = ["MisclassifiedFilter"]

MODES = ("batch", "epoch")
SCORES = ("forward", "training")
OVERFLOW = ("carry", "drop")


class MisclassifiedFilter:
    """Keep the samples a classifier misclassifies; train on full batches of them.

    ``mode="batch"`` (thesis Alg. 10): :meth:`batches` forwards each raw batch without
    gradients, keeps the misclassified samples (``argmax != label``; with ``margin``, also the
    correct ones whose top-2 softmax gap is <= margin) and yields training batches of exactly
    ``batch_size``. The buffer persists across epochs. ``overflow="carry"`` (default) keeps the
    accepted samples beyond a full batch for the next one; ``"drop"`` reproduces the thesis,
    which trained at most one batch per raw batch and discarded the rest.

    ``mode="epoch"`` (Alg. 8): :meth:`epoch_sampler` runs one no-grad pass over a loader of the
    dataset and returns a Sampler over the kept indices for this epoch. With
    ``scores="training"`` there is no such pass: the correctness comes from the training
    forward, recorded in a :class:`~dsampling_ext.ScoreTable` (``table.record(idx, losses,
    logits, targets)``), and ``epoch_sampler(table=table)`` returns one Sampler that re-selects
    at each ``set_epoch``: every misclassified sample, each correct one with probability
    ``keep_correct``, and every sample not trained for more than ``staleness`` epochs (or never),
    so each prediction is refreshed (the ``"mismatch"`` rule of ``table_select``).

    Fallback (Alg. 5's fix; the thesis's loop could stall for epochs): after ``fallback_after``
    raw batches without a training batch, the next batch is completed with random samples of the
    current raw batch; in epoch mode, fewer than ``batch_size`` kept samples are topped up with
    random ones. ``None`` turns it off.

    Counters add up: ``kept + fallback_filled == trained + dropped + pending`` (batch mode).

    Under torch.distributed each rank filters its own shard; in batch mode each trains only as
    many batches as every rank can, so DDP's steps stay matched; in epoch mode the kept set is
    the union over ranks, and the returned sampler gives each rank its shard of it.

    Args:
        batch_size: samples per training batch.
        mode: "batch" (default) or "epoch".
        margin: soft-accuracy margin in [0, 1], or None (default: hard accuracy only).
        overflow: "carry" (default) or "drop".
        fallback_after: raw batches without a training batch before the random fill (default 10).
        selection_mode: run the filtering forward in "eval" (default) or "train" mode.
        seed: seed of the random fill and of the epoch sampler's shuffles.
        scores: "forward" (default: a filtering forward, as the thesis) or "training" (epoch
            mode only: predictions recorded from the training pass; no margin).
        keep_correct: with scores="training", the probability a correctly classified sample is
            kept anyway (default 0.1).
        staleness: with scores="training", epochs a sample may go untrained before it is kept
            again whatever its last prediction (default 3).
        score_scale: downsample 4-D image inputs by this factor in (0, 1) for the filtering
            forward only (the model must accept the smaller size); the forward runs under
            torch.inference_mode, and a loader batch larger than batch_size scores more
            samples per call.
        start, end, interval, epochs: batch mode: filter only in the epochs with
            start <= epoch / epochs < end, and there every interval-th raw batch; the other raw
            batches are trained whole, with no filtering forward (Composer's SelectiveBackprop
            window; see :class:`~dsampling_ext.schedules.SelectionWindow`).
    """

    def __init__(
        self,
        batch_size: int,
        mode: str = "batch",
        margin: Optional[float] = None,
        overflow: str = "carry",
        fallback_after: Optional[int] = 10,
        selection_mode: str = "eval",
        seed: int = 0,
        scores: str = "forward",
        keep_correct: float = 0.1,
        staleness: int = 3,
        score_scale: Optional[float] = None,
        start: float = 0.0,
        end: float = 1.0,
        interval: int = 1,
        epochs: Optional[int] = None,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if overflow not in OVERFLOW:
            raise ValueError(f"overflow must be one of {OVERFLOW}, got {overflow!r}")
        batch_size = require_int("batch_size", batch_size, 1)
        if margin is not None:
            margin = require_number("margin", margin, 0.0, 1.0, high_open=True,
                                    what="None or a number")  # 1 would keep every sample
        if fallback_after is not None:
            fallback_after = require_int("fallback_after", fallback_after, 1, what="None or an int")
        if selection_mode not in ("eval", "train"):
            raise ValueError(f"selection_mode must be 'eval' or 'train', got {selection_mode!r}")
        seed = require_seed(seed)
        if scores not in SCORES:
            raise ValueError(f"scores must be one of {SCORES}, got {scores!r}")
        if scores == "training" and mode != "epoch":
            raise ValueError("scores='training' needs mode='epoch' (batch mode filters each raw batch with a forward)")
        if scores == "training" and margin is not None:
            raise ValueError("margin must be None with scores='training': the score table records argmax correctness only")
        self.window = SelectionWindow(start, end, interval, epochs)
        if mode == "epoch" and repr(self.window) != repr(SelectionWindow()):
            raise ValueError("start, end, interval and epochs are for mode='batch' (epoch mode filters whole epochs)")
        self.keep_correct = require_number("keep_correct", keep_correct, 0.0, 1.0)
        if self.keep_correct == 1.0:
            raise ValueError("keep_correct must be in [0, 1), got 1.0 (nothing would be filtered)")
        self.staleness = require_int("staleness", staleness, 1)
        self.scores = scores
        self.score_scale = check_score_scale(score_scale)
        self.accumulator = BatchAccumulator(batch_size, leftover="carry")
        self.batch_size = batch_size
        self.mode, self.margin, self.overflow = mode, margin, overflow
        self.fallback_after, self.selection_mode, self.seed = fallback_after, selection_mode, seed
        self.epoch = 0
        self.seen = self.kept = self.fallback_filled = 0
        self.raw_batches_waiting = 0  # raw batches since the last training batch
        self.draws = 0  # Philox offset of the next random fill
        self.position = 0  # raw batches batches() consumed this epoch (0 once it ran to its end)
        self._epoch_sampler: Optional[IndexSubsetSampler] = None  # epoch mode: one sampler, updated in place
        self.steps = 0  # raw batches batches() was given since the start (the window's interval)

    def __repr__(self) -> str:
        return (f"MisclassifiedFilter(batch_size={self.batch_size}, mode={self.mode!r}, margin={self.margin}, "
                f"overflow={self.overflow!r}, fallback_after={self.fallback_after}, "
                f"selection_mode={self.selection_mode!r}, seed={self.seed}, scores={self.scores!r}, "
                f"keep_correct={self.keep_correct}, staleness={self.staleness}, score_scale={self.score_scale}, "
                f"{self.window!r})")

    def set_epoch(self, epoch: int) -> None:
        epoch = require_epoch(epoch)
        if epoch != self.epoch:
            self.position = 0
        self.epoch = epoch

    def counters(self) -> dict[str, int]:
        acc = self.accumulator
        return dict(seen=self.seen, kept=self.kept, fallback_filled=self.fallback_filled, trained=acc.trained,
                    dropped=acc.dropped, pending=acc.pending)

    def select(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Keep mask of one batch: misclassified (or within the margin)."""
        keep, _, _ = ops.argmax_mismatch(logits, labels, self.margin)
        return keep

    def _forward(self, model: nn.Module, inputs: Any, device) -> Tensor:
        return scoring_forward(model, inputs, device=device, mode=self.selection_mode, scale=self.score_scale)

    def _random_fill(self, keep: Tensor, need: int) -> Tensor:
        """Mask of `need` random rows not in `keep` (Philox-ranked, ties to the lower index)."""
        u = ops.philox_uniform(keep.numel(), self.seed, self.draws)
        self.draws += 1
        u[keep] = 2.0  # never chosen again
        order = torch.sort(u, stable=True).indices[: min(need, int((~keep).sum()))]
        fill = torch.zeros_like(keep)
        fill[order] = True
        return fill

    def batches(self, loader: Iterable, model: nn.Module, device: Union[torch.device, str, None] = None,
                timer: Optional[StageTimer] = None, *, resume: bool = True, input_key: str = "input",
                target_key: str = "target", index_key: str = "index") -> Iterator[Any]:
        """One epoch of batchwise filtering (Alg. 10): yields training batches in the loader's form.

        ``loader`` yields ``(inputs, targets)``, ``(inputs, targets, indices)`` or dicts with
        ``input_key``, ``target_key`` (and optionally ``index_key``); empty batches are skipped.
        The filtering forward moves inputs to ``device`` when given; ``timer`` receives
        "selection_forward" and "select" times.

        Mid-epoch resume: the filter counts the raw batches consumed this epoch (``position``, in
        its state_dict); after ``load_state_dict`` of a run saved mid-epoch, the call skips that
        many raw batches of ``loader`` (which must repeat the saved epoch's order) and goes on as
        the saved run would have; ``resume=False`` when the loader restores its own position. An
        epoch that ran to its end sets the position back to 0, and so does ``set_epoch`` with
        another epoch.
        """
        if self.mode != "batch":
            raise RuntimeError("batches() is for mode='batch'; use epoch_sampler() in mode='epoch'")
        check_loader(loader)
        check_model(model)
        if not resume:
            self.position = 0
        for batch in batches_from(loader, self.position, self.epoch):
            inputs, targets, _ = split_batch(batch, input_key, target_key, index_key)
            if skip_empty(targets):
                continue
            rows = batch if isinstance(batch, Mapping) else tuple(batch)
            self.steps += 1
            if not self.window.selects(self.epoch, self.steps - 1):  # outside the window: the whole batch
                with stage(timer, "select"):
                    self.seen += targets.shape[0]
                    self.kept += targets.shape[0]
                    self.accumulator.add(rows, torch.ones(targets.shape[0], dtype=torch.bool))
                    limit = (distributed.all_min(self.accumulator.pending // self.batch_size)
                             if distributed.active() else None)
                self.position += 1
                yield from self.accumulator.ready(limit)
                continue
            with stage(timer, "selection_forward"):
                logits = self._forward(model, inputs, device)
            with stage(timer, "select"):
                keep = self.select(logits, targets.to(logits.device)).cpu()
                self.seen += keep.numel()
                self.kept += int(keep.sum())
                self.accumulator.add(rows, keep)
                self.raw_batches_waiting += 1
                short = self.batch_size - self.accumulator.pending
                if self.fallback_after is not None and short > 0 and self.raw_batches_waiting >= self.fallback_after:
                    fill = self._random_fill(keep, short)
                    self.fallback_filled += int(fill.sum())
                    self.accumulator.add(rows, fill)
                limit = 1 if self.overflow == "drop" else None  # the thesis: at most one step per raw batch
                if distributed.active():  # every rank trains as many batches as the emptiest one can
                    limit = distributed.all_min(min(limit or 2**62, self.accumulator.pending // self.batch_size))
                if self.overflow == "drop":  # at most one batch, the rest discarded before it is trained
                    ready = list(self.accumulator.ready(limit))
                    if ready:
                        self.accumulator.discard()
            self.position += 1
            # Taken one at a time (carry), so a checkpoint between two yields holds the untrained ones.
            for full in ready if self.overflow == "drop" else self.accumulator.ready(limit):
                self.raw_batches_waiting = 0
                yield full
        self.position = 0  # the epoch ran to its end

    def epoch_sampler(self, model: Optional[nn.Module] = None, loader: Optional[Iterable] = None,
                      device: Union[torch.device, str, None] = None, *, table: Optional[ScoreTable] = None,
                      input_key: str = "input", target_key: str = "target",
                      index_key: str = "index") -> Union[IndexSubsetSampler, TableSampler]:
        """Epochwise filtering (Alg. 8): a Sampler of the kept indices.

        With scores="forward": one no-grad pass of ``model`` over ``loader``, which yields each
        sample's dataset index: ``(inputs, targets, indices)`` (a DataLoader over an
        :class:`~dsampling_ext.IndexedDataset`), a dict with ``index_key``, or ``(inputs,
        targets)`` from a DataLoader with a SequentialSampler (shuffle=False), where the running
        position is the index. Any other loader without indices is refused: a shuffled loader's
        positions are not its indices, and guessing would corrupt the selection. Call it every
        epoch: it returns the same sampler each time, updated in place (like
        DynamicPartitionSampler), so a DataLoader built once on it keeps its persistent workers.

        With scores="training": ``epoch_sampler(table=table)`` once; the returned sampler
        re-selects from the table at each ``set_epoch`` (misclassified, stale and never-seen
        samples, correct ones with probability keep_correct, at least batch_size samples while
        the fallback is on).
        """
        if self.mode != "epoch":
            raise RuntimeError("epoch_sampler() is for mode='epoch'; use batches() in mode='batch'")
        if self.scores == "training":
            if table is None or model is not None or loader is not None:
                raise TypeError("with scores='training', call epoch_sampler(table=score_table) (no model, no loader)")
            return TableSampler(table, epochs=1, rule="mismatch", prune=1.0 - self.keep_correct, anneal=0.0,
                                staleness=self.staleness, reweight=False,
                                min_size=self.batch_size if self.fallback_after is not None else 0, seed=self.seed)
        if table is not None or model is None or loader is None:
            raise TypeError("with scores='forward', call epoch_sampler(model, loader[, device]) (no table)")
        check_model(model)
        check_loader(loader)
        sequential = is_sequential(loader)
        kept, seen, size = [], 0, 0  # size: 1 + the largest dataset index seen
        for batch in loader:
            inputs, targets, indices = split_batch(batch, input_key, target_key, index_key)
            if indices is None:
                if not sequential:
                    raise ValueError(
                        "epoch_sampler needs each sample's dataset index, and this loader yields none and is not a "
                        "sequential DataLoader (a shuffled loader's positions are not indices): wrap the dataset, "
                        "DataLoader(dsampling_ext.IndexedDataset(dataset), ...), to yield (inputs, targets, indices)")
                indices = torch.arange(seen, seen + targets.shape[0])
            indices = indices.cpu().to(torch.int64)
            if targets.shape[0] == 0:
                continue
            logits = self._forward(model, inputs, device)
            _, kept_rows, count = ops.argmax_mismatch(logits, targets.to(logits.device), self.margin)
            kept.append(indices[kept_rows[: int(count)].cpu()])
            seen += targets.shape[0]
            size = max(size, int(indices.max()) + 1 if indices.numel() else 0)
        indices = torch.cat(kept) if kept else torch.zeros(0, dtype=torch.int64)
        self.seen += seen
        self.kept += indices.numel()
        if distributed.active():  # each rank filtered its shard: the epoch's set is their union
            indices = torch.unique(distributed.all_gather_cat(indices)[0])
            size = -distributed.all_min(-size)
        if self.fallback_after is not None and indices.numel() < self.batch_size:
            taken = torch.zeros(size, dtype=torch.bool)
            taken[indices] = True
            fill = self._random_fill(taken, self.batch_size - indices.numel()).nonzero().flatten()
            self.fallback_filled += fill.numel()
            indices = torch.cat([indices, fill])
        if self._epoch_sampler is None:
            self._epoch_sampler = IndexSubsetSampler(indices.sort().values, shuffle=True, seed=self.seed, epoch=self.epoch)
        else:  # the same sampler every epoch, updated in place: a DataLoader built once keeps its workers
            self._epoch_sampler.set_indices(indices.sort().values)
            self._epoch_sampler.set_epoch(self.epoch)
        return self._epoch_sampler

    def state_dict(self) -> dict:
        return dict(config=repr(self), epoch=self.epoch, seen=self.seen, kept=self.kept,
                    fallback_filled=self.fallback_filled, raw_batches_waiting=self.raw_batches_waiting,
                    draws=self.draws, position=self.position, steps=self.steps,
                    accumulator=self.accumulator.state_dict())

    def load_state_dict(self, state: dict) -> None:
        if state["config"] != repr(self):
            raise ValueError(f"state was saved by {state['config']}, not by {self!r}")
        for key in ("epoch", "seen", "kept", "fallback_filled", "raw_batches_waiting", "draws", "position", "steps"):
            setattr(self, key, state[key])
        self.accumulator.load_state_dict(state["accumulator"])
