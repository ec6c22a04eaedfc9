"""RAS's kernels against what a user writes. weighted_sample (10^6 draws with replacement)
against torch.multinomial(replacement=True), which refuses more than 2^24 categories, and
against the float64 cumsum + searchsorted a user writes past that; gradnorm_scores (scores and
per-group sums of squares and counts) against the torch composite (softmax - one_hot, norm,
index_add, bincount)."""

import pytest
import torch
from reference import gradnorm_composite, gradnorm_scores_reference

from dsampling_ext import ops
from targets import target

DRAWS = 1_000_000
SIZES = [50_000, 1_281_167, 10_000_000, 100_000_000]
MULTINOMIAL_MAX = 2**24
target("weighted_sample N=10000000", "kernel", "multinomial", 1 / 3, ">= 3x torch.multinomial at N = 10^7")
target("weighted_sample N=100000000", "kernel", "cumsum", 1.0, "faster than float64 cumsum + searchsorted past 2^24")
SHAPES = [(1024, 10), (1024, 1000)]
for b, c in SHAPES:
    target(f"gradnorm_scores {b}x{c}", "kernel", "composite", 1 / 3, ">= 3x faster than the torch composite")


def make_weights(n):
    return torch.empty(n).exponential_(generator=torch.Generator().manual_seed(n))


def cumsum_sample(w, k, g):
    """Prefix sums in float64 (float32 stops growing at 2^24) and a binary search per draw."""
    cdf = torch.cumsum(w, 0, dtype=torch.float64)
    idx = torch.searchsorted(cdf, torch.rand(k, generator=g, dtype=torch.float64) * cdf[-1], right=True)
    idx = idx.clamp_max(w.numel() - 1)
    return idx, w[idx].double() / cdf[-1]


@pytest.mark.parametrize("impl", ["kernel", "multinomial", "cumsum"])
@pytest.mark.parametrize("n", SIZES)
def test_weighted_sample(benchmark, n, impl):
    if impl == "multinomial" and n > MULTINOMIAL_MAX:
        pytest.skip("torch.multinomial refuses more than 2^24 categories")
    benchmark.group = f"weighted_sample N={n}"
    benchmark.extra_info["impl"] = impl
    w = make_weights(n)
    rounds = dict(rounds=5, iterations=1, warmup_rounds=1) if n >= 1_000_000 else dict(rounds=20, iterations=1, warmup_rounds=2)
    if impl == "kernel":
        idx, probs = ops.weighted_sample(w, DRAWS, seed=1)
        # correct first: the probabilities of the drawn are w_i / W, and the draws follow them (the
        # mean of 1 / (N p) over draws is 1 for any sampler drawing with probability p).
        total = w.double().sum()
        torch.testing.assert_close(probs, w[idx].double() / total, rtol=1e-9, atol=0)
        assert float((1 / (n * probs)).mean()) == pytest.approx(1.0, abs=0.05)
        benchmark.pedantic(ops.weighted_sample, args=(w, DRAWS, 1), **rounds)
    elif impl == "multinomial":
        g = torch.Generator().manual_seed(0)
        benchmark.pedantic(torch.multinomial, args=(w, DRAWS, True), kwargs=dict(generator=g), **rounds)
    else:
        benchmark.pedantic(cumsum_sample, args=(w, DRAWS, torch.Generator().manual_seed(0)), **rounds)


def composite(z, y, groups, num_groups):
    s = gradnorm_composite(z, y)
    sums = torch.zeros(num_groups, dtype=s.dtype).index_add_(0, groups, s * s)
    return s, sums, torch.bincount(groups, minlength=num_groups)


@pytest.mark.parametrize("impl", ["kernel", "composite"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_gradnorm_scores(benchmark, shape, impl):
    b, c = shape
    benchmark.group = f"gradnorm_scores {b}x{c}"
    benchmark.extra_info["impl"] = impl
    g = torch.Generator().manual_seed(c)
    z = torch.randn(b, c, generator=g) * 3
    y = torch.randint(0, c, (b,), generator=g)
    rounds = dict(rounds=200, iterations=5, warmup_rounds=10)
    if impl == "kernel":
        got = ops.gradnorm_scores(z, y)
        want = gradnorm_scores_reference(z, y)
        torch.testing.assert_close(got[0].double(), want[0], rtol=2e-6, atol=0)
        assert torch.equal(got[2], want[2])
        benchmark.pedantic(ops.gradnorm_scores, args=(z, y, y, c), **rounds)
    else:
        benchmark.pedantic(composite, args=(z, y, y, c), **rounds)
