"""Argument checks shared by the Python API: each error names the argument and what it got.

Integers are taken through ``operator.index`` (so numpy and torch integer scalars work, floats
and bools do not) and numbers through ``numbers.Real`` (numpy floats work). A value of the wrong
type is a TypeError, a value out of range a ValueError; both are raised at construction, not at
first use.
"""

from __future__ import annotations

import math
import numbers
import operator

import torch

#: Seeds are 64-bit Philox keys: any int in [-2**63, 2**64) (negative ones are their two's complement).
SEED_RANGE = (-(2**63), 2**64)


def _type_name(value) -> str:
    return type(value).__name__


def as_int(name: str, value) -> int:
    """``value`` as a Python int (numpy/torch integer scalars too); TypeError naming ``name`` otherwise."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got bool")
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_floating_point():
        return int(value)
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {_type_name(value)} {value!r}") from None


def require_int(name: str, value, low: int, high: float = math.inf, *, what: str = "an int") -> int:
    value = as_int(name, value)
    if not low <= value <= high:
        bound = f">= {low}" if high == math.inf else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {what} {bound}, got {value!r}")
    return value


def require_number(name: str, value, low: float, high: float = math.inf, *, high_open: bool = False,
                   what: str = "a number", why: str = "") -> float:
    """``value`` as a float in [low, high] (or [low, high) with ``high_open``); ``why`` explains
    the range in the error."""
    if isinstance(value, torch.Tensor) and value.dim() == 0 and value.dtype != torch.bool:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {what}, got {_type_name(value)} {value!r}")
    value = float(value)
    if math.isnan(value) or not low <= value <= high or (high_open and value == high):
        reason = f" ({why})" if why else ""
        raise ValueError(f"{name} must be {what} in [{low:g}, {high:g}{')' if high_open else ']'}{reason}, got {value!r}")
    return value


def require_index_range(name: str, indices: torch.Tensor, n: int) -> None:
    """ValueError unless every value of an integer tensor is in [0, n). Reads the min and max
    back: callers that must not sync with the host check CPU tensors only."""
    if indices.numel():
        low, high = (int(v) for v in torch.aminmax(indices))
        if low < 0 or high >= n:
            raise ValueError(f"{name} must be in [0, {n}), got {low if low < 0 else high}, range [{low}, {high}]")


def require_seed(seed, name: str = "seed") -> int:
    seed = as_int(name, seed)
    if not SEED_RANGE[0] <= seed < SEED_RANGE[1]:
        raise ValueError(f"{name} must fit in 64 bits (an int in [-2**63, 2**64)), got {seed}")
    return seed


def require_threshold(threshold) -> float:
    """A PMF threshold: in [0, 1), since no bin holds more than all of the values."""
    return require_number("threshold", threshold, 0.0, 1.0, high_open=True,
                          why="a PMF threshold of 1 or more selects nothing")


def rule_parameters(rule: str, given: dict, defaults: dict) -> dict:
    """A rule's own parameters (``defaults``: name -> default) with the values given filled in.
    Every parameter given (not None) that the rule does not use is a ValueError naming it."""
    unused = [name for name, value in given.items() if value is not None and name not in defaults]
    if unused:
        one = len(unused) == 1
        raise ValueError(f"{', '.join(unused)} {'is' if one else 'are'} not used by rule={rule!r} (its parameters: "
                         f"{', '.join(defaults) or 'none'}); leave {'it' if one else 'them'} out")
    return {name: default if given.get(name) is None else given[name] for name, default in defaults.items()}


def require_epoch(epoch) -> int:
    """An epoch for ``set_epoch``: a non-negative int."""
    return require_int("epoch", epoch, 0)
