"""Typed wrappers of the ``torch.ops.dsampling`` kernels, and their fake (meta) kernels.

Each wrapper validates its arguments (``ValueError``/``TypeError`` naming the argument) and calls
``torch.ops.dsampling.<op>.default``. The fake kernels repeat the C++ checks in
``csrc/common/checks.h`` with the same wording, so ``torch.compile`` traces the ops.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
from torch import Tensor
from torch.cuda import is_available as _cuda_available  # a name of our own: tests patch it, not Dynamo's

from ._library import load as _load_library
from ._validate import require_int

__all__ = [
    "BIN_RULES",
    "argmax_mismatch",
    "bin_count",
    "histogram_select",
    "loss_histogram",
    "partition_resample",
    "philox_uniform",
    "random_subset",
    "random_subset_",
    "table_record_",
    "table_select",
]

LOSS_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

#: Bin-count rules, numbered as in csrc/common/binning.h.
BIN_RULES = {"sturges": 1, "sqrt": 2, "rice": 3}


def bin_count(rule: Union[int, str], n: int) -> int:
    """Number of histogram bins a rule gives for ``n`` values (the same integers as binning.h).

    Args:
        rule: an int ``>= 1`` (returned as is), or ``"sturges"`` (ceil(log2 n) + 1), ``"sqrt"``
            (ceil(sqrt n)) or ``"rice"`` (ceil(2 n^(1/3))).
        n: number of values, ``>= 1``.
    """
    if isinstance(rule, bool) or not isinstance(rule, (int, str)):
        raise TypeError(f"bins must be an int or one of {sorted(BIN_RULES)}, got {type(rule).__name__}")
    if isinstance(rule, int):
        if not 1 <= rule <= 2**31 - 1:
            raise ValueError(f"bins must be in [1, 2**31 - 1], got {rule}")
        return rule
    if rule not in BIN_RULES:
        raise ValueError(f"bins must be an int or one of {sorted(BIN_RULES)}, got {rule!r}")
    if n < 1:
        raise ValueError(f"n must be >= 1 for the {rule!r} rule, got {n}")
    if rule == "sturges":
        return (n - 1).bit_length() + 1
    if rule == "sqrt":
        return math.isqrt(n - 1) + 1
    r = max(1, int(2.0 * n ** (1.0 / 3.0)))  # rice: smallest r with r**3 >= 8 n
    while r**3 < 8 * n:
        r += 1
    while r > 1 and (r - 1) ** 3 >= 8 * n:
        r -= 1
    return r


def _check_tensor(name: str, value) -> None:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")


#: Whether the loaded library has CUDA kernels, decided once at import: the check below runs inside
#: traced code, where Dynamo refuses a torch op returning an int (torch.ops.dsampling._cuda_version).
_CUDA_KERNELS: bool = _load_library()["cuda"]


def _check_device(op: str, name: str, device: torch.device) -> None:
    """Fail clearly when CUDA is asked for but this torch, machine or build cannot run it."""
    if device.type != "cuda":
        return
    if not _cuda_available():
        raise RuntimeError(f"{op}: {name} is on {device} but CUDA is not available to torch {torch.__version__}")
    if not _CUDA_KERNELS:
        raise RuntimeError(
            f"{op}: {name} is on {device} but dsampling_ext was built without CUDA kernels; rebuild it with "
            "a CUDA build of torch and the CUDA toolkit (DSAMPLING_FORCE_CUDA=1 pip install --no-build-isolation -e .)"
        )


def philox_uniform(
    n: int, seed: int, offset: int = 0, device: Union[torch.device, str, None] = None
) -> Tensor:
    """Float32 uniforms in [0, 1) from the Philox4x32-10 counter-based generator.

    Element ``i`` is word ``i % 4`` of the Philox block with counter
    ``(i // 4, offset)`` and key ``seed`` (each split into two 32-bit words, low first),
    keeping its top 24 bits. It depends only on ``(seed, offset, i)``, so CPU and CUDA return the
    same values, and ``philox_uniform(n, s, o)[:m] == philox_uniform(m, s, o)``.

    Args:
        n: number of values, ``>= 0``.
        seed: 64-bit key (any int in [-2**63, 2**64)).
        offset: 64-bit counter offset; use a fresh offset per draw to get independent streams.
        device: where the result lives (default: CPU).

    Returns:
        Tensor[n] float32.
    """
    for name, value in (("n", n), ("seed", seed), ("offset", offset)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    _check_device("philox_uniform", "device", device)
    out = torch.empty(n, dtype=torch.float32, device=device)
    torch.ops.dsampling.philox_fill_uniform_.default(out, _as_int64(seed, "seed"), _as_int64(offset, "offset"))
    return out


def _as_int64(value: int, name: str) -> int:
    """Reinterpret an int in [-2**63, 2**64) as a signed 64-bit schema int (same bits)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not -(2**63) <= value < 2**64:
        raise ValueError(f"{name} must fit in 64 bits, got {value}")
    return value - 2**64 if value >= 2**63 else value


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
        values (Tensor[...]): float16, bfloat16, float32 or float64 values, finite, non-empty;
            any shape and strides (flattened).
        bins: a bin count ``>= 1``, or a rule evaluated on ``values.numel()``: ``"sturges"``
            (default, ceil(log2 n) + 1), ``"sqrt"`` or ``"rice"``.
        range: optional ``(min, max)`` finite bounds with ``min <= max``.

    Returns:
        (counts, edges): Tensor[k] int64 and Tensor[k + 1] of the dtype of ``values``.

    Raises:
        TypeError / ValueError for bad arguments; RuntimeError for NaN/Inf values or a range too
        narrow for ``bins`` distinct edges in this dtype (checked on the CPU; on CUDA, where the
        check would need a host sync, NaN/Inf give NaN edges and zero counts).

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
    k = bin_count(bins, values.numel())
    if range is not None:
        if len(range) != 2:
            raise ValueError(f"range must be (min, max), got {len(range)} values")
        lo, hi = float(range[0]), float(range[1])
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"range must be finite, got ({lo}, {hi})")
        if lo > hi:
            raise ValueError(f"range must have min <= max, got ({lo}, {hi})")
        range = [lo, hi]
    return torch.ops.dsampling.loss_histogram.default(values, k, range)


SELECT_RULES = {"pmf": 0, "cdf": 1}
CLIP_MODES = {None: 0, "clamp": 1, "drop": 2}
KEEP_MODES = {"bernoulli": 0, "fraction": 1, "top": 2}
MAX_HISTORY = 65536
MAX_SELECT_BINS = 2048
_HISTOGRAM_SELECT = torch.ops.dsampling.histogram_select.default  # looked up once: it is called every step


def _choice(name: str, value, options: dict):
    if value not in options:
        raise ValueError(f"{name} must be one of {sorted(map(repr, options))}, got {value!r}")
    return options[value]


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
        ``keep_fraction``, ``"fraction"`` keeps exactly ceil(keep_fraction·|C|) random candidates,
        ``"top"`` the ceil(keep_fraction·|C|) with the highest p;
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


def _select_options(rule, bins, threshold, clip_sigma, clip, keep_fraction, keep, beta, skip_nonfinite) -> tuple:
    """histogram_select's options as the op takes them (rule id, bin rule, bins, threshold,
    clip_sigma, clip id, keep_fraction, keep id, beta, skip_nonfinite); ValueError/TypeError
    naming a bad one (the op checks the numeric ranges)."""
    rule_id = _choice("rule", rule, SELECT_RULES)
    clip_id = _choice("clip", clip if clip_sigma is not None else None, CLIP_MODES)
    keep_id = _choice("keep", keep, KEEP_MODES)
    if rule == "cdf" and keep != "bernoulli":
        raise ValueError(f"keep must be 'bernoulli' with rule='cdf' (Selective-Backprop draws Bernoulli(p)), got {keep!r}")
    if isinstance(bins, str):
        bin_rule, fixed = BIN_RULES.get(bins, -1), 1
        if bin_rule < 0:
            raise ValueError(f"bins must be an int or one of {sorted(BIN_RULES)}, got {bins!r}")
    else:
        if isinstance(bins, bool) or not isinstance(bins, int) or not 1 <= bins <= MAX_SELECT_BINS:
            raise ValueError(f"bins must be an int in [1, {MAX_SELECT_BINS}] or one of {sorted(BIN_RULES)}, got {bins!r}")
        bin_rule, fixed = 0, bins
    sigma = 0.0 if clip_sigma is None else float(clip_sigma)
    return (rule_id, bin_rule, fixed, float(threshold), sigma, clip_id, float(keep_fraction), keep_id, float(beta),
            bool(skip_nonfinite))


def _histogram_select(history: Tensor, state: Tensor, losses: Tensor, options: tuple, seed: int, offset: int,
                      keys: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """The op call behind histogram_select, with ``options`` from _select_options (so that a
    caller with fixed options, such as LossHistogramSelector, checks them once)."""
    return _HISTOGRAM_SELECT(history, state, losses, *options, _as_int64(seed, "seed"), _as_int64(offset, "offset"), keys)


def argmax_mismatch(logits: Tensor, labels: Tensor, margin: Optional[float] = None) -> tuple[Tensor, Tensor, Tensor]:
    """Which samples a classifier gets wrong, in one pass over the logits (seed 004, Alg. 7).

    Keeps row i iff ``argmax(logits[i]) != labels[i]`` (argmax as torch.argmax: the first
    maximum; NaN counts as the maximum). With ``margin``, also keeps a correctly classified row
    whose top-2 softmax gap p1 - p2 is ``<= margin`` (Alg. 6, soft accuracy), computed in float64
    as (1 - exp(z2 - z1)) / sum_j exp(z_j - z1) with the sum in one fixed order on both devices;
    a row holding NaN or +inf, or all -inf, has no gap (as torch.softmax gives NaN there). No [B]
    argmax or [B, C] softmax tensor is made, and on CUDA nothing synchronises with the host.
    Without a margin CPU and CUDA return identical results. With one, ``exp`` comes from each
    device's math library, which may round the last bit differently, so the gap may differ by a
    few ulps and a row whose gap lies that close to ``margin`` may be decided differently.

    Args:
        logits (Tensor[B, C]): float16, bfloat16, float32 or float64.
        labels (Tensor[B]): int64 or int32 in [0, C) (checked on the CPU; a device assertion on CUDA).
        margin: optional soft-accuracy margin in [0, 1].

    Returns:
        (keep, kept_indices, count): Tensor[B] bool; Tensor[B] int64 holding the kept row indices
        in increasing order, then -1; a 0-d int64 tensor with their number.
    """
    _check_tensor("logits", logits)
    _check_tensor("labels", labels)
    _check_device("argmax_mismatch", "logits", logits.device)
    if logits.dtype not in LOSS_DTYPES:
        raise TypeError(f"logits must be float16, bfloat16, float32 or float64, got {logits.dtype}")
    if labels.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"labels must be int64 or int32, got {labels.dtype}")
    if logits.dim() != 2 or logits.shape[1] < 1:
        raise ValueError(f"logits must have shape [B, C] with C >= 1, got {tuple(logits.shape)}")
    if labels.shape != logits.shape[:1]:
        raise ValueError(f"labels must have shape [{logits.shape[0]}], got {tuple(labels.shape)}")
    if margin is not None:
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0.0 <= margin <= 1.0:
            raise ValueError(f"margin must be None or a number in [0, 1], got {margin!r}")
        margin = float(margin)
    return torch.ops.dsampling.argmax_mismatch.default(logits, labels, margin)


def _check_perm(op: str, perm: Tensor) -> None:
    _check_tensor("perm", perm)
    _check_device(op, "perm", perm.device)
    if perm.dtype != torch.int64 or perm.dim() != 1 or not perm.is_contiguous():
        raise ValueError(f"perm must be a contiguous 1-D int64 tensor, got {perm.dtype} {tuple(perm.shape)}")


def _check_count(name: str, value, high: int, high_text: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise ValueError(f"{name} must be an int in [0, {high_text}] = [0, {high}], got {value!r}")
    return value


def partition_resample(perm: Tensor, size: int, k: int, seed: int = 0, offset: int = 0) -> Tensor:
    """Swap k random members of A = perm[:size] with k random members of B = perm[size:], in place.

    Dynamic training's resampling (Eq. 1 of seed 000/001): A keeps size - k random elements and
    takes k random elements of B. Partial Fisher-Yates on both sides with Philox draws keyed by
    (seed, offset, position): O(k) work, the same swaps on CPU and CUDA, |A| stays ``size`` and
    ``perm`` stays a permutation.

    Args:
        perm (Tensor[N]): contiguous int64 tensor (normally a permutation of 0..N-1), mutated.
        size: |A|, in [0, N].
        k: elements exchanged, in [0, min(size, N - size)].

    Returns:
        ``perm``.
    """
    _check_perm("partition_resample", perm)
    n = perm.numel()
    _check_count("size", size, n, "N")
    _check_count("k", k, min(size, n - size), "min(size, N - size)")
    torch.ops.dsampling.partition_resample.default(perm, size, k, _as_int64(seed, "seed"), _as_int64(offset, "offset"))
    return perm


def random_subset_(perm: Tensor, size: int, seed: int = 0, offset: int = 0) -> Tensor:
    """Partially shuffle ``perm`` in place so that ``perm[:size]`` is a uniformly random subset of
    its elements, in random order (O(size) swaps; ``size = N`` shuffles it all). Returns ``perm``."""
    _check_perm("random_subset_", perm)
    _check_count("size", size, perm.numel(), "N")
    torch.ops.dsampling.random_subset_.default(perm, size, _as_int64(seed, "seed"), _as_int64(offset, "offset"))
    return perm


def random_subset(num_samples: int, size: int, seed: int = 0, offset: int = 0,
                  device: Union[torch.device, str, None] = None) -> Tensor:
    """``size`` distinct indices drawn uniformly from ``range(num_samples)``, in random order.

    Returns:
        Tensor[size] int64 (the same values on CPU and CUDA for the same seed and offset).
    """
    require_int("num_samples", num_samples, 0)
    _check_count("size", size, num_samples, "num_samples")
    perm = torch.arange(num_samples, dtype=torch.int64, device=device)
    return random_subset_(perm, size, seed, offset)[:size].clone()


TABLE_RULES = {"mean": 0, "pmf": 1, "percentile": 2, "mismatch": 3}
#: Rules whose kept candidates get weight 1/q by default (their q is 1 - prune: bounded weights).
REWEIGHT_DEFAULT = {"mean": True, "pmf": True, "percentile": False, "mismatch": False}


def _bin_rule(bins: Union[int, str], high: int) -> tuple[int, int]:
    """(bin_rule id, fixed count) of a ``bins`` argument: a rule name or an int in [1, high]."""
    if isinstance(bins, str):
        return _choice("bins", bins, BIN_RULES), 1
    if isinstance(bins, bool) or not isinstance(bins, int) or not 1 <= bins <= high:
        raise ValueError(f"bins must be an int in [1, {high}] or one of {sorted(BIN_RULES)}, got {bins!r}")
    return 0, bins


def table_select(
    scores: Tensor,
    seen_epoch: Tensor,
    epoch: int,
    rule: str = "mean",
    *,
    prune: float = 0.5,
    staleness: int = 3,
    bins: Union[int, str] = "sturges",
    threshold: float = 0.1,
    beta: float = 2.0,
    reweight: Optional[bool] = None,
    seed: int = 0,
    offset: int = 0,
) -> tuple[Tensor, Tensor]:
    """One epoch's training set from a per-sample score table, in one call (SPEC section 8).

    Every index i is either forced (never scored: ``seen_epoch[i] < 0``; not trained for more
    than ``staleness`` epochs: ``epoch - seen_epoch[i] > staleness``; for "mismatch", of unknown
    correctness), and then kept with weight 1, or judged by the rule over the scored entries:

    * ``"mean"`` (InfoBatch, Qin et al. 2024): a candidate iff its score is below the mean of the
      scored entries (summed in a fixed order, so CPU and CUDA agree to the bit);
    * ``"pmf"`` (ADONIS's rule): the scored entries' numpy.histogram (float64, ``bins`` rule on
      their number); a candidate iff its bin holds more than ``threshold`` of them;
    * ``"percentile"`` (Selective-Backprop): every scored index is a candidate, kept with
      probability q = percentile**beta, percentile = (#(< s) + #(<= s) + [#(< s) < #(<= s)]) / 2n;
    * ``"mismatch"`` (the misclassified filter): ``scores`` is int8 correctness (1 right,
      0 wrong, -1 unknown); a right one is a candidate.

    A candidate is kept with probability q = 1 - ``prune`` (percentile: its own q) when
    u_i < q, u_i = ``philox_uniform(N, seed, offset)[i]``; with ``reweight`` a kept candidate's
    weight is 1/q, so that the expected weighted loss over the epoch is the full-data one.

    Args:
        scores (Tensor[N]): float32/float64 per-sample scores (int8 correctness for "mismatch").
        seen_epoch (Tensor[N]): int32 epoch each score was recorded in, -1 for none.
        epoch: the epoch being selected (>= 0).
        rule: "mean", "pmf", "percentile" or "mismatch".
        prune: share of the candidates dropped, in [0, 1] (not used by "percentile"; 1 drops
            every candidate, which needs ``reweight=False``).
        staleness: epochs an index may go untrained before it is forced back, >= 1.
        bins, threshold: the "pmf" histogram's bin rule (or count) and PMF threshold in [0, 1).
        beta: the "percentile" exponent (> 0).
        reweight: weights 1/q for kept candidates (default: on for "mean" and "pmf", off for
            the others; "percentile" refuses it, its 1/q being unbounded).
        seed, offset: the Philox key and counter offset (use the epoch as offset).

    Returns:
        (indices, weights): Tensor[M] int64 kept indices in increasing order, Tensor[M] float32.
        On CUDA the size M is read back once (one host sync per call; "pmf" and "percentile"
        also read the number of scored entries).
    """
    _check_tensor("scores", scores)
    _check_tensor("seen_epoch", seen_epoch)
    _check_device("table_select", "scores", scores.device)
    rule_id = _choice("rule", rule, TABLE_RULES)
    require_int("epoch", epoch, 0)
    require_int("staleness", staleness, 1)
    if isinstance(prune, bool) or not isinstance(prune, (int, float)) or not 0.0 <= prune <= 1.0:
        raise ValueError(f"prune must be a number in [0, 1], got {prune!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be a number in [0, 1) (a PMF threshold of 1 or more selects nothing), "
                         f"got {threshold!r}")
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0.0 < beta < math.inf:
        raise ValueError(f"beta must be a finite number > 0, got {beta!r}")
    if reweight is None:
        reweight = REWEIGHT_DEFAULT[rule]
    elif not isinstance(reweight, bool):
        raise TypeError(f"reweight must be a bool or None, got {type(reweight).__name__}")
    if reweight and prune == 1.0 and rule != "percentile":
        raise ValueError("reweight must be False with prune=1.0 (a kept candidate's weight would be 1/(1 - prune))")
    if reweight and rule == "percentile":
        raise ValueError("reweight must be False for rule='percentile': its keep probabilities reach 1/(2N)**beta, "
                         "so 1/q weights are unbounded")
    bin_rule, fixed = _bin_rule(bins, 65536)
    return torch.ops.dsampling.table_select.default(
        scores, seen_epoch, epoch, rule_id, float(prune), staleness, bin_rule, fixed, float(threshold), float(beta),
        reweight, _as_int64(seed, "seed"), _as_int64(offset, "offset"),
    )


def table_record_(
    scores: Tensor,
    correct: Tensor,
    seen_epoch: Tensor,
    indices: Tensor,
    losses: Tensor,
    epoch: int,
    logits: Optional[Tensor] = None,
    targets: Optional[Tensor] = None,
) -> None:
    """Write one step's per-sample losses into a score table, in place (no host sync).

    ``scores[indices] = losses``, ``seen_epoch[indices] = epoch`` and, given ``logits`` and
    ``targets``, ``correct[indices] = (argmax(logits) == targets)`` (torch.argmax's rule: first
    maximum, NaN wins). An index given twice keeps its last record on the CPU (one of them on
    CUDA).

    Args:
        scores (Tensor[N]): float32/float64 table of losses.  correct (Tensor[N]): int8.
        seen_epoch (Tensor[N]): int32.
        indices (Tensor[B]): int64/int32 dataset indices in [0, N).
        losses (Tensor[B]): finite per-sample losses, any float dtype (stored in the dtype of
            ``scores``).
        epoch: the epoch being trained, >= 0.
        logits (Tensor[B, C], optional), targets (Tensor[B], optional): int64/int32 in [0, C).

    Raises:
        RuntimeError naming the argument for indices or targets out of range and non-finite
        losses (on the CPU; on CUDA a bad index or target trips a device assertion and a
        non-finite loss leaves its entry unchanged, since raising would need a host sync).
    """
    for name, value in (("scores", scores), ("correct", correct), ("seen_epoch", seen_epoch), ("indices", indices),
                        ("losses", losses)):
        _check_tensor(name, value)
    _check_device("table_record_", "scores", scores.device)
    require_int("epoch", epoch, 0)
    torch.ops.dsampling.table_record_.default(scores, correct, seen_epoch, indices, losses, epoch, logits, targets)


# ----------------------------------------------------------------------------- fake kernels


@torch.library.register_fake("dsampling::philox_fill_uniform_")
def _philox_fill_uniform_fake(out: Tensor, seed: int, offset: int) -> None:
    torch._check(out.dtype == torch.float32, lambda: f"philox_fill_uniform_: out must be float32, got {out.dtype}")
    torch._check(
        out.dim() == 1 and out.is_contiguous(),
        lambda: f"philox_fill_uniform_: out must be a contiguous 1-D tensor, got shape {tuple(out.shape)}",
    )


@torch.library.register_fake("dsampling::_philox4x32_10")
def _philox4x32_10_fake(counter: Tensor, seed: int) -> Tensor:
    torch._check(counter.dtype == torch.int64, lambda: f"_philox4x32_10: counter must be int64, got {counter.dtype}")
    torch._check(
        counter.dim() == 2 and counter.shape[1] == 4,
        lambda: f"_philox4x32_10: counter must have shape [N, 4], got {tuple(counter.shape)}",
    )
    return torch.empty_like(counter, memory_format=torch.contiguous_format)


@torch.library.register_fake("dsampling::loss_histogram")
def _loss_histogram_fake(values: Tensor, bins: int, range: Optional[list[float]] = None) -> tuple[Tensor, Tensor]:
    torch._check(
        values.dtype in LOSS_DTYPES,
        lambda: f"loss_histogram: values must be float16, bfloat16, float32 or float64, got {values.dtype}",
    )
    torch._check(values.numel() > 0, lambda: f"loss_histogram: values must be non-empty, got shape {tuple(values.shape)}")
    torch._check(1 <= bins <= 2**31 - 1, lambda: f"loss_histogram: bins must be in [1, 2**31 - 1], got {bins}")
    if range is not None:
        torch._check(len(range) == 2, lambda: f"loss_histogram: range must be (min, max), got {len(range)} values")
        torch._check(
            math.isfinite(range[0]) and math.isfinite(range[1]),
            lambda: f"loss_histogram: range must be finite, got ({range[0]}, {range[1]})",
        )
        torch._check(range[0] <= range[1], lambda: f"loss_histogram: range must have min <= max, got ({range[0]}, {range[1]})")
    return values.new_empty(bins, dtype=torch.int64), values.new_empty(bins + 1)


@torch.library.register_fake("dsampling::histogram_select")
def _histogram_select_fake(history, state, losses, rule, bin_rule, bins, threshold, clip_sigma, clip_mode,
                           keep_fraction, keep_mode, beta, skip_nonfinite, seed, offset, keys=None):
    op = "histogram_select: "
    torch._check(history.dtype in (torch.float32, torch.float64),
                 lambda: f"{op}history must be float32 or float64, got {history.dtype}")
    torch._check(history.dim() == 1 and 1 <= history.numel() <= MAX_HISTORY,
                 lambda: f"{op}history must be a contiguous 1-D tensor of 1 to 65536 values, got shape {tuple(history.shape)}")
    torch._check(state.dtype == torch.int64 and state.shape == (2,),
                 lambda: f"{op}state must be a contiguous int64 tensor of shape [2] (length, write position)")
    torch._check(losses.dtype == history.dtype, lambda: f"{op}losses must have the dtype of history")
    torch._check(losses.dim() == 1 and losses.numel() >= 1, lambda: f"{op}losses must be a non-empty 1-D tensor")
    if keys is not None:
        torch._check(keys.dtype == torch.int64 and keys.shape == losses.shape,
                     lambda: f"{op}keys must be an int64 tensor of shape [{losses.numel()}] (one per loss)")
    torch._check(0 <= keep_fraction <= 1, lambda: f"{op}keep_fraction must be in [0, 1], got {keep_fraction}")
    return losses.new_empty(losses.shape, dtype=torch.bool), losses.new_empty(losses.shape, dtype=torch.float64)


@torch.library.register_fake("dsampling::argmax_mismatch")
def _argmax_mismatch_fake(logits: Tensor, labels: Tensor, margin: Optional[float] = None):
    op = "argmax_mismatch: "
    torch._check(logits.dtype in LOSS_DTYPES,
                 lambda: f"{op}logits must be float16, bfloat16, float32 or float64, got {logits.dtype}")
    torch._check(logits.dim() == 2, lambda: f"{op}logits must have shape [B, C] with C >= 1, got {tuple(logits.shape)}")
    torch._check(labels.dtype in (torch.int64, torch.int32), lambda: f"{op}labels must be int64 or int32, got {labels.dtype}")
    torch._check(labels.dim() == 1 and labels.shape[0] == logits.shape[0],
                 lambda: f"{op}labels must have shape [{logits.shape[0]}], got {tuple(labels.shape)}")
    rows = logits.shape[0]
    return (logits.new_empty(rows, dtype=torch.bool), logits.new_empty(rows, dtype=torch.int64),
            logits.new_empty((), dtype=torch.int64))


@torch.library.register_fake("dsampling::partition_resample")
def _partition_resample_fake(perm: Tensor, size: int, k: int, seed: int, offset: int) -> None:
    torch._check(perm.dtype == torch.int64 and perm.dim() == 1,
                 lambda: f"partition_resample: perm must be a contiguous 1-D int64 tensor, got {perm.dtype}")


@torch.library.register_fake("dsampling::random_subset_")
def _random_subset_fake(perm: Tensor, size: int, seed: int, offset: int) -> None:
    torch._check(perm.dtype == torch.int64 and perm.dim() == 1,
                 lambda: f"random_subset_: perm must be a contiguous 1-D int64 tensor, got {perm.dtype}")


def _table_tensors_fake(op: str, scores: Tensor, seen_epoch: Tensor, correctness: bool) -> None:
    if correctness:
        torch._check(scores.dtype == torch.int8, lambda: f"{op}scores must be int8 correctness (1 right, 0 wrong, "
                     f"-1 unknown) for the mismatch rule, got {scores.dtype}")
    else:
        torch._check(scores.dtype in (torch.float32, torch.float64),
                     lambda: f"{op}scores must be float32 or float64, got {scores.dtype}")
    torch._check(scores.dim() == 1, lambda: f"{op}scores must be a contiguous 1-D tensor, got shape {tuple(scores.shape)}")
    torch._check(seen_epoch.dtype == torch.int32 and seen_epoch.shape == scores.shape,
                 lambda: f"{op}seen_epoch must be a contiguous int32 tensor of shape [{scores.numel()}], got "
                         f"{seen_epoch.dtype} {tuple(seen_epoch.shape)}")


@torch.library.register_fake("dsampling::table_select")
def _table_select_fake(scores, seen_epoch, epoch, rule, prune, staleness, bin_rule, bins, threshold, beta, reweight,
                       seed, offset):
    op = "table_select: "
    torch._check(0 <= rule <= 3, lambda: f"{op}rule must be 0 (mean), 1 (pmf), 2 (percentile) or 3 (mismatch), got {rule}")
    _table_tensors_fake(op, scores, seen_epoch, rule == 3)
    torch._check(0 <= prune <= 1, lambda: f"{op}prune must be in [0, 1], got {prune}")
    torch._check(staleness >= 1, lambda: f"{op}staleness must be in [1, 2**31 - 1], got {staleness}")
    torch._check(0 <= threshold < 1, lambda: f"{op}threshold must be in [0, 1) (a PMF threshold of 1 or more selects "
                                             f"nothing), got {threshold}")
    torch._check(not (reweight and rule == 2), lambda: f"{op}reweight must be false for rule 2 (percentile)")
    kept = torch.library.get_ctx().new_dynamic_size()
    return scores.new_empty(kept, dtype=torch.int64), scores.new_empty(kept, dtype=torch.float32)


@torch.library.register_fake("dsampling::table_record_")
def _table_record_fake(scores, correct, seen_epoch, indices, losses, epoch, logits=None, targets=None) -> None:
    op = "table_record_: "
    _table_tensors_fake(op, scores, seen_epoch, False)
    torch._check(correct.dtype == torch.int8 and correct.shape == scores.shape,
                 lambda: f"{op}correct must be a contiguous int8 tensor of shape [{scores.numel()}]")
    torch._check(indices.dtype in (torch.int64, torch.int32), lambda: f"{op}indices must be int64 or int32, got {indices.dtype}")
    torch._check(losses.dim() == 1 and losses.shape == indices.shape,
                 lambda: f"{op}losses must have shape [{indices.numel()}] (one per index; reduction='none'), got "
                         f"{tuple(losses.shape)}")
    torch._check((logits is None) == (targets is None), lambda: f"{op}logits and targets must be given together")
