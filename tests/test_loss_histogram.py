import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import dsampling_ext
from dsampling_ext import ops

NUMPY_DTYPES = [torch.float16, torch.float32, torch.float64]


def numpy_histogram(values: torch.Tensor, bins, range=None):
    x = values.detach().cpu().reshape(-1).numpy()
    return np.histogram(x, bins=bins, range=range)


def assert_matches_numpy(values, bins=10, range=None):
    """Counts equal numpy's exactly, edges equal numpy's exactly (same dtype, same arithmetic);
    a rule name goes to numpy as it is (numpy's width estimate decides the count)."""
    try:
        want_counts, want_edges = numpy_histogram(values, bins, range)
    except ValueError as numpy_error:
        if "Maximum allowed size exceeded" in str(numpy_error):  # a rule's count beyond any array
            with pytest.raises(ValueError, match="bins: the .* rule gives .* bins"):
                dsampling_ext.loss_histogram(values, bins, range)
            return
        assert "Too many bins" in str(numpy_error)  # numpy: "Too many bins for data range"
        with pytest.raises(RuntimeError, match="edges repeat"):
            dsampling_ext.loss_histogram(values, bins, range)
        return
    counts, edges = dsampling_ext.loss_histogram(values, bins, range)
    assert counts.dtype == torch.int64 and edges.dtype == values.dtype
    np.testing.assert_array_equal(counts.cpu().numpy(), want_counts)
    np.testing.assert_array_equal(edges.cpu().numpy(), want_edges)


# Values from a small pool so that ties and values exactly on edges are common.
pools = st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=16), min_size=1, max_size=6)


@st.composite
def loss_arrays(draw, dtype):
    pool = draw(pools)
    if draw(st.booleans()):
        values = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=300))
    else:
        values = draw(st.lists(st.floats(-1e4, 1e4, allow_nan=False, width=32), min_size=1, max_size=300))
    return torch.tensor(values, dtype=torch.float64).to(dtype)


bin_choices = st.one_of(st.integers(1, 64), st.sampled_from(["sturges", "sqrt", "rice"]))


@pytest.mark.parametrize("dtype", NUMPY_DTYPES, ids=str)
@given(data=st.data())
def test_matches_numpy_histogram(dtype, data):
    values = data.draw(loss_arrays(dtype))
    assume(torch.isfinite(values).all())  # float16 overflows above 65504
    assert_matches_numpy(values, data.draw(bin_choices))


def numpy_rule_bin_count(values: torch.Tensor, rule: str, range) -> int:
    """The number of bins numpy.histogram's ``rule`` gives ``values`` within ``range``, by numpy's
    own arithmetic (its _get_bin_edges) but without building the edges."""
    from numpy.lib import _histograms_impl as impl

    x = values.detach().cpu().reshape(-1).numpy()
    first, last = impl._get_outer_edges(x, range)
    x = x[(x >= first) & (x <= last)]
    if x.size == 0:
        return 1
    width = impl._hist_bin_selectors[rule](x, (first, last))
    return int(np.ceil(impl._unsigned_subtract(last, first) / width)) if width else 1


@pytest.mark.parametrize("dtype", NUMPY_DTYPES, ids=str)
@given(data=st.data())
def test_matches_numpy_histogram_with_range(dtype, data):
    values = data.draw(loss_arrays(dtype))
    assume(torch.isfinite(values).all())
    lo = data.draw(st.floats(-2e3, 2e3))
    hi = lo + data.draw(st.floats(0, 4e3))
    bins = data.draw(bin_choices)
    # A rule's width comes from the data inside the range, so a wide range around close values asks
    # for up to ~10^9 bins, which numpy (the reference) builds in memory: gigabytes per example, and
    # an OOM kill of the whole run when Hypothesis explores there. Such counts are left out.
    assume(isinstance(bins, int) or numpy_rule_bin_count(values, bins, (lo, hi)) <= 10**6)
    assert_matches_numpy(values, bins, (lo, hi))


@given(data=st.data())
def test_bfloat16_bins_by_its_own_edges(data):
    # numpy has no bfloat16: check that every value lies in the bin its edges say (numpy with
    # explicit edges counts by searchsorted), and that the edges are numpy's float64 linspace
    # of the bfloat16 range rounded to bfloat16 (to within one bfloat16 rounding of each op).
    values = data.draw(loss_arrays(torch.bfloat16))
    bins = data.draw(st.integers(1, 32))
    try:
        counts, edges = dsampling_ext.loss_histogram(values, bins)
    except RuntimeError as error:
        assert "edges repeat" in str(error)
        return
    want, _ = np.histogram(values.float().numpy(), bins=edges.float().numpy())
    np.testing.assert_array_equal(counts.numpy(), want)
    lo, hi = values.float().min().item(), values.float().max().item()
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    ideal = torch.tensor(np.linspace(lo, hi, bins + 1))
    tolerance = 3 * 2.0**-8 * ideal.abs().clamp_min(abs(hi - lo))
    assert ((edges.double() - ideal).abs() <= tolerance).all()


def test_hand_computed_case():
    counts, edges = dsampling_ext.loss_histogram(torch.tensor([0.0, 1.0, 1.0, 3.0]), bins=3)
    assert counts.tolist() == [1, 2, 1]
    assert edges.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_max_value_goes_in_last_bin_and_min_in_first():
    counts, _ = dsampling_ext.loss_histogram(torch.tensor([0.0, 0.0, 10.0, 10.0, 10.0]), bins=5)
    assert counts.tolist() == [2, 0, 0, 0, 3]


@pytest.mark.parametrize("dtype", NUMPY_DTYPES, ids=str)
@pytest.mark.parametrize("value", [0.0, -2.5, 100.0])
def test_constant_input_uses_half_unit_range(dtype, value):
    values = torch.full((7,), value, dtype=dtype)
    assert_matches_numpy(values, 4)
    counts, edges = dsampling_ext.loss_histogram(values, 4)
    assert edges[0].item() == value - 0.5 and edges[-1].item() == value + 0.5
    assert counts.sum().item() == 7


def test_single_value():
    counts, edges = dsampling_ext.loss_histogram(torch.tensor([2.0]), "sturges")
    assert counts.tolist() == [1] and edges.tolist() == [1.5, 2.5]


def test_values_outside_range_are_not_counted():
    counts, _ = dsampling_ext.loss_histogram(torch.tensor([-1.0, 0.0, 0.5, 1.0, 2.0]), 2, range=(0.0, 1.0))
    assert counts.tolist() == [1, 2]


@pytest.mark.parametrize("dtype", NUMPY_DTYPES, ids=str)
def test_non_contiguous_input(dtype):
    base = torch.randn(64, 33, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(dtype)
    for view in (base[:, ::3], base.t(), base[::2]):
        assert not view.is_contiguous() or view is base[::2]
        assert_matches_numpy(view, "sturges")


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 9, 511, 512, 513, 1024, 10**6, 2**40, 2**40 + 1])
def test_sturges_rule_is_ceil_log2_plus_one(n):
    assert ops.bin_count("sturges", n) == math.ceil(math.log2(n)) + 1


@pytest.mark.parametrize(
    "rule,n,k",
    [("sturges", 512, 10), ("sturges", 128, 8), ("sqrt", 16, 4), ("sqrt", 17, 5), ("sqrt", 1, 1),
     ("rice", 1, 2), ("rice", 1000, 20), ("rice", 1001, 21), ("rice", 125, 10), (7, 1000, 7)],
)
def test_bin_rules_hand_computed(rule, n, k):
    assert ops.bin_count(rule, n) == k


def test_rule_is_evaluated_on_numel():
    counts, _ = dsampling_ext.loss_histogram(torch.rand(512), "sturges")
    assert counts.numel() == 10


@pytest.mark.parametrize(
    "values,kwargs,error,match",
    [
        (torch.empty(0), {}, ValueError, "values must be non-empty"),
        (torch.arange(4), {}, TypeError, "values must be float16, bfloat16, float32 or float64"),
        ([1.0, 2.0], {}, TypeError, "values must be a torch.Tensor"),
        (torch.rand(4), dict(bins=0), ValueError, r"bins must be in \[1, 2\*\*31 - 1\]"),
        (torch.rand(4), dict(bins="scott"), ValueError, "bins must be an int or one of"),
        (torch.rand(4), dict(bins=2.5), TypeError, "bins must be an int or one of"),
        (torch.rand(4), dict(range=(1.0, 0.0)), ValueError, "range must have min <= max"),
        (torch.rand(4), dict(range=(0.0, math.inf)), ValueError, "range must be finite"),
        (torch.rand(4), dict(range=(0.0,)), ValueError, r"range must be \(min, max\)"),
    ],
)
def test_rejects_bad_arguments(values, kwargs, error, match):
    with pytest.raises(error, match=match):
        dsampling_ext.loss_histogram(values, **kwargs)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_rejects_non_finite_values_without_a_range(bad):
    with pytest.raises(RuntimeError, match="values must be finite"):
        dsampling_ext.loss_histogram(torch.tensor([0.5, bad, 0.25]), 3)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("dtype", NUMPY_DTYPES, ids=str)
@pytest.mark.parametrize("bins", [3, "sturges"])
def test_non_finite_values_outside_a_range_are_not_counted_as_numpy(bad, dtype, bins):
    # numpy.histogram(range=...) leaves NaN and +-Inf out of the counts (outside the range); so do
    # both devices (the CUDA twin always did; the CPU used to raise).
    values = torch.tensor([0.5, bad, 0.25, 1.0, bad], dtype=dtype)
    assert_matches_numpy(values, bins, (0.0, 1.0))
    counts, _ = dsampling_ext.loss_histogram(values, bins, (0.0, 1.0))
    assert counts.sum().item() == 3


@pytest.mark.parametrize("dtype,value", [(torch.float16, 2048.0), (torch.float32, 2.0**24), (torch.float64, 2.0**53),
                                         (torch.bfloat16, 256.0)], ids=str)
@pytest.mark.parametrize("bins", [1, 4, "sturges"])
def test_a_constant_whose_widening_rounds_away_is_numpys_too_many_bins(dtype, value, bins):
    # value +- 0.5 rounds back to value: every edge is equal. numpy raises "Too many bins for data
    # range"; so does the CPU (the CUDA twin, which cannot raise without a host sync, gives NaN
    # edges and zero counts; tests/cuda), with or without a range.
    values = torch.full((5,), value, dtype=dtype)
    if dtype != torch.bfloat16:
        with pytest.raises(ValueError, match="Too many bins"):
            np.histogram(values.numpy(), bins=bins)
    for range in (None, (value, value)):
        with pytest.raises(RuntimeError, match="edges repeat"):
            dsampling_ext.loss_histogram(values, bins, range)


def test_kernel_checks_match_wrapper_checks():
    with pytest.raises(RuntimeError, match=r"loss_histogram: bins must be in \[1, 2\*\*31 - 1\], got 0"):
        torch.ops.dsampling.loss_histogram(torch.rand(3), 0)
    with pytest.raises(RuntimeError, match="loss_histogram: values must be non-empty"):
        torch.ops.dsampling.loss_histogram(torch.rand(0), 3)
    with pytest.raises(RuntimeError, match="loss_histogram: range must have min <= max"):
        torch.ops.dsampling.loss_histogram(torch.rand(3), 3, [1.0, 0.0])


def test_too_many_bins_for_a_float16_range_is_an_error():
    values = torch.tensor([1000.0, 1000.5], dtype=torch.float16)  # one float16 ulp apart
    with pytest.raises(ValueError, match="Too many bins"):
        np.histogram(values.numpy(), bins=4)
    with pytest.raises(RuntimeError, match="edges repeat"):
        dsampling_ext.loss_histogram(values, 4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_opcheck(device, dtype):
    values = torch.randn(257, device=device).to(dtype)
    torch.library.opcheck(torch.ops.dsampling.loss_histogram.default, (values, 9, None))
    torch.library.opcheck(torch.ops.dsampling.loss_histogram.default, (values, 5, [-1.0, 1.0]))


def test_torch_compile_matches_eager():
    def per_sample_histogram(logits, labels):
        losses = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
        return dsampling_ext.loss_histogram(losses, 10)

    logits = torch.randn(512, 10, generator=torch.Generator().manual_seed(1))
    labels = torch.randint(0, 10, (512,), generator=torch.Generator().manual_seed(2))
    compiled = torch.compile(per_sample_histogram, fullgraph=True, backend="inductor")
    eager_counts, eager_edges = per_sample_histogram(logits, labels)
    counts, edges = compiled(logits, labels)
    assert torch.equal(counts, eager_counts)
    torch.testing.assert_close(edges, eager_edges)


@pytest.mark.parametrize("dtype", NUMPY_DTYPES, ids=str)
@given(data=st.data())
def test_values_on_and_one_ulp_around_edges(dtype, data):
    # The hardest values: every edge numpy computes, and its neighbours one ulp either side.
    values = data.draw(loss_arrays(dtype))
    assume(torch.isfinite(values).all())
    bins = data.draw(st.integers(1, 40))
    x = values.numpy()
    try:
        edges = np.histogram_bin_edges(x, bins=bins)
    except ValueError:
        return
    near = np.concatenate([edges, np.nextafter(edges, np.inf), np.nextafter(edges, -np.inf)]).astype(x.dtype)
    near = near[(near >= edges[0]) & (near <= edges[-1])]  # keep min and max, hence the same edges
    assert_matches_numpy(torch.from_numpy(np.concatenate([x, near])), bins)


@pytest.mark.parametrize("dtype", NUMPY_DTYPES, ids=str)
@pytest.mark.parametrize("bins", [10, 997, 50_000])
@pytest.mark.parametrize("shift", [0.0, 1e3])
def test_large_inputs_match_numpy(dtype, bins, shift):
    # Many values per bin edge, and a shifted range where edges carry large rounding errors.
    g = torch.Generator().manual_seed(bins)
    values = (torch.empty(200_000, dtype=torch.float64).exponential_(generator=g) + shift).to(dtype)
    assert_matches_numpy(values, bins)
    assert_matches_numpy(values, bins, (shift + 0.25, shift + 2.5))
