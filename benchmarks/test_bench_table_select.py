"""table_select (one fused call per epoch) against what a user writes in plain torch (masks,
a mean, torch.rand, nonzero: InfoBatch's own recipe; torch.histc + lookup for pmf; sort +
searchsorted for percentile), and against torch.randperm(N), the uniform sampler's own per-epoch
cost. Tables of N samples after one epoch of records: a quarter of them stale or never seen."""

import pytest
import torch
from reference import table_select_reference

from dsampling_ext import ops
from targets import target

SIZES = [50_000, 1_281_167, 10_000_000]
RULES = ["mean", "pmf", "percentile", "mismatch"]
EPOCH, STALENESS, PRUNE = 5, 3, 0.5
for n in SIZES:
    target(f"table_select mean N={n}", "kernel", "randperm", 1.5, "<= 1.5x torch.randperm(N), uniform's epoch cost")
    target(f"table_select mean N={n}", "kernel", "composite", 1 / 3, ">= 3x faster than the torch composite")


def make_table(n):
    g = torch.Generator().manual_seed(n)
    scores = torch.empty(n).exponential_(generator=g)
    seen = torch.randint(EPOCH - 5, EPOCH, (n,), generator=g, dtype=torch.int32)  # -1 .. 4: some never, some stale
    correct = (torch.rand(n, generator=g) < 0.8).to(torch.int8)
    return scores, seen, correct


def composite(rule, scores, seen, correct, g):
    """One epoch's selection as a user would write it with torch ops (not bit-identical: torch.rand)."""
    scored = seen >= 0
    forced = ~scored | (EPOCH - seen > STALENESS)
    q = torch.full_like(scores, 1 - PRUNE)
    if rule == "mean":
        candidate = scores < scores[scored].mean()
    elif rule == "pmf":
        values = scores[scored]
        k = int(values.numel() - 1).bit_length() + 1
        lo, hi = torch.aminmax(values)
        counts = torch.histc(values, bins=k, min=lo.item(), max=hi.item())
        bins = ((scores - lo) / (hi - lo) * k).long().clamp(0, k - 1)
        candidate = counts[bins] / values.numel() > 0.1
    elif rule == "percentile":
        ordered = scores[scored].sort().values
        left, right = torch.searchsorted(ordered, scores), torch.searchsorted(ordered, scores, right=True)
        q = ((left + right + (left < right).long()) / (2 * ordered.numel())) ** 2
        candidate = torch.ones_like(scored)
    else:
        candidate = correct == 1
    candidate &= ~forced
    keep = ~candidate | (torch.rand(scores.numel(), generator=g) < q)
    kept = keep.nonzero().squeeze(1)
    return kept, torch.where(candidate[kept], 1 / (1 - PRUNE), 1.0)


def kernel(rule, scores, seen, correct):
    source = correct if rule == "mismatch" else scores
    return ops.table_select(source, seen, EPOCH, rule, prune=PRUNE, staleness=STALENESS, seed=1, offset=EPOCH)


@pytest.mark.parametrize("impl", ["kernel", "composite", "randperm"])
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("n", SIZES)
def test_table_select(benchmark, n, rule, impl):
    if impl == "randperm" and rule != "mean":
        pytest.skip("one randperm row per size (in the mean group)")
    benchmark.group = f"table_select {rule} N={n}"
    benchmark.extra_info["impl"] = impl
    scores, seen, correct = make_table(n)
    rounds = dict(rounds=5, iterations=1, warmup_rounds=1) if n >= 1_000_000 else dict(rounds=30, iterations=1, warmup_rounds=2)
    if impl == "kernel":
        if n <= 1_281_167:  # correctness first, against the step-by-step reference
            got = kernel(rule, scores, seen, correct)
            want = table_select_reference(correct if rule == "mismatch" else scores, seen, EPOCH, rule, prune=PRUNE,
                                          staleness=STALENESS, seed=1, offset=EPOCH)
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        benchmark.pedantic(kernel, args=(rule, scores, seen, correct), **rounds)
    elif impl == "composite":
        g = torch.Generator().manual_seed(0)
        kept, _ = composite(rule, scores, seen, correct, g)
        assert abs(kept.numel() - kernel(rule, scores, seen, correct)[0].numel()) < 0.02 * n  # the same selection rule
        benchmark.pedantic(composite, args=(rule, scores, seen, correct, g), **rounds)
    else:
        benchmark.pedantic(torch.randperm, args=(n,), **rounds)
