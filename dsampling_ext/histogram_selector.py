"""ADONIS loss-histogram sampling and Selective-Backprop (SPEC section 2).

ADONIS: Lightweight and Elegant Data Reduction Strategies for Training Acceleration of CNNs,
Mathematics 11(14):3120, 2023, Alg. 1 with the sigma-clipping and alpha-selection of its text.
Selective-Backprop: Jiang et al., "Accelerating Deep Learning by Focusing on the Biggest
Losers", 2019 (rule="cdf").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Callable, Iterable, Iterator, Optional, Union

import torch
from torch import Tensor, nn
from torch.utils import _pytree as pytree

from . import distributed, ops
from ._validate import require_epoch, require_index_range, require_int, require_number, require_seed, rule_parameters
from .accumulate import BatchAccumulator
from .batches import batches_from, check_loader, check_model, skip_empty, split_batch
from .schedules import SelectionWindow
from .scores import check_score_scale, scoring_forward
from .timing import StageTimer, stage

__all__ = ["LossCache", "LossHistogramSelector", "selective_batches"]


#: Each rule's own parameters and their defaults (ADONIS's for "pmf", Selective-Backprop's for "cdf").
_RULE_PARAMS = {
    "pmf": dict(bins="sturges", threshold=0.1, keep_fraction=0.3, keep="bernoulli"),
    "cdf": dict(beta=2.0),
}


class LossHistogramSelector:
    """Choose which samples of a forward batch get a backward pass, from their losses.

    Defaults reproduce ADONIS (seed 003): a history of the last 512 losses, clipped at
    mean -+ 1 sd (clamped), Sturges bins, p = the PMF of the sample's loss bin, candidates
    p > 0.1 (the paper's Table A2 says 0.12, its Appendix B calls 0.1 optimal), each kept with
    probability 0.3, after 1 warm-up epoch (the paper gives no default; the SB code primes with
    one epoch). ``rule="cdf"`` is Selective-Backprop: p = (percentile of the loss in the history)
    ** beta, kept with probability p; use :meth:`selective_backprop` for its defaults
    (history 1024, beta 2, no clipping).

    Call :meth:`set_epoch` at the start of each epoch (warm-up and the loss cache count epochs),
    then :meth:`select` on each forward batch's per-sample losses. The history lives on the
    device of the losses and moves with them; state_dict() / load_state_dict() resume exactly.

    Parameters a rule does not use must be left out (None): ``bins``, ``threshold``,
    ``keep_fraction`` and ``keep`` belong to "pmf", ``beta`` to "cdf"; giving one to the other
    rule is a ValueError, not a silently ignored value.

    Args:
        history: length of the loss history (ring buffer), 1..65536.
        bins: "pmf": "sturges" (default), "sqrt", "rice" (on the clipped history's size) or an int.
        clip_sigma: clip at mean -+ clip_sigma * sd of the history (ddof 0); None turns clipping off.
        clip: "clamp" (default) clamps history and batch losses to the bounds; "drop" ignores
            history values outside them and gives batch losses outside them p = 0.
        threshold: "pmf": PMF threshold theta in [0, 1) (default 0.1); a sample is a candidate
            iff p > threshold.
        keep_fraction: "pmf": alpha in (0, 1], the share of candidates kept (default 0.3).
        keep: "pmf": "bernoulli" (default: each candidate with probability alpha), "fraction"
            (exactly ceil(alpha * #candidates) random candidates) or "top" (the ceil(alpha * #candidates) with
            highest p).
        rule: "pmf" (ADONIS) or "cdf" (Selective-Backprop).
        beta: "cdf": the exponent, > 0 (default 2).
        warmup_epochs: omega, epochs of ordinary training (every sample kept) before selecting.
        staleness: eta, epochs a cached loss stays usable (see :class:`LossCache`).
        seed: seed of the Philox draws.
        nan: "error" (default) raises on NaN/Inf losses; "ignore" leaves them out of the history
            and never keeps them.
        start, end, interval, epochs: Composer's SelectiveBackprop window: select only in the
            epochs with start <= epoch / epochs < end, and there on every interval-th batch;
            the other batches are kept whole, with no selection forward (see
            :class:`~dsampling_ext.schedules.SelectionWindow`). ``epochs`` (the run's length) is
            needed with start > 0 or end < 1.
    """

    def __init__(
        self,
        history: int = 512,
        bins: Union[int, str, None] = None,
        clip_sigma: Optional[float] = 1.0,
        clip: str = "clamp",
        threshold: Optional[float] = None,
        keep_fraction: Optional[float] = None,
        keep: Optional[str] = None,
        rule: str = "pmf",
        beta: Optional[float] = None,
        warmup_epochs: int = 1,
        staleness: int = 1,
        seed: int = 0,
        nan: str = "error",
        start: float = 0.0,
        end: float = 1.0,
        interval: int = 1,
        epochs: Optional[int] = None,
    ):
        self.history = require_int("history", history, 1)
        if history > ops.MAX_HISTORY:
            raise ValueError(f"history must be at most {ops.MAX_HISTORY}, got {history}")
        ops._choice("rule", rule, ops.SELECT_RULES)
        if rule == "cdf" and keep is not None and keep != "bernoulli":
            raise ValueError(f"keep must be 'bernoulli' with rule='cdf' (Selective-Backprop draws Bernoulli(p)), "
                             f"got {keep!r}")
        given = dict(bins=bins, threshold=threshold, keep_fraction=keep_fraction, keep=keep, beta=beta)
        own = rule_parameters(rule, given, _RULE_PARAMS[rule])
        self.rule = rule
        self.clip_sigma = None if clip_sigma is None else require_number("clip_sigma", clip_sigma, 0.0)
        ops._choice("clip", clip, {"clamp": 1, "drop": 2})
        self.clip = clip
        self.warmup_epochs = require_int("warmup_epochs", warmup_epochs, 0)
        self.staleness = require_int("staleness", staleness, 1)
        self.seed = require_seed(seed)
        ops._choice("nan", nan, {"error": 0, "ignore": 1})
        self.nan = nan
        self.window = SelectionWindow(start, end, interval, epochs)
        self.steps = 0  # batches given to select() (or passed over by selective_batches) since the start
        # The op's options, checked once (the other rule's slots get its defaults, which the op ignores).
        op = {**_RULE_PARAMS["pmf"], **_RULE_PARAMS["cdf"], **own}
        self._options = ops._select_options(rule, op["bins"], op["threshold"], clip_sigma, clip, op["keep_fraction"],
                                            op["keep"], op["beta"], nan == "ignore")
        # Values that make the method a silent no-op (nothing ever kept, or everything) are errors.
        if rule == "pmf" and self._options.keep_fraction == 0.0:
            raise ValueError("keep_fraction must be in (0, 1], got 0.0 (no candidate would ever be kept)")
        if rule == "cdf" and not 0.0 < self._options.beta < math.inf:
            raise ValueError(f"beta must be a finite number > 0, got {own['beta']!r} (beta=0 keeps every sample)")
        # The rule's own parameters as checked (floats), None for the other rule's.
        checked = dict(op, threshold=self._options.threshold, keep_fraction=self._options.keep_fraction,
                       beta=self._options.beta)
        for name in given:
            setattr(self, name, checked[name] if name in own else None)
        self.epoch = 0
        self.calls = 0  # selection steps so far: the Philox offset of the next one
        self.position = 0  # raw batches selective_batches consumed this epoch (0 once it ran to its end)
        self._history: Optional[Tensor] = None
        self._state: Optional[Tensor] = None
        self.last_p: Optional[Tensor] = None
        self._nonfinite: Optional[Tensor] = None  # NaN/Inf losses counted on the device, read by set_epoch

    @classmethod
    def selective_backprop(cls, history: int = 1024, beta: float = 2.0, **kwargs) -> "LossHistogramSelector":
        """Selective-Backprop's defaults: CDF rule, history 1024, beta 2, no clipping."""
        kwargs.setdefault("clip_sigma", None)
        return cls(history=history, beta=beta, rule="cdf", **kwargs)

    def __repr__(self) -> str:
        rule_params = ", ".join(f"{k}={getattr(self, k)!r}" for k in _RULE_PARAMS[self.rule])
        return (f"LossHistogramSelector(rule={self.rule!r}, history={self.history}, {rule_params}, "
                f"clip_sigma={self.clip_sigma}, clip={self.clip!r}, warmup_epochs={self.warmup_epochs}, "
                f"staleness={self.staleness}, seed={self.seed}, {self.window!r})")

    def set_epoch(self, epoch: int) -> None:
        """Set the current epoch (0-based), as with DistributedSampler.

        With ``nan="error"``, also raises if :meth:`select` saw NaN/Inf losses that it could not
        refuse on the spot without a host sync (during warm-up, and on CUDA): one sync per epoch.
        """
        epoch = require_epoch(epoch)
        if epoch != self.epoch:
            self.position = 0
        self.epoch = epoch
        if self._nonfinite is not None:
            bad, self._nonfinite = int(self._nonfinite), None
            if bad:
                raise ValueError(f"losses must be finite: select() was given {bad} NaN/Inf losses since the last "
                                 "set_epoch (warm-up or CUDA, where they are counted on the device and skipped); "
                                 "nan='ignore' allows them")

    def _count_nonfinite(self, losses: Tensor) -> None:
        """Count NaN/Inf losses on their device (no host sync); set_epoch reads the count."""
        bad = (~torch.isfinite(losses)).sum()
        self._nonfinite = bad if self._nonfinite is None else self._nonfinite + bad

    @property
    def in_warmup(self) -> bool:
        return self.epoch < self.warmup_epochs

    @property
    def selects_next(self) -> bool:
        """Whether the next batch is selected (not warm-up, inside the start/end/interval window)."""
        return not self.in_warmup and self.window.selects(self.epoch, self.steps)

    @property
    def loss_history(self) -> Optional[Tensor]:
        """The current history values (a copy, oldest first), or None before the first selection."""
        if self._history is None:
            return None
        length, pos = (int(v) for v in self._state.tolist())
        if length < self.history:
            return self._history[:length].clone()
        return torch.cat([self._history[pos:], self._history[:pos]])

    def select(self, losses: Tensor, indices: Optional[Tensor] = None) -> Tensor:
        """Keep mask for a forward batch.

        Args:
            losses (Tensor[B]): per-sample losses (e.g. ``cross_entropy(..., reduction="none")``),
                float16/bfloat16/float32/float64; detached here.
            indices (Tensor[B], optional): dataset indices of the samples; when given, each
                sample's random draw is keyed by its index instead of its batch position (any
                int64 value is a valid key).

        Returns:
            Tensor[B] bool on the device of ``losses``. During warm-up (and outside the
            start/end/interval window) every sample is kept and the history is not touched
            (Alg. 1, lines 11-16).

        No host synchronisation: with ``nan="error"`` a NaN/Inf loss raises here on the CPU
        (the op refuses it before changing anything); during warm-up and on CUDA it is counted
        on the device and :meth:`set_epoch` raises. Traces under ``torch.compile(fullgraph=True)``.
        """
        if not isinstance(losses, Tensor):
            raise TypeError(f"losses must be a torch.Tensor, got {type(losses).__name__}")
        if losses.dim() != 1 or losses.numel() == 0:
            raise ValueError(f"losses must be a non-empty 1-D tensor, got shape {tuple(losses.shape)}")
        if losses.dtype not in ops.LOSS_DTYPES:
            raise TypeError(f"losses must be float16, bfloat16, float32 or float64, got {losses.dtype}")
        keys = None
        if indices is not None:
            if not isinstance(indices, Tensor) or indices.shape != losses.shape or indices.dtype not in (torch.int32, torch.int64):
                raise ValueError(f"indices must be an int32/int64 tensor of shape {tuple(losses.shape)}, got "
                                 f"{getattr(indices, 'dtype', type(indices))} {tuple(getattr(indices, 'shape', ()))}")
            keys = indices.to(device=losses.device, dtype=torch.int64)
        if losses.requires_grad:
            losses = losses.detach()
        selects = self.selects_next
        self.steps += 1
        if not selects:
            if self.nan == "error":
                self._count_nonfinite(losses)
            self.last_p = None
            return torch.ones(losses.shape, dtype=torch.bool, device=losses.device)
        if self._history is None:
            dtype = torch.float64 if losses.dtype == torch.float64 else torch.float32
            self._history = torch.zeros(self.history, dtype=dtype, device=losses.device)
            self._state = torch.zeros(2, dtype=torch.int64, device=losses.device)
        elif self._history.get_device() != losses.get_device():
            self._history, self._state = self._history.to(losses.device), self._state.to(losses.device)
        if losses.dtype != self._history.dtype:
            losses = losses.to(self._history.dtype)
        if self.nan == "error" and losses.is_cuda:  # the CUDA op skips NaN/Inf: raising there would need a host sync
            self._count_nonfinite(losses)
        local, lockstep = losses, distributed.active()
        if lockstep:
            # One history for all ranks: every rank selects on the whole global batch, in rank
            # order, and keeps its own slice; draws keyed by dataset index when indices are given.
            losses, start = distributed.all_gather_cat(local)
            if keys is not None:
                keys, _ = distributed.all_gather_cat(keys)
        try:
            keep, p = ops._histogram_select(self._history, self._state, losses, self._options, self.seed, self.calls, keys)
        except RuntimeError:
            if self.nan == "error":  # the CPU op refused a NaN/Inf loss before changing anything
                _require_finite(local)
            raise
        if lockstep:
            keep, p = keep[start : start + local.numel()], p[start : start + local.numel()]
        self.calls += 1
        self.last_p = p
        return keep

    def state_dict(self) -> dict:
        return dict(
            config=repr(self), epoch=self.epoch, calls=self.calls, steps=self.steps, position=self.position,
            history=None if self._history is None else self._history.clone(),
            state=None if self._state is None else self._state.clone(),
        )

    def load_state_dict(self, state: dict) -> None:
        if state["config"] != repr(self):
            raise ValueError(f"state was saved by {state['config']}, not by {self!r}")
        self.epoch, self.calls, self.steps = state["epoch"], state["calls"], state["steps"]
        self.position = state["position"]
        self._history = None if state["history"] is None else state["history"].clone()
        self._state = None if state["state"] is None else state["state"].clone()


def _require_finite(losses: Tensor) -> None:
    if not bool(torch.isfinite(losses).all()):
        bad = int((~torch.isfinite(losses)).nonzero()[0])
        raise ValueError(f"losses must be finite, got {losses[bad].item()} at index {bad} (nan='ignore' skips such losses)")


class LossCache:
    """Per-sample losses kept between epochs, keyed by dataset index (ADONIS's staleness eta).

    A sample needs a fresh selection forward when it has no cached loss or its loss is
    ``staleness`` or more epochs old; otherwise its cached loss is reused. Losses from the
    training forward refresh the cache too (``update`` with them).

    Args:
        num_samples: dataset size N (indices are 0..N-1).
        staleness: eta >= 1; 1 means a fresh forward every epoch.
        device: where the cache lives (default CPU; move with ``to``).
    """

    def __init__(self, num_samples: int, staleness: int = 1, device: Union[torch.device, str, None] = None):
        self.num_samples = require_int("num_samples", num_samples, 1)
        self.staleness = require_int("staleness", staleness, 1)
        self.losses = torch.zeros(num_samples, dtype=torch.float32, device=device)
        self.updated_epoch = torch.full((num_samples,), -1, dtype=torch.int64, device=device)

    def to(self, device) -> "LossCache":
        self.losses, self.updated_epoch = self.losses.to(device), self.updated_epoch.to(device)
        return self

    def _index(self, indices: Tensor) -> Tensor:
        if not isinstance(indices, Tensor) or indices.dim() != 1 or indices.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"indices must be a 1-D int32/int64 tensor, got {getattr(indices, 'dtype', type(indices))}")
        require_index_range("indices", indices, self.num_samples)
        return indices.to(self.losses.device, torch.int64)

    def needs_forward(self, indices: Tensor, epoch: int) -> Tensor:
        """Bool mask: which of these samples need a fresh loss in ``epoch``."""
        seen = self.updated_epoch[self._index(indices)]
        return (seen < 0) | (epoch - seen >= self.staleness)

    def update(self, indices: Tensor, losses: Tensor, epoch: int) -> None:
        idx = self._index(indices)
        if not isinstance(losses, Tensor) or losses.shape != idx.shape:
            raise ValueError(f"losses must be a tensor of shape {tuple(idx.shape)}, got {tuple(getattr(losses, 'shape', ()))}")
        self.losses[idx] = losses.detach().to(self.losses.device, self.losses.dtype)
        self.updated_epoch[idx] = epoch

    def lookup(self, indices: Tensor) -> Tensor:
        idx = self._index(indices)
        if bool((self.updated_epoch[idx] < 0).any()):
            raise ValueError("lookup of samples that have no cached loss yet; call needs_forward/update first")
        return self.losses[idx]

    def state_dict(self) -> dict:
        return dict(staleness=self.staleness, losses=self.losses.clone(), updated_epoch=self.updated_epoch.clone())

    def load_state_dict(self, state: dict) -> None:
        if state["losses"].shape != self.losses.shape or state["staleness"] != self.staleness:
            raise ValueError("state is for a cache of another size or staleness")
        self.losses = state["losses"].to(self.losses.device).clone()
        self.updated_epoch = state["updated_epoch"].to(self.losses.device).clone()


def selective_batches(
    loader: Iterable,
    model: nn.Module,
    loss_fn: Callable[[Any, Tensor], Tensor],
    selector: LossHistogramSelector,
    accumulator: BatchAccumulator,
    *,
    cache: Optional[LossCache] = None,
    selection_mode: str = "eval",
    device: Union[torch.device, str, None] = None,
    timer: Optional[StageTimer] = None,
    score_scale: Optional[float] = None,
    resume: bool = True,
    input_key: str = "input",
    target_key: str = "target",
    index_key: str = "index",
) -> Iterator[Any]:
    """One epoch of the ADONIS loop: selection forwards, then full training batches.

    For each batch of ``loader`` (``(inputs, targets)``, ``(inputs, targets, indices)``, or a
    dict with ``input_key``, ``target_key`` and optionally ``index_key``): unless in warm-up, compute the
    per-sample losses with a no-grad forward (only for samples the ``cache`` says are stale;
    ``selection_mode="eval"`` runs it in eval mode as the SB code does, "train" in train mode),
    select with ``selector``, and add the kept samples to ``accumulator``; yield every full
    batch of ``accumulator.batch_size`` samples (in the loader's form), then at the end
    what the accumulator's leftover policy releases. Pass the same accumulator every epoch for
    ``leftover="carry"`` to carry samples over. ``loss_fn`` must return per-sample losses
    (``reduction="none"``). Call ``selector.set_epoch(epoch)`` first.

    Under torch.distributed (one process per rank, each with its shard of the data), the
    selector sees every rank's losses, and each rank yields only as many batches as every rank
    can, so DDP's steps stay matched; the rest waits in the accumulator.

    The selection forward runs under ``torch.inference_mode``. It scores a whole raw batch
    of the loader at once, so a loader batch larger than ``accumulator.batch_size`` (e.g. 512
    raw for 128-sample training steps) makes it cheaper per sample.

    Mid-epoch resume: the selector counts the raw batches consumed this epoch
    (``selector.position``, in its state_dict); after ``load_state_dict`` of a run saved
    mid-epoch (with the accumulator's state), the call skips that many raw batches of ``loader``
    (which must repeat the saved epoch's order, e.g. a seeded sampler with ``set_epoch``) and
    goes on as the saved run would have. ``resume=False`` when the loader restores its own
    position (torchdata's ``StatefulDataLoader``). An epoch that ran to its end sets the position
    back to 0, and so does ``set_epoch`` with another epoch.

    Empty batches are skipped. During warm-up no selection forward runs, but the first batch
    checks with a one-sample forward that ``loss_fn`` returns per-sample losses.

    Args:
        device: where inputs go for the selection forward (default: where they are).
        timer: a :class:`StageTimer` that receives "selection_forward" and "select" times.
        score_scale: downsample 4-D image inputs by this factor in (0, 1) for the selection
            forward only (Composer's ``scale_factor``); the model must accept the smaller size.
    """
    check_loader(loader)
    check_model(model)
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable (returning per-sample losses), got {type(loss_fn).__name__}")
    if not isinstance(selector, LossHistogramSelector):
        raise TypeError(f"selector must be a LossHistogramSelector, got {type(selector).__name__}")
    if not isinstance(accumulator, BatchAccumulator):
        raise TypeError(f"accumulator must be a BatchAccumulator, got {type(accumulator).__name__}")
    if cache is not None and not isinstance(cache, LossCache):
        raise TypeError(f"cache must be a LossCache or None, got {type(cache).__name__}")
    score_scale = check_score_scale(score_scale)
    if selection_mode not in ("eval", "train"):
        raise ValueError(f"selection_mode must be 'eval' or 'train', got {selection_mode!r}")
    if cache is None and selector.staleness > 1:
        raise ValueError(f"selector.staleness={selector.staleness} needs a LossCache to keep losses between epochs; "
                         f"pass cache=LossCache(len(dataset), staleness={selector.staleness})")
    if cache is not None and cache.staleness != selector.staleness:
        raise ValueError(f"cache.staleness ({cache.staleness}) and selector.staleness ({selector.staleness}) differ")
    lockstep = distributed.active()
    if lockstep and accumulator.leftover == "flush":
        raise ValueError("leftover='flush' cannot keep data-parallel ranks in step (their last batches differ); "
                         "use 'carry' or 'drop'")
    epoch = selector.epoch
    checked = False  # loss_fn's output shape, checked once in warm-up (no selection forward there)
    if not resume:
        selector.position = 0
    for batch in batches_from(loader, selector.position, epoch):
        inputs, targets, indices = split_batch(batch, input_key, target_key, index_key)
        if cache is not None and indices is None:
            raise ValueError("a LossCache needs each sample's dataset index: wrap the dataset in "
                             "dsampling_ext.IndexedDataset so the loader yields (inputs, targets, indices)")
        if skip_empty(targets):
            continue
        size = targets.shape[0]
        if not selector.selects_next:  # warm-up, or outside the start/end/interval window: the whole batch
            if not checked:  # in eval mode: a train-mode forward of 2 samples would move BatchNorm's statistics
                first = torch.arange(size) < 2
                _selection_losses(model, loss_fn, inputs, targets, first, "eval", device, score_scale)
                checked = True
            selector.steps += 1
            keep = torch.ones(size, dtype=torch.bool)
        else:
            if cache is None:
                with stage(timer, "selection_forward"):
                    losses = _selection_losses(model, loss_fn, inputs, targets, None, selection_mode, device, score_scale)
            else:  # only the stale samples are forwarded (deciding which is a host sync)
                need = cache.needs_forward(indices, epoch).cpu()
                if bool(need.any()):
                    with stage(timer, "selection_forward"):
                        fresh = _selection_losses(model, loss_fn, inputs, targets, need, selection_mode, device,
                                                  score_scale)
                    cache.update(indices[need.to(indices.device)], fresh, epoch)
                losses = cache.lookup(indices)
            with stage(timer, "select"):
                keep = selector.select(losses, indices)
        with stage(timer, "select"):
            accumulator.add(batch if isinstance(batch, Mapping) else tuple(batch), keep)
            # Under DDP every rank trains the same number of batches: as many as the emptiest rank can.
            limit = distributed.all_min(accumulator.pending // accumulator.batch_size) if lockstep else None
        selector.position += 1
        # Taken from the accumulator one at a time, so that a checkpoint between two yields holds
        # the batches not yet trained.
        yield from accumulator.ready(limit)
    yield from accumulator.end_epoch()
    selector.position = 0  # the epoch ran to its end


def _selection_losses(model, loss_fn, inputs, targets, need: Optional[Tensor], mode: str, device, scale) -> Tensor:
    """Losses of the rows `need` selects (all when None) from a no-grad scoring forward."""
    select_rows = ((lambda t: t[need.to(t.device)] if isinstance(t, Tensor) else t)
                   if need is not None and not bool(need.all()) else (lambda t: t))
    x = pytree.tree_map(select_rows, inputs)
    y = select_rows(targets)
    y = y.to(device) if device is not None else y
    losses = scoring_forward(model, x, device=device, mode=mode, scale=scale, score_fn=lambda out: loss_fn(out, y))
    if not isinstance(losses, Tensor) or losses.shape != y.shape[:1]:
        raise ValueError(f"loss_fn must return per-sample losses of shape [{y.shape[0]}] (reduction='none'), "
                         f"got {tuple(getattr(losses, 'shape', ()))}")
    return losses
