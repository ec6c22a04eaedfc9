"""The fused histogram_select op against the step-by-step PyTorch reference."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import dsampling_ext
from reference import HistogramSelectReference, bin_of, numpy_edges


def make_state(capacity, dtype=torch.float32, device="cpu"):
    return torch.zeros(capacity, dtype=dtype, device=device), torch.zeros(2, dtype=torch.int64, device=device)


options = st.fixed_dictionaries(
    {
        "rule": st.sampled_from(["pmf", "cdf"]),
        "bins": st.one_of(st.sampled_from(["sturges", "sqrt", "rice"]), st.integers(1, 40)),
        "threshold": st.sampled_from([0.0, 0.05, 0.1, 0.12, 0.3]),
        "clip_sigma": st.sampled_from([None, 0.0, 0.5, 1.0, 2.0]),
        "clip": st.sampled_from(["clamp", "drop"]),
        "keep_fraction": st.sampled_from([0.0, 0.3, 0.5, 1.0]),
        "keep": st.sampled_from(["bernoulli", "fraction", "top"]),
        # whole exponents (repeated products, up to 64) and any other (pow)
        "beta": st.one_of(st.sampled_from([0.0, 1.0, 2.0, 3.0, 64.0, 65.0]), st.floats(0, 80)),
        "seed": st.integers(-(2**63), 2**63 - 1),
        "skip_nonfinite": st.booleans(),
    }
)

NON_FINITE = [math.nan, math.inf, -math.inf]


@st.composite
def loss_batches(draw):
    """Batches of losses: repeats from a small pool (ties, equal bins) or any floats, with
    NaN/Inf mixed in at times; enough values in all to wrap a ring buffer of up to 600 slots."""
    pool = draw(st.lists(st.floats(0, 20, width=32), min_size=1, max_size=5))
    values = st.sampled_from(pool) if draw(st.booleans()) else st.floats(0, 20, width=32)
    if draw(st.booleans()):
        values = st.one_of(values, st.sampled_from(NON_FINITE))
    return [draw(st.lists(values, min_size=1, max_size=200)) for _ in range(draw(st.integers(1, 6)))]


@st.composite
def key_lists(draw, size):
    """int64 keys over the whole range (the Philox counter's high word too), repeats allowed."""
    pool = draw(st.lists(st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(2**32 - 2, 2**32 + 2)),
                         min_size=1, max_size=size))
    return torch.tensor(draw(st.lists(st.sampled_from(pool), min_size=size, max_size=size)), dtype=torch.int64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@given(batches=loss_batches(), capacity=st.one_of(st.integers(1, 16), st.integers(1, 600)), opts=options,
       data=st.data())
def test_matches_reference_on_loss_streams(dtype, batches, capacity, opts, data):
    if opts["rule"] == "cdf":
        opts = dict(opts, keep="bernoulli")
    skip_nonfinite = opts.pop("skip_nonfinite")
    history, state = make_state(capacity, dtype)
    reference = HistogramSelectReference(capacity)
    for offset, values in enumerate(batches):
        losses = torch.tensor(values, dtype=dtype)
        keys = data.draw(st.none() | key_lists(len(values)))
        if not skip_nonfinite and not torch.isfinite(losses).all():
            before = history.clone(), state.clone()
            with pytest.raises(RuntimeError, match="losses must be finite"):
                dsampling_ext.histogram_select(history, state, losses, offset=offset, keys=keys, **opts)
            assert torch.equal(history, before[0]) and torch.equal(state, before[1])  # nothing appended
            continue
        keep, p = dsampling_ext.histogram_select(history, state, losses, offset=offset, keys=keys,
                                                 skip_nonfinite=skip_nonfinite, **opts)
        want_keep, want_p = reference(losses, offset=offset, keys=keys, **opts)
        assert torch.equal(p, want_p), (p, want_p)
        assert torch.equal(keep, want_keep)
        assert state.tolist() == [reference.length, reference.pos]
        assert torch.equal(history.double()[: reference.length], reference.history[: reference.length])


@given(values=st.lists(st.floats(0, 5, width=32), min_size=1, max_size=400), bins=st.integers(1, 30))
def test_reference_binning_is_numpy_histogram(values, bins):
    h = torch.tensor(values, dtype=torch.float64)
    edges = numpy_edges(h.min().item(), h.max().item(), bins)
    want_counts, want_edges = np.histogram(h.numpy(), bins=bins)
    assert edges.tolist() == want_edges.tolist()
    assert torch.bincount(bin_of(h, edges), minlength=bins).tolist() == want_counts.tolist()


def test_pmf_selects_exactly_the_bins_denser_than_uniform():
    # 512 losses at 10 distinct values, one per Sturges bin (10 bins for 512 values): with
    # theta = 0.1 the candidates are the bins holding more than 51.2 samples.
    counts = [100, 30, 60, 51, 52, 50, 40, 45, 44, 40]
    values = torch.cat([torch.full((c,), j + 0.5) for j, c in enumerate(counts)])
    history, state = make_state(512)
    keep, p = dsampling_ext.histogram_select(history, state, values, clip_sigma=None, threshold=0.1, keep_fraction=1.0)
    expected_p = torch.cat([torch.full((c,), c / 512, dtype=torch.float64) for c in counts])
    assert torch.equal(p, expected_p)
    assert torch.equal(keep, (values == 0.5) | (values == 2.5) | (values == 4.5))


@pytest.mark.parametrize("clip_sigma", [None, 1.0])
@pytest.mark.parametrize("bins", [1, 3, "sturges"])
def test_a_constant_history_whose_widening_rounds_away_is_one_full_last_bin(clip_sigma, bins):
    # 2**53 - 0.5 and 2**53 + 0.5 round back to 2**53 in float64: every edge equals the value and
    # numpy's position is 0 / 0. The value lies in the last bin (edges[k-1] <= v <= edges[k]),
    # which holds the whole history: p = 1. (The bin lookup used to read edges[-1], and the CPU
    # count cast the NaN position to int.)
    history, state = make_state(64, torch.float64)
    big = torch.full((40,), 2.0**53, dtype=torch.float64)
    dsampling_ext.histogram_select(history, state, big, clip_sigma=clip_sigma, bins=bins)
    keep, p = dsampling_ext.histogram_select(history, state, big[:3], clip_sigma=clip_sigma, bins=bins,
                                             keep_fraction=1.0)
    assert p.tolist() == [1.0, 1.0, 1.0] and keep.tolist() == [True, True, True]


def test_cdf_rule_is_selective_backprops_percentile_power():
    # history [1, 2, 2, 3]: percentileofscore(kind="rank")/100 = 0.25, 0.625, 0.625, 1.0.
    history, state = make_state(8)
    _, p = dsampling_ext.histogram_select(history, state, torch.tensor([1.0, 2.0, 2.0, 3.0]), rule="cdf",
                                          clip_sigma=None, beta=2.0)
    assert p.tolist() == [0.25**2, 0.625**2, 0.625**2, 1.0]


def test_clamp_bounds_are_mean_plus_minus_sigma_population_sd():
    # history [0, 1, 4, 7]: mean 3, population sd sqrt(7.5) = 2.739 (the sample sd would be
    # sqrt(10) = 3.162), so the bounds are [0.261, 5.739]. 3 bins, hand-computed:
    values = torch.tensor([0.0, 1.0, 4.0, 7.0], dtype=torch.float64)
    # clamp: {0.261, 1, 4, 5.739}, edges 0.261, 2.087, 3.913, 5.739: 4 shares the last bin with
    # 5.739. With the sample sd (edges 0, 2.054, 4.108, 6.162) or no clipping (0, 2.333, 4.667,
    # 7) 4 would fall in the middle bin alone: p = [0.5, 0.5, 0.25, 0.25].
    history, state = make_state(4, torch.float64)
    _, p = dsampling_ext.histogram_select(history, state, values, clip_sigma=1.0, bins=3)
    assert p.tolist() == [0.5, 0.5, 0.5, 0.5]
    # drop: 0 and 7 are outside and get p = 0; {1, 4} fill the first and last bin. With the
    # sample sd only 7 would be dropped: p = [2/3, 2/3, 1/3, 0].
    history, state = make_state(4, torch.float64)
    _, p = dsampling_ext.histogram_select(history, state, values, clip_sigma=1.0, clip="drop", bins=3)
    assert p.tolist() == [0.0, 0.5, 0.5, 0.0]


def test_ring_buffer_keeps_the_last_values():
    history, state = make_state(5, torch.float64)
    dsampling_ext.histogram_select(history, state, torch.arange(3.0, dtype=torch.float64))
    assert state.tolist() == [3, 3]
    dsampling_ext.histogram_select(history, state, torch.arange(3.0, 7.0, dtype=torch.float64))
    assert state.tolist() == [5, 2]
    assert history.tolist() == [5.0, 6.0, 2.0, 3.0, 4.0]
    dsampling_ext.histogram_select(history, state, torch.arange(10.0, 17.0, dtype=torch.float64))
    assert sorted(history.tolist()) == [12.0, 13.0, 14.0, 15.0, 16.0]


def test_bernoulli_keeps_alpha_of_candidates():
    # Candidates are everything (threshold 0); 20000 draws at alpha = 0.3: binomial sd 0.0032, 5 sd bound.
    history, state = make_state(512)
    kept = total = 0
    for offset in range(40):
        losses = torch.rand(500, generator=torch.Generator().manual_seed(offset))
        keep, _ = dsampling_ext.histogram_select(history, state, losses, threshold=0.0, keep_fraction=0.3, offset=offset)
        kept, total = kept + int(keep.sum()), total + 500
    assert abs(kept / total - 0.3) < 5 * math.sqrt(0.3 * 0.7 / total)


@pytest.mark.parametrize("keep", ["fraction", "top"])
def test_fraction_and_top_keep_exactly_ceil_alpha_candidates(keep):
    history, state = make_state(512)
    losses = torch.rand(300, generator=torch.Generator().manual_seed(3)) ** 2
    mask, p = dsampling_ext.histogram_select(history, state, losses, keep=keep, keep_fraction=0.3, threshold=0.05)
    candidates = p > 0.05
    assert int(mask.sum()) == math.ceil(0.3 * int(candidates.sum()))
    assert not (mask & ~candidates).any()
    if keep == "top":
        assert p[mask].min() >= p[candidates & ~mask].max()


def test_keys_make_draws_follow_the_sample_not_its_position():
    losses = torch.rand(64, generator=torch.Generator().manual_seed(0))
    keys = torch.arange(1000, 1064)
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(1))
    h1, s1 = make_state(64)
    h2, s2 = make_state(64)
    keep1, _ = dsampling_ext.histogram_select(h1, s1, losses, threshold=0.0, keep_fraction=0.5, keys=keys)
    keep2, _ = dsampling_ext.histogram_select(h2, s2, losses[perm], threshold=0.0, keep_fraction=0.5, keys=keys[perm])
    assert torch.equal(keep1[perm], keep2)


def test_non_finite_losses_raise_or_are_skipped():
    history, state = make_state(8)
    bad = torch.tensor([1.0, float("nan"), 2.0, float("inf")])
    with pytest.raises(RuntimeError, match="losses must be finite"):
        dsampling_ext.histogram_select(history, state, bad)
    assert state.tolist() == [0, 0]  # nothing appended before the error
    keep, p = dsampling_ext.histogram_select(history, state, bad, skip_nonfinite=True, threshold=0.0, keep_fraction=1.0)
    assert state.tolist() == [2, 2] and history[:2].tolist() == [1.0, 2.0]
    assert p[1] == 0 and p[3] == 0 and not keep[1] and not keep[3]


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(rule="max"), ValueError, "rule must be one of"),
        (dict(clip="cut"), ValueError, "clip must be one of"),
        (dict(keep="all"), ValueError, "keep must be one of"),
        (dict(rule="cdf", keep="top"), ValueError, "keep must be 'bernoulli' with rule='cdf'"),
        (dict(bins="scott"), ValueError, "bins must be an int or one of"),
        (dict(bins=0), ValueError, r"bins must be an int in \[1, 2048\]"),
        (dict(keep_fraction=1.5), ValueError, r"keep_fraction must be a number in \[0, 1\]"),
        (dict(threshold=-0.1), ValueError, r"threshold must be a number in \[0, 1\)"),
        (dict(threshold=1.0), ValueError, r"threshold must be a number in \[0, 1\) \(a PMF threshold of 1 or more selects nothing\)"),
        (dict(threshold="0.1"), TypeError, "threshold must be a number, got str"),
        (dict(clip_sigma=-1.0), ValueError, "clip_sigma must be a number in"),
        (dict(beta=float("nan")), ValueError, "beta must be a number in"),
        (dict(keys=torch.arange(3)), RuntimeError, r"keys must be an int64 tensor of shape \[4\]"),
    ],
)
def test_rejects_bad_arguments(kwargs, error, match):
    history, state = make_state(8)
    with pytest.raises(error, match=match):
        dsampling_ext.histogram_select(history, state, torch.rand(4), **kwargs)


def test_rejects_bad_tensors():
    history, state = make_state(8)
    with pytest.raises(TypeError, match="losses must have the dtype of history"):
        dsampling_ext.histogram_select(history, state, torch.rand(4, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="losses must be a non-empty 1-D tensor"):
        dsampling_ext.histogram_select(history, state, torch.rand(2, 2))
    with pytest.raises(RuntimeError, match=r"state must be a contiguous int64 tensor of shape \[2\]"):
        dsampling_ext.histogram_select(history, torch.zeros(3, dtype=torch.int64), torch.rand(4))
    with pytest.raises(RuntimeError, match="state must hold a length"):
        dsampling_ext.histogram_select(history, torch.tensor([9, 0]), torch.rand(4))
    with pytest.raises(RuntimeError, match="history must be a contiguous 1-D tensor of 1 to 65536"):
        dsampling_ext.histogram_select(torch.zeros(0), state, torch.rand(4, dtype=torch.float32))


def test_opcheck():
    args = lambda: (*make_state(64), torch.rand(50))  # noqa: E731
    for rule, keep in (("pmf", 0), ("pmf", 2), ("cdf", 0)):
        history, state, losses = args()
        torch.library.opcheck(
            torch.ops.dsampling.histogram_select.default,
            (history, state, losses, int(rule == "cdf"), 1, 1, 0.1, 1.0, 1, 0.3, keep, 2.0, False, 7, 3, None),
        )


def test_torch_compile_matches_eager():
    # The op mutates history and state inside the compiled graph; the losses come from eager
    # cross_entropy so that both sides select on bit-identical inputs.
    def step(history, state, losses, offset):
        keep, p = dsampling_ext.histogram_select(history, state, losses, threshold=0.05, keep_fraction=0.5, offset=offset)
        return keep, p * 2

    h1, s1 = make_state(256)
    h2, s2 = make_state(256)
    compiled = torch.compile(step, fullgraph=True)
    for offset in range(3):
        logits = torch.randn(128, 10, generator=torch.Generator().manual_seed(offset))
        labels = torch.randint(0, 10, (128,), generator=torch.Generator().manual_seed(offset))
        losses = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
        k1, p1 = step(h1, s1, losses, offset)
        k2, p2 = compiled(h2, s2, losses, offset)
        assert torch.equal(k1, k2) and torch.equal(p1, p2)
    assert torch.equal(h1, h2) and torch.equal(s1, s2)
