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


def target(group: str, impl: str, baseline: str, max_ratio: float, why: str) -> None:
    TARGETS.append(Target(group, impl, baseline, max_ratio, why))
