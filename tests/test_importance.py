"""RAS importance sampling (SPEC section 4): the weighted_sample and gradnorm_scores ops against
their references, and the ImportanceSampler in the loops a user writes."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from dsampling_ext import ops
from reference import gradnorm_composite, gradnorm_scores_reference, ordered_group_sums, weighted_sample_reference
from stats import chi2_critical, chi2_statistic

# ----------------------------------------------------------------------------- weighted_sample


@st.composite
def weight_vectors(draw, max_n=400):
    """Weights with zeros, ties, and spreads from 1 to 1e30 between the largest and the rest."""
    n = draw(st.integers(1, max_n))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    w = torch.rand(n, generator=g, dtype=torch.float64) ** draw(st.sampled_from([1, 5, 40]))
    w = w * 10.0 ** draw(st.integers(-300, 300))
    if draw(st.booleans()):
        w[torch.rand(n, generator=g) < 0.3] = 0.0
    if draw(st.booleans()):
        w[torch.randint(0, n, (1,), generator=g)] = float(w.max()) * 1e30 + 1e-300
    if float(w.max()) == 0.0:
        w[0] = 1.0
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    w = w.to(dtype)
    if float(w.max()) == 0.0 or not torch.isfinite(w).all():  # under/overflowed in float32
        w = torch.ones(n, dtype=dtype)
    return w


@given(weights=weight_vectors(), num_samples=st.integers(0, 300), seed=st.integers(-(2**63), 2**63 - 1),
       offset=st.integers(0, 2**64 - 1))
def test_weighted_sample_matches_reference(weights, num_samples, seed, offset):
    idx, probs = ops.weighted_sample(weights, num_samples, seed, offset)
    want_idx, want_probs = weighted_sample_reference(weights, num_samples, seed, offset)
    assert idx.dtype == torch.int64 and probs.dtype == torch.float64
    assert torch.equal(idx, want_idx) and torch.equal(probs, want_probs)
    assert (weights[idx] > 0).all()  # a zero weight is never drawn


@pytest.mark.parametrize("n", [1, 31, 32, 33, 1000, 100_003])
def test_weighted_sample_tile_boundaries(n):
    w = torch.rand(n, generator=torch.Generator().manual_seed(n)) + 0.01
    w[n // 2 :: 7] = 0.0
    w[-1] = 5.0
    assert all(torch.equal(a, b) for a, b in zip(ops.weighted_sample(w, 5000, 3, 4),
                                                  weighted_sample_reference(w, 5000, 3, 4)))


def test_weighted_sample_chi_square_n10():
    w = torch.tensor([1.0, 2.0, 0.5, 4.0, 0.25, 3.0, 1.5, 0.125, 6.0, 2.5])
    draws = 400_000
    idx, probs = ops.weighted_sample(w, draws, seed=11, offset=0)
    counts = np.bincount(idx.numpy(), minlength=10)
    expected = (w / w.sum()).double().numpy() * draws
    assert chi2_statistic(counts, expected) < chi2_critical(9)
    assert torch.allclose(probs, (w.double() / w.double().sum())[idx], rtol=1e-15, atol=0)


def test_weighted_sample_chi_square_past_2_24():
    """N = 2^24 + 10 categories (torch.multinomial stops at 2^24): the mass of 64 ranges of
    indices and of each of the last 10 (beyond 2^24, weighted to be drawn often) matches the
    target, a chi-square with 73 degrees of freedom; and the probabilities returned are w_i / W."""
    n = 2**24 + 10
    g = torch.Generator().manual_seed(0)
    w = torch.rand(n, generator=g)
    w[: n // 3] *= 0.1  # uneven ranges
    w[-10:] = torch.arange(1, 11, dtype=torch.float32) * 2e5
    draws = 1_000_000
    idx, probs = ops.weighted_sample(w, draws, seed=2, offset=1)
    total = w.double().sum()
    ranges = torch.linspace(0, 2**24, 65).long()
    mass = torch.stack([w[a:b].double().sum() for a, b in zip(ranges[:-1], ranges[1:])] + list(w[-10:].double()))
    bins = torch.bucketize(idx, ranges[1:-1], right=True)
    bins = torch.where(idx >= 2**24, 64 + (idx - 2**24), bins)
    counts = np.bincount(bins.numpy(), minlength=74)
    expected = (mass / total).numpy() * draws
    assert expected.min() > 100
    assert chi2_statistic(counts, expected) < chi2_critical(73)
    assert (idx >= 2**24).sum() > 0.1 * draws
    assert torch.allclose(probs, w.double()[idx] / total, rtol=1e-9, atol=0)


def test_weighted_sample_same_draws_for_16_bit_and_scaled_weights():
    # A weight vector and its float16 / bfloat16 roundings, or the same vector times 2^k, hold the
    # same fixed-point integers: the same draws.
    w = torch.rand(5000, generator=torch.Generator().manual_seed(1))
    for dtype in (torch.float16, torch.bfloat16):
        low = w.to(dtype)
        assert all(torch.equal(a, b) for a, b in zip(ops.weighted_sample(low, 3000, 7), ops.weighted_sample(low.float(), 3000, 7)))
    base = ops.weighted_sample(w.double(), 3000, 7)
    for k in (-900, -40, 3, 700):
        scaled = ops.weighted_sample(w.double() * 2.0**k, 3000, 7)
        assert torch.equal(scaled[0], base[0]) and torch.equal(scaled[1], base[1])


def test_weighted_sample_seed_and_offset():
    w = torch.rand(1000)
    a = ops.weighted_sample(w, 500, 1, 2)[0]
    assert torch.equal(a, ops.weighted_sample(w, 500, 1, 2)[0])
    assert not torch.equal(a, ops.weighted_sample(w, 500, 1, 3)[0])
    assert not torch.equal(a, ops.weighted_sample(w, 500, 2, 2)[0])
    assert torch.equal(ops.weighted_sample(w, 100, 1, 2)[0], a[:100])  # draw j depends on j alone


def test_weighted_sample_non_contiguous_and_one_weight():
    w = torch.rand(3000, generator=torch.Generator().manual_seed(4))
    strided = w[::3]
    assert not strided.is_contiguous()
    got, want = ops.weighted_sample(strided, 500, 5, 6), ops.weighted_sample(strided.contiguous(), 500, 5, 6)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    idx, probs = ops.weighted_sample(torch.tensor([2.5]), 7, 1, 1)  # one category: always it, probability 1
    assert idx.tolist() == [0] * 7 and probs.tolist() == [1.0] * 7


def test_weighted_sample_late_weights_keep_their_share():
    """2^24 + 2^20 equal float32 weights: a float32 running sum stops growing at 2^24 (x + 1 == x
    there), so a sampler built on it never draws the last 2^20 indices; here they get their
    2^20 / N share of the draws (within 5 standard deviations) and probability exactly 1/N."""
    n = 2**24 + 2**20
    w = torch.ones(n)
    big = torch.tensor(2.0**24, dtype=torch.float32)
    assert float(big + w[0]) == 2**24  # the float32 failure: a running sum adds nothing past 2^24
    draws = 200_000
    idx, probs = ops.weighted_sample(w, draws, seed=9)
    share = 2**20 / n
    late = int((idx >= 2**24).sum())
    assert abs(late - draws * share) < 5 * math.sqrt(draws * share * (1 - share))
    assert torch.equal(probs, torch.full((draws,), 1.0 / n, dtype=torch.float64))


def test_weighted_sample_tiny_weights_beside_a_large_one_keep_their_share():
    """One weight 1 and 2^24 weights 2^-40 (each 1e-12 of the total; 2^-16 together): a float32
    running sum never grows past 1 (1 + 2^-40 == 1), so they would never be drawn. Here their
    draws are Poisson with mean 4e6 * 2^-16 / (1 + 2^-16) = 61: within 5 standard deviations, and
    each drawn one carries its exact probability."""
    n = 2**24 + 1
    w = torch.full((n,), 2.0**-40, dtype=torch.float64)
    w[2**23] = 1.0
    draws = 4_000_000
    idx, probs = ops.weighted_sample(w, draws, seed=3)
    tiny = idx != 2**23
    mean = draws * 2.0**-16 / (1 + 2.0**-16)
    assert abs(int(tiny.sum()) - mean) < 5 * math.sqrt(mean)
    assert torch.equal(probs[tiny], torch.full((int(tiny.sum()),), 2.0**-40 / (1 + 2.0**-16), dtype=torch.float64))
    assert float(torch.tensor(1.0, dtype=torch.float32) + 2.0**-40) == 1.0  # the float32 failure


@pytest.mark.parametrize("weights, num_samples, error, match", [
    (torch.tensor([1.0, -0.5]), 3, RuntimeError, r"weighted_sample: weights must be finite and >= 0, got -0.5 at index 1"),
    (torch.tensor([1.0, float("nan")]), 3, RuntimeError, r"weights must be finite and >= 0, got nan at index 1"),
    (torch.tensor([float("inf"), 1.0]), 3, RuntimeError, r"weights must be finite and >= 0, got inf at index 0"),
    (torch.zeros(5), 3, RuntimeError, r"weights must have a positive sum, got all zeros"),
    (torch.zeros(0), 3, ValueError, r"weights must be a non-empty 1-D tensor, got shape \(0,\)"),
    (torch.ones(2, 2), 3, ValueError, r"weights must be a non-empty 1-D tensor, got shape \(2, 2\)"),
    (torch.ones(3, dtype=torch.int64), 3, TypeError, r"weights must be float16, bfloat16, float32 or float64"),
    (torch.ones(3), -1, ValueError, r"num_samples must be an int >= 0, got -1"),
    (torch.ones(3), 2.0, ValueError, r"num_samples must be an int >= 0"),
    ([1.0, 2.0], 3, TypeError, r"weights must be a torch.Tensor"),
])
def test_weighted_sample_rejects_bad_inputs(weights, num_samples, error, match):
    with pytest.raises(error, match=match):
        ops.weighted_sample(weights, num_samples)


@pytest.mark.parametrize("bad, shown", [(float("inf"), "inf"), (float("nan"), "nan"), (-0.5, "-0.5"), (float("-inf"), "-inf")])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64], ids=str)
def test_weighted_sample_finds_bad_weights_in_long_vectors(bad, shown, dtype):
    # Past the vectorised scan's lanes and across its parallel chunks: the first bad index is named.
    w = torch.rand(200_003).to(dtype) + 0.1
    for i in (9, 65_537, 200_002):
        v = w.clone()
        v[i] = bad
        v[i + 1 :: 9_999] = bad  # later bad values do not hide the first of its chunk
        with pytest.raises(RuntimeError, match=rf"weights must be finite and >= 0, got {shown} at index {i}$"):
            ops.weighted_sample(v, 10)


def test_weighted_sample_op_checks_match_the_wrapper():
    with pytest.raises(RuntimeError, match=r"weighted_sample: num_samples must be >= 0, got -2"):
        torch.ops.dsampling.weighted_sample.default(torch.ones(3), -2, 0, 0)
    with pytest.raises(RuntimeError, match=r"weighted_sample: weights must be a non-empty 1-D tensor"):
        torch.ops.dsampling.weighted_sample.default(torch.ones(0), 2, 0, 0)


@pytest.mark.parametrize("args", [
    (torch.rand(100), 50, 3, 1), (torch.rand(33).double(), 0, -1, 2**40), (torch.rand(7).half(), 9, 0, 0),
])
def test_weighted_sample_opcheck(args):
    torch.library.opcheck(torch.ops.dsampling.weighted_sample.default, args)


def test_weighted_sample_compiles():
    @torch.compile(fullgraph=True)
    def draw(w):
        idx, p = ops.weighted_sample(w * 2, 64, seed=4, offset=5)
        return idx + 1, (1.0 / p).sum()

    w = torch.rand(300)
    idx, inv = draw(w)
    want_idx, want_p = weighted_sample_reference(w * 2, 64, 4, 5)
    assert torch.equal(idx, want_idx + 1) and float(inv) == pytest.approx(float((1.0 / want_p).sum()))


# ----------------------------------------------------------------------------- gradnorm_scores

TOLERANCE = {torch.float64: 1e-12, torch.float32: 2e-6, torch.float16: 2e-6, torch.bfloat16: 2e-6}
# float32 accumulation: a score below about 1e-19 (a row whose label leads every other logit by
# more than about 44) squares to a subnormal or to 0, as it does in the float32 composite.
ATOL = {torch.float64: 0.0, torch.float32: 1e-18, torch.float16: 1e-18, torch.bfloat16: 1e-18}


@st.composite
def logit_batches(draw):
    rows = draw(st.integers(0, 70))
    classes = draw(st.sampled_from([1, 2, 3, 5, 10, 17, 33, 100, 257]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    z = torch.randn(rows, classes, generator=g, dtype=torch.float64) * draw(st.sampled_from([0.1, 1.0, 8.0, 40.0]))
    labels = torch.randint(0, classes, (rows,), generator=g)
    if rows and draw(st.booleans()):  # confident and right: a tiny score that must stay accurate
        z[0] = 0.0
        z[0, labels[0]] = draw(st.sampled_from([30.0, 60.0]))
    return z, labels


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64], ids=str)
@given(batch=logit_batches(), num_groups=st.integers(1, 6), label_dtype=st.sampled_from([torch.int64, torch.int32]),
       with_groups=st.booleans())
def test_gradnorm_scores_match_the_composite(dtype, batch, num_groups, label_dtype, with_groups):
    z, labels = batch
    z = z.to(dtype)
    labels = labels.to(label_dtype)
    rows, classes = z.shape
    groups = (torch.arange(rows) * 7 % num_groups).to(label_dtype) if with_groups else None
    g = num_groups if with_groups else classes
    scores, sums, counts = ops.gradnorm_scores(z, labels, groups, g)
    want, want_sums, want_counts = gradnorm_scores_reference(z, labels, groups, g)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    assert scores.dtype == acc and sums.dtype == acc and counts.dtype == torch.int64
    assert scores.shape == (rows,) and sums.shape == (g,) and counts.shape == (g,)
    torch.testing.assert_close(scores.double(), want, rtol=TOLERANCE[dtype], atol=ATOL[dtype])
    torch.testing.assert_close(sums.double(), want_sums, rtol=TOLERANCE[dtype] * 4, atol=ATOL[dtype] ** 2)
    assert torch.equal(counts, want_counts)
    # The group sums add score^2 in the chunked order, in the accumulation type: exactly this.
    assert torch.equal(sums, ordered_group_sums(scores * scores, (labels if groups is None else groups).long(), g))


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64], ids=str)
def test_gradnorm_group_sums_add_chunks_of_256_rows(dtype):
    # A group of 1,100 rows spans five chunks (the last partial), one of 401 two, one is empty:
    # the sums are the chunked order's to the bit, and within rounding of float64's.
    g = torch.Generator().manual_seed(11)
    z = (torch.randn(1501, 10, generator=g) * 3).to(dtype)
    labels = torch.randint(0, 10, (1501,), generator=g)
    groups = torch.ones(1501, dtype=torch.int64)
    groups[torch.randperm(1501, generator=g)[:1100]] = 0
    scores, sums, counts = ops.gradnorm_scores(z, labels, groups, 3)
    assert counts.tolist() == [1100, 401, 0]
    assert torch.equal(sums, ordered_group_sums(scores * scores, groups, 3))
    torch.testing.assert_close(sums.double(), gradnorm_scores_reference(z, labels, groups, 3)[1], rtol=1e-5, atol=0)


def test_gradnorm_reference_is_the_composite():
    # Where 1 - p_y does not cancel (logits of scale 1), the float64 composite and the reference's
    # cancellation-free identity agree to rounding.
    g = torch.Generator().manual_seed(5)
    z = torch.randn(300, 17, generator=g, dtype=torch.float64)
    y = torch.randint(0, 17, (300,), generator=g)
    torch.testing.assert_close(gradnorm_scores_reference(z, y)[0], gradnorm_composite(z, y), rtol=1e-12, atol=0)


def test_gradnorm_score_of_a_confident_sample_is_accurate():
    # p_y = 1 / (1 + 2e^-30): 1 - p_y cancels to 0 in float32; the score is e^-30 sqrt(6) / Z.
    z = torch.tensor([[30.0, 0.0, 0.0], [0.0, 0.0, 0.0], [-5.0, 5.0, 0.0]])
    y = torch.tensor([0, 1, 0])
    scores = ops.gradnorm_scores(z, y)[0].double()
    want = gradnorm_scores_reference(z, y)[0]
    assert want[0] == pytest.approx(math.exp(-30) * math.sqrt(6) / (1 + 2 * math.exp(-30)), rel=1e-12)
    torch.testing.assert_close(scores, want, rtol=1e-6, atol=0)
    assert float(scores[1]) == pytest.approx(math.sqrt((2 / 3) ** 2 + 2 / 9), rel=1e-6)


def test_gradnorm_scores_nonfinite_rows_are_nan():
    z = torch.tensor([[float("nan"), 0.0], [float("inf"), 0.0], [float("-inf"), float("-inf")], [1.0, 0.0]])
    scores = ops.gradnorm_scores(z, torch.tensor([0, 1, 0, 0]))[0]
    assert torch.isnan(scores[:3]).all() and torch.isfinite(scores[3])


def test_gradnorm_scores_non_contiguous_and_empty():
    z = torch.randn(10, 40)[:, ::4]
    y = torch.randint(0, 10, (10,))
    got = ops.gradnorm_scores(z, y)
    want = ops.gradnorm_scores(z.contiguous(), y)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    s, sums, counts = ops.gradnorm_scores(torch.zeros(0, 5), torch.zeros(0, dtype=torch.int64), None, 3)
    assert s.shape == (0,) and sums.tolist() == [0.0] * 3 and counts.tolist() == [0] * 3


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(labels=torch.tensor([0, 3])), RuntimeError, r"gradnorm_scores: labels must be in \[0, 3\), got 3 at index 1"),
    (dict(labels=torch.tensor([-1, 0])), RuntimeError, r"labels must be in \[0, 3\), got -1 at index 0"),
    (dict(groups=torch.tensor([0, 4]), num_groups=4), RuntimeError, r"groups must be in \[0, 4\), got 4 at index 1"),
    (dict(num_groups=2, labels=torch.tensor([0, 2])), RuntimeError,
     r"labels must be in \[0, 2\) \(they are the groups\), got 2 at index 1"),
    (dict(groups=torch.tensor([0, 1])), ValueError, r"num_groups must be given with groups"),
    (dict(num_groups=0), ValueError, r"num_groups must be an int in \[1, 2\*\*31 - 1\], got 0"),
    (dict(logits=torch.zeros(2, 3, dtype=torch.int32)), TypeError, r"logits must be float16, bfloat16, float32 or float64"),
    (dict(logits=torch.zeros(2)), ValueError, r"logits must have shape \[B, C\] with C >= 1"),
    (dict(labels=torch.tensor([0.0, 1.0])), TypeError, r"labels must be int64 or int32"),
    (dict(labels=torch.tensor([0])), ValueError, r"labels must have shape \[2\], got \(1,\)"),
    (dict(groups=torch.tensor([0, 1, 1]), num_groups=2), ValueError, r"groups must have shape \[2\], got \(3,\)"),
    (dict(groups=torch.tensor([0.0, 1.0]), num_groups=2), TypeError, r"groups must be int64 or int32"),
])
def test_gradnorm_scores_rejects_bad_inputs(kwargs, error, match):
    args = dict(logits=torch.randn(2, 3), labels=torch.tensor([0, 2]), groups=None, num_groups=None)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ops.gradnorm_scores(**args)


def test_gradnorm_scores_op_checks_match_the_wrapper():
    with pytest.raises(RuntimeError, match=r"gradnorm_scores: num_groups must be in \[1, 2\*\*31 - 1\], got 0"):
        torch.ops.dsampling.gradnorm_scores.default(torch.randn(2, 3), torch.tensor([0, 1]), None, 0)
    with pytest.raises(RuntimeError, match=r"gradnorm_scores: groups must have shape \[2\]"):
        torch.ops.dsampling.gradnorm_scores.default(torch.randn(2, 3), torch.tensor([0, 1]), torch.tensor([0]), 2)


@pytest.mark.parametrize("args", [
    (torch.randn(20, 7), torch.randint(0, 7, (20,)), None, 7),
    (torch.randn(9, 300).half(), torch.randint(0, 300, (9,), dtype=torch.int32), torch.randint(0, 4, (9,)), 4),
    (torch.randn(5, 2).double(), torch.randint(0, 2, (5,)), torch.zeros(5, dtype=torch.int32), 1),
])
def test_gradnorm_scores_opcheck(args):
    torch.library.opcheck(torch.ops.dsampling.gradnorm_scores.default, args)


def test_gradnorm_scores_compiles():
    @torch.compile(fullgraph=True)
    def score(z, y, g):
        s, sums, counts = ops.gradnorm_scores(z * 1.5, y, g, 4)
        return s.sum(), sums / counts.clamp_min(1)

    z, y, g = torch.randn(64, 10), torch.randint(0, 10, (64,)), torch.randint(0, 4, (64,))
    total, means = score(z, y, g)
    want, want_sums, want_counts = gradnorm_scores_reference(z * 1.5, y, g, 4)
    assert float(total) == pytest.approx(float(want.sum()), rel=1e-5)
    torch.testing.assert_close(means.double(), want_sums / want_counts.clamp_min(1), rtol=1e-5, atol=0)
