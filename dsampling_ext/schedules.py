"""Learning-rate schedules driven by training progress (epochs done, fractional), not step counts.

Samplers and selectors of this library change the number of optimizer steps per epoch (pruning
varies it every epoch), so a scheduler built from ``epochs * len(loader)`` steps ends early or
never anneals. :class:`ProgressLR` sets the learning rate from the progress through the run,
``epoch + (step + 1) / steps_in_epoch``, so every method ends its schedule at the end of its
last epoch, whatever its steps.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Union

import torch
from torch.optim.lr_scheduler import LRScheduler

from ._validate import require_int, require_number

__all__ = ["ProgressLR", "ProgressScheduler", "SelectionWindow"]

SCHEDULES = ("cosine", "linear", "constant")


class ProgressLR:
    """Set each parameter group's lr to ``base_lr * factor(progress / epochs)``.

    ``schedule="cosine"`` (default): factor(t) = min_factor + (1 - min_factor) (1 + cos(pi t)) / 2,
    after a linear warm-up over the first ``warmup`` epochs; ``"linear"`` decays linearly;
    ``"constant"`` keeps base_lr; a callable maps t in [0, 1] to the factor.

    Call :meth:`step` after each optimizer step with the progress in epochs; here the epochs
    have 8, 4 and 2 steps, and the cosine still ends at 0 with the last one:

        >>> import torch, dsampling_ext
        >>> optimizer = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
        >>> schedule = dsampling_ext.ProgressLR(optimizer, epochs=3)
        >>> for epoch, steps in enumerate([8, 4, 2]):       # len(loader), known at the epoch's start
        ...     for i in range(steps):
        ...         optimizer.step()
        ...         schedule.step(epoch + (i + 1) / steps)
        ...     print(f"{optimizer.param_groups[0]['lr']:.4f}")
        0.0750
        0.0250
        0.0000

    Args:
        optimizer: any torch optimizer; its groups' current lr become the base lrs.
        epochs: the run's length in epochs (progress at its end).
        schedule: "cosine", "linear", "constant" or a callable factor(t).
        warmup: epochs of linear warm-up from 0 (default 0).
        min_factor: the factor at the end (cosine and linear), in [0, 1].
    """

    def __init__(self, optimizer: torch.optim.Optimizer, epochs: int,
                 schedule: Union[str, Callable[[float], float]] = "cosine", warmup: float = 0.0,
                 min_factor: float = 0.0):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.epochs = require_int("epochs", epochs, 1)
        if not callable(schedule) and schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES} or a callable, got {schedule!r}")
        self.schedule = schedule
        self.warmup = require_number("warmup", warmup, 0.0, float(epochs))
        self.min_factor = require_number("min_factor", min_factor, 0.0, 1.0)
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.progress = 0.0
        self.step(0.0)

    def factor(self, progress: float) -> float:
        """The lr factor at ``progress`` epochs."""
        if self.warmup > 0 and progress < self.warmup:
            return progress / self.warmup
        t = min(max(progress / self.epochs, 0.0), 1.0)
        if callable(self.schedule):
            return float(self.schedule(t))
        if self.schedule == "constant":
            return 1.0
        decay = (1.0 + math.cos(math.pi * t)) / 2.0 if self.schedule == "cosine" else 1.0 - t
        return self.min_factor + (1.0 - self.min_factor) * decay

    def step(self, progress: float) -> None:
        """Set the learning rates for ``progress`` epochs of training done."""
        self.progress = require_number("progress", progress, 0.0)
        f = self.factor(self.progress)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * f

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return dict(base_lrs=list(self.base_lrs), progress=self.progress)

    def load_state_dict(self, state: dict) -> None:
        self.base_lrs = list(state["base_lrs"])
        self.step(state["progress"])


class ProgressScheduler(LRScheduler):
    """:class:`~dsampling_ext.ProgressLR` as an ``LRScheduler``: ``step()`` with no argument.

    For frameworks that call ``scheduler.step()`` themselves after each optimizer step (Lightning,
    the Hugging Face Trainer). Each step sets the learning rate for ``progress()`` epochs of
    training done (the integrations' ``progress``), so the schedule ends with the last epoch
    however many steps the epochs take.

    Args:
        optimizer: the optimizer; its groups' current lr are the base lrs.
        epochs: the run's length in epochs.
        progress: a callable returning the progress in epochs.
        schedule, warmup, min_factor: as in ProgressLR.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, epochs: int, progress: Callable[[], float],
                 schedule: Union[str, Callable[[float], float]] = "cosine", warmup: float = 0.0,
                 min_factor: float = 0.0):
        if not callable(progress):
            raise TypeError(f"progress must be a callable returning the epochs done, got {type(progress).__name__}")
        self.progress_lr = ProgressLR(optimizer, epochs, schedule, warmup, min_factor)
        self.progress = progress
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        self.progress_lr.step(self.progress())
        return self.progress_lr.get_last_lr()

    def state_dict(self) -> dict:
        return self.progress_lr.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self.progress_lr.load_state_dict(state_dict)
        self._last_lr = self.progress_lr.get_last_lr()


class SelectionWindow:
    """When a per-batch selector selects: Composer's SelectiveBackprop ``start``, ``end`` and ``interval``.

    Selection runs in the epochs with ``start <= epoch / epochs < end`` and, within them, on
    every ``interval``-th batch (counting every batch the selector is given, from the start of
    the run); other batches train in full, with no selection forward. The defaults (0, 1, 1)
    select on every batch and need no ``epochs``.

    Args:
        start, end: fractions of the run, 0 <= start < end <= 1.
        interval: select on one batch in ``interval``, >= 1.
        epochs: the run's length in epochs; needed when start > 0 or end < 1.
    """

    def __init__(self, start: float = 0.0, end: float = 1.0, interval: int = 1, epochs: Optional[int] = None):
        self.start = require_number("start", start, 0.0, 1.0, high_open=True)
        self.end = require_number("end", end, 0.0, 1.0)
        if self.end <= self.start:
            raise ValueError(f"end must be above start ({self.start}), got {self.end} (selection would never run)")
        self.interval = require_int("interval", interval, 1)
        self.epochs = None if epochs is None else require_int("epochs", epochs, 1)
        if self.epochs is None and (self.start > 0.0 or self.end < 1.0):
            raise ValueError("epochs must be given with start/end: they are fractions of the run's epochs")

    def __repr__(self) -> str:
        return f"start={self.start}, end={self.end}, interval={self.interval}, epochs={self.epochs}"

    def selects(self, epoch: int, step: int) -> bool:
        """Whether batch ``step`` (counted from the run's start) of ``epoch`` is selected."""
        if self.epochs is not None and not self.start <= epoch / self.epochs < self.end:
            return False
        return step % self.interval == 0
