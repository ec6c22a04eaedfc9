"""Per-epoch cost of the dynamic-training sampler (a Type-I resample of half the dataset with
beta 0.7, then yielding A, N/2 indices, shuffled) and of the random-subset control, against a
uniform epoch over as many samples.

Equal work is N/2 shuffled indices, consumed as a DataLoader consumes a sampler: every row is
timed as ``list(iterator)``. The target's baseline is an iterator over
``torch.randperm(N/2).tolist()``, the least work that produces them. For reference,
``random_sampler_half`` is what ``DataLoader(Subset(data, A), shuffle=True)`` pays per epoch,
``RandomSampler`` over N/2; it yields one index at a time through a generator and draws a
second, discarded permutation, so it would flatter the sampler as the baseline.
"""

import pytest
import torch
from torch.utils.data import RandomSampler

from dsampling_ext import DynamicPartitionSampler, RandomSubsetSampler
from targets import target

SIZES = [50_000, 1_281_167, 10_000_000]
IMPLS = ["sampler", "random_subset", "randperm_half", "random_sampler_half"]
target("sampler epoch N=1281167", "sampler", "randperm_half", 1.5,
       "resample + yield N/2 <= 1.5x randperm(N/2).tolist()")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("n", SIZES)
def test_sampler_epoch(benchmark, n, impl):
    benchmark.group = f"sampler epoch N={n}"
    benchmark.extra_info["impl"] = impl
    rounds = dict(rounds=5, iterations=1, warmup_rounds=1) if n >= 1_000_000 else dict(rounds=20, iterations=1, warmup_rounds=1)
    half = round(n * 0.5)
    if impl == "sampler":
        sampler = DynamicPartitionSampler(n, 0.5, seed=0)
        accuracy = iter([0.5 - 1e-6 * i for i in range(10**6)])  # always a drop: a Type-I resample each epoch

        def epoch():
            sampler.update(next(accuracy))
            sampler.set_epoch(sampler.updates)
            return list(sampler)

        out = benchmark.pedantic(epoch, **rounds)
        assert len(out) == half and sampler.last_action == "type1"
    elif impl == "random_subset":
        sampler = RandomSubsetSampler(n, 0.5, seed=0)
        out = benchmark.pedantic(lambda: list(sampler), **rounds)
        assert len(out) == half
    elif impl == "randperm_half":
        out = benchmark.pedantic(lambda: list(iter(torch.randperm(half).tolist())), **rounds)
        assert len(out) == half
    else:
        subset = RandomSampler(range(half))
        out = benchmark.pedantic(lambda: list(subset), **rounds)
        assert len(out) == half
