"""The score-table ops (table_select, table_record_) against their step-by-step references."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from dsampling_ext import ops
from reference import philox_uniform, table_record_reference, table_select_reference
from stats import Z_999

RULES = ["mean", "pmf", "percentile", "mismatch"]


@st.composite
def tables(draw, max_n=3000):
    """(scores, seen_epoch, epoch) with repeated values, unscored and stale entries."""
    n = draw(st.integers(1, max_n))
    epoch = draw(st.integers(0, 6))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    seen = torch.randint(-1, epoch + 1, (n,), generator=g, dtype=torch.int32)
    if draw(st.booleans()):  # a pool of a few values: ties, repeated bins
        pool = torch.tensor(draw(st.lists(st.floats(0, 20, width=32), min_size=1, max_size=5)))
        scores = pool[torch.randint(0, pool.numel(), (n,), generator=g)]
    else:
        scores = torch.empty(n).exponential_(generator=g) * draw(st.sampled_from([1e-3, 1.0, 50.0]))
    return scores, seen, epoch


options = st.fixed_dictionaries({
    "prune": st.sampled_from([0.0, 0.3, 0.5, 0.9]),
    "staleness": st.integers(1, 4),
    "bins": st.one_of(st.just("sturges"), st.integers(1, 40)),
    "threshold": st.sampled_from([0.0, 0.05, 0.1, 0.3, 0.9]),
    "beta": st.sampled_from([0.5, 1.0, 2.0, 2.5, 3.0]),
    "seed": st.integers(-(2**63), 2**63 - 1),
    "offset": st.integers(0, 2**64 - 1),
})


def select_both(scores, seen, epoch, rule, **opts):
    got = ops.table_select(scores, seen, epoch, rule, **opts)
    want = table_select_reference(scores, seen, epoch, rule, **opts)
    return got, want


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@given(table=tables(), opts=options, reweight=st.sampled_from([None, True, False]))
def test_matches_reference(rule, dtype, table, opts, reweight):
    scores, seen, epoch = table
    if rule == "mismatch":
        if dtype == torch.float64:
            return  # correctness has one dtype
        scores = (scores > scores.median()).to(torch.int8) - (scores == scores.min()).to(torch.int8)  # -1, 0, 1
    else:
        scores = scores.to(dtype)
    if rule == "percentile":
        reweight = False if reweight else reweight
    (idx, w), (want_idx, want_w) = select_both(scores, seen, epoch, rule, reweight=reweight, **opts)
    assert idx.tolist() == want_idx.tolist()
    assert torch.equal(w, want_w)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("n", [1, 4095, 4096, 3 * 4096 + 17, 100_000])
def test_large_and_tile_boundary_tables(rule, n):
    g = torch.Generator().manual_seed(n)
    seen = torch.randint(-1, 3, (n,), generator=g, dtype=torch.int32)
    scores = torch.empty(n).exponential_(generator=g)
    if rule == "mismatch":
        scores = torch.randint(-1, 2, (n,), generator=g, dtype=torch.int8)
    (idx, w), (want_idx, want_w) = select_both(scores, seen, 3, rule, staleness=2, seed=5, offset=7)
    assert torch.equal(idx, want_idx) and torch.equal(w, want_w)


def test_forced_entries_are_always_kept_with_weight_one():
    # seen -1 (never), epoch 10 - 5 > staleness 3 (stale): kept whatever the draw, even with prune=1.
    scores = torch.tensor([0.0, 0.0, 0.0, 5.0, 0.0])
    seen = torch.tensor([-1, 5, 9, 9, 7], dtype=torch.int32)
    idx, w = ops.table_select(scores, seen, 10, "mean", prune=1.0, staleness=3, reweight=False)
    # index 2 and 4 are fresh below-mean candidates (dropped: prune 1); 3 is above the mean.
    assert idx.tolist() == [0, 1, 3] and w.tolist() == [1.0, 1.0, 1.0]


def test_mean_rule_by_hand():
    # scored 1, 2, 3, 10 (mean 4) -> candidates 1, 2, 3; prune 0.5, drawn with philox_uniform.
    scores = torch.tensor([1.0, 2.0, 3.0, 10.0, 0.0])
    seen = torch.tensor([0, 0, 0, 0, -1], dtype=torch.int32)
    u = philox_uniform(5, 9, 1)
    idx, w = ops.table_select(scores, seen, 1, "mean", prune=0.5, seed=9, offset=1)
    kept_candidates = [i for i in range(3) if u[i] < 0.5]
    assert idx.tolist() == kept_candidates + [3, 4]
    assert w.tolist() == [2.0] * len(kept_candidates) + [1.0, 1.0]


def test_pmf_rule_uses_the_numpy_histogram_of_the_scored_values():
    # 16 scored values: 10 at 0.0, 2 at 1.0, 4 at 3.0 -> Sturges 5 bins of 0.6 over [0, 3]; PMF 10/16,
    # 2/16, 4/16. With threshold 0.2 the candidates are the 0.0s and the 3.0s.
    scores = torch.tensor([0.0] * 10 + [1.0] * 2 + [3.0] * 4 + [99.0])
    seen = torch.tensor([0] * 16 + [-1], dtype=torch.int32)
    counts, _ = np.histogram(scores[:16].numpy(), bins=5)
    assert counts.tolist() == [10, 2, 0, 0, 4]
    idx, w = ops.table_select(scores, seen, 1, "pmf", prune=1.0, threshold=0.2, reweight=False)
    assert idx.tolist() == [10, 11, 16]


def test_percentile_rule_keep_probability():
    # 20000 distinct scored values: a value's keep probability is its percentile squared.
    n = 20000
    scores = torch.randperm(n).float()
    seen = torch.zeros(n, dtype=torch.int32)
    idx, w = ops.table_select(scores, seen, 1, "percentile", beta=2.0, seed=3)
    pct = (2 * scores.double() + 1) / (2 * n)  # left = rank, right = rank + 1, +1 for left < right
    expected = float((pct**2).sum())
    sd = math.sqrt(float((pct**2 * (1 - pct**2)).sum()))
    assert abs(idx.numel() - expected) < Z_999 * sd
    assert torch.equal(w, torch.ones_like(w))
    top = scores[idx]
    assert float(top.mean()) > 0.7 * n  # E[rank | kept] = 3n/4 for beta 2


@pytest.mark.parametrize("prune", [0.25, 0.5, 0.8])
def test_kept_share_of_candidates_is_one_minus_prune(prune):
    n = 50_000
    scores = torch.rand(n, generator=torch.Generator().manual_seed(1))
    seen = torch.zeros(n, dtype=torch.int32)
    idx, w = ops.table_select(scores, seen, 1, "mean", prune=prune, seed=11)
    candidates = int((scores.double() < scores.double().mean()).sum())
    kept_candidates = int((w > 1).sum())
    sd = math.sqrt(candidates * prune * (1 - prune))
    assert abs(kept_candidates - candidates * (1 - prune)) < Z_999 * sd
    assert w[w > 1].unique().tolist() == [pytest.approx(1 / (1 - prune), rel=1e-7)]


def test_empty_table():
    idx, w = ops.table_select(torch.zeros(0), torch.zeros(0, dtype=torch.int32), 0)
    assert idx.shape == (0,) and w.shape == (0,) and idx.dtype == torch.int64 and w.dtype == torch.float32


def sample_select_args():
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(300, generator=g)
    seen = torch.randint(-1, 2, (300,), generator=g, dtype=torch.int32)
    for rule in range(3):
        yield (scores, seen, 2, rule, 0.5, 3, 1, 1, 0.1, 2.0, rule != 2, 7, 1)
    yield ((scores > 0.5).to(torch.int8), seen, 2, 3, 0.5, 3, 1, 1, 0.1, 2.0, False, 7, 1)


@pytest.mark.parametrize("args", list(sample_select_args()), ids=RULES)
def test_table_select_opcheck(args):
    torch.library.opcheck(torch.ops.dsampling.table_select.default, args)


def test_table_record_opcheck():
    scores, correct, seen = torch.zeros(50), torch.full((50,), -1, dtype=torch.int8), torch.full((50,), -1, dtype=torch.int32)
    idx, losses = torch.tensor([3, 7, 9]), torch.rand(3)
    logits, targets = torch.randn(3, 4), torch.tensor([0, 1, 3])
    torch.library.opcheck(torch.ops.dsampling.table_record_.default, (scores, correct, seen, idx, losses, 2, logits, targets))
    torch.library.opcheck(torch.ops.dsampling.table_record_.default, (scores, correct, seen, idx, losses, 2))


def test_table_select_compiles_with_a_data_dependent_size():
    scores, seen = torch.rand(1000), torch.zeros(1000, dtype=torch.int32)

    @torch.compile(fullgraph=True)
    def select(s, e):
        idx, w = ops.table_select(s, e, 1, "mean", seed=2, offset=1)
        return idx * 2, w.sum()

    idx, total = select(scores, seen)
    want_idx, want_w = table_select_reference(scores, seen, 1, "mean", seed=2, offset=1)
    assert torch.equal(idx, want_idx * 2) and float(total) == pytest.approx(float(want_w.sum()))


# ----------------------------------------------------------------------------- table_record_


def empty_table(n, dtype=torch.float32):
    return torch.zeros(n, dtype=dtype), torch.full((n,), -1, dtype=torch.int8), torch.full((n,), -1, dtype=torch.int32)


@given(steps=st.lists(st.tuples(st.integers(0, 60), st.booleans(), st.integers(0, 9)), min_size=1, max_size=6),
       classes=st.integers(1, 5), loss_dtype=st.sampled_from([torch.float16, torch.bfloat16, torch.float32, torch.float64]),
       index_dtype=st.sampled_from([torch.int64, torch.int32]))
def test_record_matches_reference(steps, classes, loss_dtype, index_dtype):
    n = 40
    table = empty_table(n, torch.float64)
    records = []
    for size, with_logits, epoch in steps:
        g = torch.Generator().manual_seed(size * 31 + epoch)
        idx = torch.randint(0, n, (size,), generator=g).to(index_dtype)  # duplicates included
        losses = torch.rand(size, generator=g).to(loss_dtype)
        logits = torch.randn(size, classes, generator=g) if with_logits else None
        if logits is not None and size:
            logits[0, :] = float("nan") if size % 2 else 0.0  # NaN row: argmax 0; tie row: first index
        targets = torch.randint(0, classes, (size,), generator=g) if with_logits else None
        ops.table_record_(*table, idx, losses, epoch, logits, targets)
        records.append((idx, losses.double(), logits, targets, epoch))
    want = table_record_reference(n, records)
    assert torch.equal(table[0], want[0]) and torch.equal(table[1], want[1]) and torch.equal(table[2], want[2])


def test_an_index_recorded_twice_in_one_call_keeps_its_last_record():
    # Rows 0, 2 and 3 record index 1: loss, epoch and correctness all come from row 3 (the rule of
    # ScoreTable.sync's replay; the CUDA twin must not mix fields of different rows).
    scores, correct, seen = empty_table(4)
    idx = torch.tensor([1, 2, 1, 1])
    losses = torch.tensor([0.25, 0.5, 0.75, 1.5])
    logits = torch.tensor([[0.0, 1.0], [1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])  # argmax 1, 0, 0, 1
    targets = torch.tensor([1, 0, 1, 0])  # right, right, wrong, wrong
    ops.table_record_(scores, correct, seen, idx, losses, 5, logits, targets)
    assert scores.tolist() == [0.0, 1.5, 0.5, 0.0]
    assert correct.tolist() == [-1, 0, 1, -1]
    assert seen.tolist() == [-1, 5, 5, -1]
    ops.table_record_(scores, correct, seen, torch.tensor([1, 1]), torch.tensor([2.0, 0.125]), 6,
                      torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([1, 1]))
    assert (scores[1].item(), correct[1].item(), seen[1].item()) == (0.125, 0, 6)


@pytest.mark.parametrize("bad, match", [
    (dict(indices=torch.tensor([0, 50])), r"indices must be in \[0, 50\).*got 50 at index 1"),
    (dict(indices=torch.tensor([-1, 2])), r"indices must be in \[0, 50\).*got -1 at index 0"),
    (dict(losses=torch.tensor([1.0, float("nan")])), r"losses must be finite, got nan at index 1"),
    (dict(losses=torch.tensor([float("inf"), 1.0])), r"losses must be finite, got inf at index 0"),
    (dict(losses=torch.tensor(1.0)), r"losses must have shape \[2\]"),
    (dict(losses=torch.tensor([1, 2])), r"losses must be float16, bfloat16, float32 or float64"),
    (dict(indices=torch.tensor([0.0, 1.0])), r"indices must be int64 or int32"),
    (dict(targets=torch.tensor([0, 3])), r"targets must be in \[0, 3\), got 3 at index 1"),
    (dict(logits=None), r"logits and targets must be given together"),
    (dict(logits=torch.randn(3, 3)), r"logits must have shape \[2, C\]"),
    (dict(epoch=-1), r"epoch must be an int >= 0"),
])
def test_record_rejects_bad_inputs(bad, match):
    args = dict(indices=torch.tensor([0, 1]), losses=torch.tensor([1.0, 2.0]), epoch=0, logits=torch.randn(2, 3),
                targets=torch.tensor([0, 2]))
    args.update(bad)
    table = empty_table(50)
    before = [t.clone() for t in table]
    with pytest.raises((RuntimeError, ValueError, TypeError), match=match):
        ops.table_record_(*table, **args)
    assert all(torch.equal(a, b) for a, b in zip(table, before))  # nothing half-written


@pytest.mark.parametrize("bad, match", [
    (dict(rule="median"), r"rule must be one of"),
    (dict(prune=1.5), r"prune must be a number in \[0, 1\]"),
    (dict(prune=1.0, reweight=True), r"reweight must be False with prune=1.0"),
    (dict(rule="percentile", reweight=True), r"reweight must be False for rule='percentile'"),
    (dict(staleness=0), r"staleness must be an int >= 1"),
    (dict(threshold=1.0), r"threshold must be a number in \[0, 1\)"),
    (dict(beta=0.0), r"beta must be a finite number > 0"),
    (dict(bins="scott"), r"bins must be an int or one of"),
    (dict(epoch=-2), r"epoch must be an int >= 0"),
    (dict(seen_epoch=torch.zeros(4, dtype=torch.int64)), r"seen_epoch must be a contiguous int32 tensor of shape \[4\]"),
    (dict(seen_epoch=torch.zeros(3, dtype=torch.int32)), r"seen_epoch must be a contiguous int32 tensor of shape \[4\]"),
    (dict(scores=torch.zeros(4, dtype=torch.float16)), r"scores must be float32 or float64"),
    (dict(rule="mismatch"), r"scores must be int8 correctness"),
    (dict(scores=torch.tensor([1.0, float("nan"), 0.0, 0.0])), r"scores must be finite where seen_epoch >= 0, got nan at index 1"),
])
def test_select_rejects_bad_inputs(bad, match):
    args = dict(scores=torch.rand(4), seen_epoch=torch.zeros(4, dtype=torch.int32), epoch=1, rule="mean")
    args.update(bad)
    with pytest.raises((RuntimeError, ValueError, TypeError), match=match):
        ops.table_select(**args)


def test_unscored_nan_is_ignored():
    # A NaN in an entry that was never recorded is not a score.
    scores = torch.tensor([float("nan"), 1.0, 2.0])
    idx, _ = ops.table_select(scores, torch.tensor([-1, 0, 0], dtype=torch.int32), 1, "mean", prune=1.0, reweight=False)
    assert idx.tolist() == [0, 2]


# ----------------------------------------------------------------------------- pinned boundaries


def test_a_uniform_of_exactly_zero_is_not_below_a_zero_keep_probability():
    # Philox gives exactly 0.0 at (seed 0, offset 20, element 394791): with prune=1.0 (q = 0) a
    # candidate is kept iff u < 0, never; `u <= q` would keep that one.
    n = 394_792
    assert ops.philox_uniform(n, 0, 20)[-1].item() == 0.0
    scores = torch.zeros(n)
    scores[0] = 1.0  # mean 1/n: every other index is a candidate (0 < mean), index 0 is not
    seen = torch.zeros(n, dtype=torch.int32)
    kept, weights = ops.table_select(scores, seen, 1, "mean", prune=1.0, reweight=False, seed=0, offset=20)
    assert kept.tolist() == [0] and weights.tolist() == [1.0]


def test_pmf_candidates_are_bins_strictly_denser_than_the_threshold():
    # 16 scored values in 4 bins over [0, 4]: 2, 6, 4, 4 values, PMF 2/16 = 0.125 exactly, 0.375,
    # 0.25, 0.25. With threshold 0.125 the first bin is not a candidate (PMF > threshold, not >=):
    # prune=1.0 drops every candidate, so exactly the first bin's two indices are kept.
    scores = torch.tensor([0.0, 0.5] + [1.5] * 6 + [2.5] * 4 + [3.0, 3.25, 3.5, 4.0], dtype=torch.float64)
    counts, edges = ops.loss_histogram(scores, 4)
    assert counts.tolist() == [2, 6, 4, 4] and edges.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    seen = torch.zeros(16, dtype=torch.int32)
    kept, _ = ops.table_select(scores, seen, 1, "pmf", prune=1.0, reweight=False, bins=4, threshold=2 / 16)
    assert kept.tolist() == [0, 1]
    kept, _ = ops.table_select(scores, seen, 1, "pmf", prune=1.0, reweight=False, bins=4, threshold=0.124)
    assert kept.tolist() == []
