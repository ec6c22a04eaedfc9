"""Loss histograms with numpy.histogram semantics, and the fused ADONIS / Selective-Backprop
selection step: wrappers and fakes."""

from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from .._validate import require_number, require_threshold
from ._common import LOSS_DTYPES, _as_int64, _bin_rule, _check_device, _check_tensor, _choice, bin_count


def loss_histogram(
    values: Tensor,
    bins: Union[int, str] = "sturges",
    range: Optional[Sequence[float]] = None,
) -> tuple[Tensor, Tensor]:
    """Histogram of ``values`` with exactly ``numpy.histogram``'s counts and edges.

    Edges are ``linspace(min, max, k + 1)`` (or over ``range``); when min == max numpy's
    ``[min - 0.5, max + 0.5]`` is used. A value v is in bin j iff ``edges[j] <= v < edges[j+1]``,
    the last bin also holding ``v == edges[k]``; values outside the edges are not counted.
    Edges are computed in the dtype of ``values`` as numpy does, so float16 input gets float16
    edges.

    Args:
        values (Tensor[...]): float16, bfloat16, float32 or float64 values, non-empty, finite
            unless ``range`` is given; any shape and strides (flattened).
        bins: a bin count ``>= 1``, or a rule as numpy applies it: ``"sturges"`` (default,
            width = ptp / (log2 n + 1)), ``"sqrt"`` (ptp / sqrt n) or ``"rice"``
            (ptp / (2 n^(1/3))), on the n values inside ``range``, and ceil((max - min) / width)
            bins over the range (1 when the width is 0: constant data). A rule reads the data's
            range back: one host sync on CUDA (an int count needs none).
        range: optional ``(min, max)`` finite bounds with ``min <= max``. As in numpy, bounds
            that are numpy float scalars or 0-d tensors of a wider dtype widen the edges' dtype.

    Returns:
        (counts, edges): Tensor[k] int64 and Tensor[k + 1] of the dtype of ``values``.

        With ``range``, NaN and ±Inf values lie outside it and are not counted (numpy's
        behaviour), on both devices.

    Raises:
        TypeError: for an argument of the wrong type.
        ValueError: for an argument of the wrong value.
        RuntimeError: for NaN/Inf values without a ``range``, or for ``bins`` that leave a bin no
            width in this dtype (numpy's "Too many bins for data range", e.g. a constant float32
            input >= 2**24, whose ±0.5 widening rounds away). On CUDA without a ``range`` these
            depend on the data and would need a host sync to raise: there the edges come back NaN
            and the counts zero. With a ``range`` CUDA raises as the CPU does (the edges depend on
            the range alone).

    Example:
        >>> counts, edges = loss_histogram(torch.tensor([0.0, 1.0, 1.0, 3.0]), bins=3)
        >>> counts
        tensor([1, 2, 1])
    """
    _check_tensor("values", values)
    if values.dtype not in LOSS_DTYPES:
        raise TypeError(f"values must be float16, bfloat16, float32 or float64, got {values.dtype}")
    if values.numel() == 0:
        raise ValueError(f"values must be non-empty, got shape {tuple(values.shape)}")
    _check_device("loss_histogram", "values", values.device)
    bin_count(bins, values.numel())  # checks the rule
    if range is not None:
        if isinstance(range, (str, bytes)) or not hasattr(range, "__len__") or len(range) != 2:
            raise ValueError(f"range must be (min, max), got {range!r}")
        # Like numpy, the edges take the promoted dtype of the values and of typed bounds (numpy
        # float scalars, 0-d tensors); Python floats adapt to the values' dtype.
        for bound in range:
            bound_dtype = _scalar_dtype(bound)
            if bound_dtype is not None and torch.promote_types(values.dtype, bound_dtype) != values.dtype:
                values = values.to(torch.promote_types(values.dtype, bound_dtype))
        lo, hi = float(range[0]), float(range[1])
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"range must be finite, got ({lo}, {hi})")
        if lo > hi:
            raise ValueError(f"range must have min <= max, got ({lo}, {hi})")
        range = [lo, hi]
    k = bins if isinstance(bins, int) else _numpy_bin_count(values, bins, range)
    if k > 2**31 - 1:  # numpy: "Maximum allowed size exceeded"
        raise ValueError(f"bins: the {bins!r} rule gives {k} bins for these values over the range (their spread "
                         "is tiny against it); pass a bin count")
    return torch.ops.dsampling.loss_histogram.default(values, k, range)


def _scalar_dtype(value) -> Optional[torch.dtype]:
    """The floating dtype a typed scalar carries (numpy float scalar or 0-d tensor), else None."""
    if isinstance(value, Tensor) and value.is_floating_point():
        return value.dtype
    if isinstance(value, np.floating) and value.dtype in _NUMPY_FLOATS:
        return _NUMPY_FLOATS[value.dtype]
    return None


_NUMPY_FLOATS = {np.dtype(np.float16): torch.float16, np.dtype(np.float32): torch.float32,
                 np.dtype(np.float64): torch.float64}


def _numpy_bin_count(values: Tensor, rule: str, range: Optional[list]) -> int:
    """numpy.histogram's bin count for a string rule: ceil((last - first) / width), with width =
    ptp / rule(n) over the n values inside the range; 1 bin when that width is 0 (constant data)
    or no value is inside. Reads the data's range back (one host sync on CUDA)."""
    if range is None:
        lo, hi = torch.aminmax(values.flatten())
        span = ptp = float(hi - lo)  # numpy subtracts in the dtype of the values
        n = values.numel()
    else:
        first, last = range
        if first == last:
            first, last = first - 0.5, last + 0.5
        span = last - first
        inside = values[(values >= first) & (values <= last)]
        n = inside.numel()
        if n == 0:
            return 1
        lo, hi = torch.aminmax(inside)
        ptp = float(hi - lo)
    if not math.isfinite(ptp):
        raise RuntimeError("loss_histogram: values must be finite")
    denominator = {"sturges": math.log2(n) + 1.0, "sqrt": math.sqrt(n), "rice": 2.0 * n ** (1.0 / 3)}[rule]
    width = ptp / denominator
    return math.ceil(span / width) if width else 1


SELECT_RULES = {"pmf": 0, "cdf": 1}
CLIP_MODES = {None: 0, "clamp": 1, "drop": 2}
KEEP_MODES = {"bernoulli": 0, "fraction": 1, "top": 2}
MAX_HISTORY = 65536
MAX_SELECT_BINS = 2048
_HISTOGRAM_SELECT = torch.ops.dsampling.histogram_select.default  # looked up once: it is called every step


def histogram_select(
    history: Tensor,
    state: Tensor,
    losses: Tensor,
    *,
    rule: str = "pmf",
    bins: Union[int, str] = "sturges",
    threshold: float = 0.1,
    clip_sigma: Optional[float] = 1.0,
    clip: Optional[str] = "clamp",
    keep_fraction: float = 0.3,
    keep: str = "bernoulli",
    beta: float = 2.0,
    skip_nonfinite: bool = False,
    seed: int = 0,
    offset: int = 0,
    keys: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor]:
    """One fused ADONIS / Selective-Backprop selection step (mutates ``history`` and ``state``).

    In one call (one launch of one block on CUDA, no host sync): append ``losses`` to the
    ring-buffer ``history``; compute the history's mean and population sd and clip it to
    mean -+ ``clip_sigma``·sd (``clip="clamp"`` clamps, ``"drop"`` ignores values outside and gives
    outside batch losses p = 0); then

    * ``rule="pmf"`` (ADONIS): histogram the clipped history (``bins`` rule on its size n,
      numpy.histogram float64 edges) and set p_i = count[bin(l_i)] / n; a candidate has
      p_i > ``threshold``; ``keep="bernoulli"`` keeps each candidate with probability
      ``keep_fraction``, ``"fraction"`` keeps exactly ceil(keep_fraction * #candidates) random
      candidates, ``"top"`` the ceil(keep_fraction * #candidates) with the highest p;
    * ``rule="cdf"`` (Selective-Backprop): p_i = percentileofscore(H, l_i, kind="rank")/100
      raised to ``beta``, kept with probability p_i.

    Uniforms are Philox draws keyed by (``seed``, ``offset``, ``keys[i]`` or i), so CPU and CUDA
    return identical masks and p, with one exception: ``rule="cdf"`` with a ``beta`` that is not a
    whole number up to 64 raises the percentile with ``pow``, whose last bit may differ between the
    CPU and CUDA math libraries; the two devices then agree on p to a few ulps, and on keep except
    for a draw that falls between the two values of p.

    Args:
        history (Tensor[capacity]): float32 or float64 ring buffer, 1 <= capacity <= 65536.
        state (Tensor[2]): int64 (length, write position) of the ring buffer; start from zeros.
        losses (Tensor[B]): per-sample losses, the dtype of ``history``.
        keys (Tensor[B], optional): int64 dataset indices that key the random draws.
        skip_nonfinite: ignore NaN/Inf losses (not appended, p = 0, not kept) instead of raising.
            On CUDA they are always skipped, since raising would need a host sync.

    Returns:
        (keep, p): Tensor[B] bool and Tensor[B] float64.
    """
    if not (isinstance(history, Tensor) and isinstance(state, Tensor) and isinstance(losses, Tensor)):
        for name, value in (("history", history), ("state", state), ("losses", losses)):
            _check_tensor(name, value)
    if losses.is_cuda:
        _check_device("histogram_select", "losses", losses.device)
    dtype = history.dtype
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"history must be float32 or float64, got {dtype}")
    if losses.dtype != dtype:
        raise TypeError(f"losses must have the dtype of history ({dtype}), got {losses.dtype}")
    options = _select_options(rule, bins, threshold, clip_sigma, clip, keep_fraction, keep, beta, skip_nonfinite)
    return _histogram_select(history, state, losses, options, seed, offset, keys)


class SelectOptions(NamedTuple):
    """histogram_select's options as the op takes them, checked (``*options`` in schema order)."""

    rule: int
    bin_rule: int
    bins: int
    threshold: float
    clip_sigma: float
    clip: int
    keep_fraction: float
    keep: int
    beta: float
    skip_nonfinite: bool


def _select_options(rule, bins, threshold, clip_sigma, clip, keep_fraction, keep, beta,
                    skip_nonfinite) -> SelectOptions:
    """histogram_select's options as the op takes them; ValueError/TypeError naming a bad one."""
    rule_id = _choice("rule", rule, SELECT_RULES)
    clip_id = _choice("clip", clip if clip_sigma is not None else None, CLIP_MODES)
    keep_id = _choice("keep", keep, KEEP_MODES)
    if rule == "cdf" and keep != "bernoulli":
        raise ValueError(f"keep must be 'bernoulli' with rule='cdf' (Selective-Backprop draws Bernoulli(p)), got {keep!r}")
    bin_rule, fixed = _bin_rule(bins, MAX_SELECT_BINS)
    threshold = require_threshold(threshold)  # a PMF threshold of 1 or more selects nothing
    keep_fraction = require_number("keep_fraction", keep_fraction, 0.0, 1.0)
    beta = require_number("beta", beta, 0.0)
    sigma = 0.0 if clip_sigma is None else require_number("clip_sigma", clip_sigma, 0.0)
    return SelectOptions(rule_id, bin_rule, fixed, threshold, sigma, clip_id, keep_fraction, keep_id, beta,
                         bool(skip_nonfinite))


def _histogram_select(history: Tensor, state: Tensor, losses: Tensor, options: SelectOptions, seed: int, offset: int,
                      keys: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """The op call behind histogram_select, with ``options`` from _select_options (so that a
    caller with fixed options, such as LossHistogramSelector, checks them once)."""
    return _HISTOGRAM_SELECT(history, state, losses, *options, _as_int64(seed, "seed"), _as_int64(offset, "offset"), keys)
