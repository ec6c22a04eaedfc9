"""Speed targets that benchmark modules declare and conftest checks after the run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """median(group, impl) <= max_ratio * median(group, baseline)."""

    group: str
    impl: str
    baseline: str
    max_ratio: float
    why: str


TARGETS: list[Target] = []
#: Medians a benchmark measured itself, by (group, impl), in seconds: rows of benchmarks that
#: interleave two loops in one timed run, which pytest-benchmark's one-function rows cannot hold.
MEASURED: dict[tuple[str, str], float] = {}


def target(group: str, impl: str, baseline: str, max_ratio: float, why: str) -> None:
    TARGETS.append(Target(group, impl, baseline, max_ratio, why))


def measured(group: str, impl: str, median_seconds: float) -> None:
    MEASURED[(group, impl)] = median_seconds
