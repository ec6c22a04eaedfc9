"""Optional stage timing for the library's training-loop helpers (how the overhead is measured)."""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager, nullcontext
from typing import ContextManager, Iterator, Optional

__all__ = ["StageTimer"]


class StageTimer:
    """Wall-clock seconds per named stage, summed over calls.

    Pass one as ``timer=`` to :func:`dsampling_ext.selective_batches` or
    :meth:`dsampling_ext.MisclassifiedFilter.batches`; they time "selection_forward" (the
    no-grad forward that scores samples) and "select" (the library's selection and batching).
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start


def stage(timer: Optional[StageTimer], name: str) -> ContextManager:
    return timer.stage(name) if timer is not None else nullcontext()
