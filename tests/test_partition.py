"""partition_resample / random_subset ops, DynamicPartitionSampler and RandomSubsetSampler."""


import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import dsampling_ext
from dsampling_ext import DynamicPartitionSampler, RandomSubsetSampler
from reference import partial_shuffle, partition_resample_reference
from stats import chi2_critical, chi2_statistic


@st.composite
def partitions(draw):
    n = draw(st.integers(1, 300))
    size = draw(st.integers(0, n))
    k = draw(st.integers(0, min(size, n - size)))
    return n, size, k


@given(case=partitions(), seed=st.integers(-(2**63), 2**63 - 1), offset=st.integers(0, 2**64 - 1), start=st.integers(0, 5))
def test_partition_resample_matches_reference_and_keeps_invariants(case, seed, offset, start):
    n, size, k = case
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(start))
    before = perm.tolist()
    dsampling_ext.partition_resample(perm, size, k, seed, offset)
    after = perm.tolist()
    assert after == partition_resample_reference(before, size, k, seed, offset)
    assert sorted(after) == list(range(n))  # still a permutation
    left_a = set(before[:size]) - set(after[:size])
    assert len(after[:size]) == size and len(left_a) == k  # |A| kept, exactly k moved
    assert set(after[size:]) - set(before[size:]) == left_a


@given(n=st.integers(0, 300), data=st.data(), seed=st.integers(0, 2**64 - 1), offset=st.integers(-(2**63), 2**63 - 1))
def test_random_subset_matches_reference(n, data, seed, offset):
    size = data.draw(st.integers(0, n))
    got = dsampling_ext.random_subset(n, size, seed, offset)
    want = list(range(n))
    partial_shuffle(want, size, seed, offset, 0)
    assert got.tolist() == want[:size] and len(set(got.tolist())) == size


def test_moved_elements_are_uniform():
    # 20000 resamples of the same A (|A| = 50, k = 5, |B| = 150): how often each member of A
    # leaves and each member of B enters; chi-square at the 0.999 level, fixed seed.
    size, n, k, trials = 50, 200, 5, 20000
    left, entered = np.zeros(n), np.zeros(n)
    for t in range(trials):
        perm = torch.arange(n)
        dsampling_ext.partition_resample(perm, size, k, seed=42, offset=t)
        left[perm[size : size + k].numpy()] += 1  # the k that left A sit at the front of B
        entered[perm[:k].numpy()] += 1  # the k that entered sit at the front of A
    assert left[size:].sum() == 0 and entered[:size].sum() == 0
    assert chi2_statistic(left[:size], np.full(size, trials * k / size)) < chi2_critical(size - 1)
    assert chi2_statistic(entered[size:], np.full(n - size, trials * k / (n - size))) < chi2_critical(n - size - 1)


def test_random_subset_inclusion_is_uniform():
    n, size, trials = 100, 10, 20000
    counts = np.zeros(n)
    for t in range(trials):
        counts[dsampling_ext.random_subset(n, size, seed=3, offset=t).numpy()] += 1
    assert chi2_statistic(counts, np.full(n, trials * size / n)) < chi2_critical(n - 1)


@pytest.mark.parametrize(
    "size,k,match",
    [(11, 0, r"size must be an int in \[0, N\]"), (-1, 0, "size must be"), (4, 5, r"k must be an int in \[0, min\(size, N - size\)\] = \[0, 4\]"),
     (8, 3, r"= \[0, 2\]")],
)
def test_partition_resample_rejects_bad_arguments(size, k, match):
    with pytest.raises(ValueError, match=match):
        dsampling_ext.partition_resample(torch.arange(10), size, k)


def test_kernel_checks_and_dtype():
    with pytest.raises(ValueError, match="perm must be a contiguous 1-D int64 tensor"):
        dsampling_ext.partition_resample(torch.arange(10, dtype=torch.int32), 5, 1)
    with pytest.raises(RuntimeError, match=r"partition_resample: k must be in \[0, min\(size, N - size\)\]"):
        torch.ops.dsampling.partition_resample(torch.arange(10), 8, 3, 0, 0)
    with pytest.raises(RuntimeError, match=r"random_subset_: size must be in \[0, 10\]"):
        torch.ops.dsampling.random_subset_(torch.arange(10), 11, 0, 0)


def test_opcheck(device):
    torch.library.opcheck(torch.ops.dsampling.partition_resample.default, (torch.randperm(100, device=device), 30, 10, 5, 1))
    torch.library.opcheck(torch.ops.dsampling.random_subset_.default, (torch.arange(100, device=device), 30, 5, 1))


# ------------------------------------------------------------------ DynamicPartitionSampler


def a_set(sampler):
    return set(sampler.indices.tolist())


def test_initial_subset_and_iteration():
    s = DynamicPartitionSampler(1000, 0.25, seed=1)
    assert s.size == 250 and len(s) == 250
    first = list(s)
    assert sorted(first) == sorted(s.indices.tolist()) and len(set(first)) == 250
    assert list(s) == first  # the same epoch, the same order
    s.set_epoch(1)
    assert list(s) != first and set(s) == set(first)
    no_shuffle = DynamicPartitionSampler(1000, 250, seed=1, shuffle=False)
    assert list(no_shuffle) == no_shuffle.indices.tolist()


def test_variant_decision_table():
    s = DynamicPartitionSampler(1000, 200, replace_fraction=0.5, threshold=0.01, decay=0.9, seed=3)
    a0 = a_set(s)
    assert s.update(0.50) == "keep" and a_set(s) == a0  # +0.50 > delta
    assert s.update(0.505) == "type2"  # +0.005 <= delta: from A* = A0, beta = 0.9**2 * 0.5
    k2 = round(200 * 0.9**2 * 0.5)
    assert s.history[-1]["k"] == k2 == 81 and s.beta == pytest.approx(0.405)
    a2 = a_set(s)
    assert len(a2 & a0) == 200 - k2
    assert s.update(0.40) == "type1"  # a drop: from the current A with beta0
    assert s.history[-1]["k"] == 100 and len(a_set(s) & a2) == 100
    assert s.update(0.40) == "type1"  # no improvement counts as a drop
    assert s.update(0.60) == "keep"
    assert [h["action"] for h in s.history] == ["keep", "type2", "type1", "type1", "keep"]


def test_type2_resamples_from_the_best_set():
    # After a drop (Type-I) and a small improvement that stays below the earlier peak, the
    # default A* is the set just trained; best="global" goes back to the peak's set.
    for best in ("last_improving", "global"):
        s = DynamicPartitionSampler(1000, 200, replace_fraction=0.5, decay=1.0, best=best, seed=5)
        a0 = a_set(s)
        s.update(0.50)
        s.update(0.30)  # type1
        a1 = a_set(s)
        assert s.update(0.305) == "type2"
        source = a1 if best == "last_improving" else a0
        assert len(a_set(s) & source) == 100


def test_base_rule():
    s = DynamicPartitionSampler(1000, 200, rule="base", threshold=0.01)
    assert s.update(0.5) == "keep"
    assert s.update(0.505) == "type1" and s.history[-1]["k"] == 140
    assert s.update(0.9) == "keep"
    assert s.update(0.2) == "type1"


def test_resume_gives_identical_later_epochs():
    accs = [0.3, 0.5, 0.502, 0.45, 0.6, 0.601, 0.59]
    a = DynamicPartitionSampler(500, 0.4, seed=9)
    for epoch, acc in enumerate(accs[:3]):
        a.set_epoch(epoch)
        list(a)
        a.update(acc)
    b = DynamicPartitionSampler(500, 0.4, seed=9)
    b.load_state_dict(a.state_dict())
    for epoch, acc in enumerate(accs[3:], start=3):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        assert list(a) == list(b)
        assert a.update(acc) == b.update(acc)
    assert torch.equal(a.perm, b.perm) and a.history == b.history


def test_sharding_splits_each_epoch_between_ranks():
    full = list(DynamicPartitionSampler(1000, 301, seed=2))
    ranks = [DynamicPartitionSampler(1000, 301, seed=2, num_replicas=2, rank=r) for r in (0, 1)]
    shards = [list(r) for r in ranks]
    assert len(ranks[0]) == len(shards[0]) == len(shards[1]) == 151
    assert shards[0] == full[0::2] and shards[1] == (full + full[:1])[1::2]


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(size=0), ValueError, r"size as a count must be in \[1, 100\]"),
        (dict(size=1.5), ValueError, r"size as a fraction must be in \(0, 1\]"),
        (dict(size="10"), TypeError, "size must be an int count or a float fraction"),
        (dict(size=10, replace_fraction=1.2), ValueError, "replace_fraction must be a number"),
        (dict(size=10, rule="fast"), ValueError, "rule must be one of"),
        (dict(size=10, best="max"), ValueError, "best must be one of"),
        (dict(size=10, rank=3, num_replicas=2), ValueError, r"rank must be an int in \[0, 2\)"),
    ],
)
def test_sampler_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        DynamicPartitionSampler(100, **kwargs)


def test_update_takes_a_fraction():
    s = DynamicPartitionSampler(100, 10)
    with pytest.raises(ValueError, match=r"val_accuracy must be a fraction in \[0, 1\], got 85.0"):
        s.update(85.0)
    assert s.update(torch.tensor(0.5)) == "keep"


def test_dataset_as_data_source():
    assert len(DynamicPartitionSampler(list(range(40)), 0.5)) == 20
    with pytest.raises(ValueError, match="at least 1 sample"):
        DynamicPartitionSampler(0, 1)


# ------------------------------------------------------------------ RandomSubsetSampler


def test_random_subset_sampler():
    s = RandomSubsetSampler(1000, 0.3, seed=4)
    e0 = list(s)
    assert len(s) == len(e0) == 300 and len(set(e0)) == 300 and all(0 <= i < 1000 for i in e0)
    assert list(s) == e0
    s.set_epoch(1)
    e1 = list(s)
    assert set(e1) != set(e0)
    again = RandomSubsetSampler(1000, 0.3, seed=4)
    again.load_state_dict(s.state_dict())
    assert list(again) == e1
    shards = [list(RandomSubsetSampler(1000, 0.3, seed=4, num_replicas=3, rank=r)) for r in range(3)]
    assert sorted(sum(shards, [])) == sorted(e0)
    assert len(RandomSubsetSampler(10, 3)) == 3
