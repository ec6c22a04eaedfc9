"""Per-epoch cost of the dynamic-training sampler (a Type-I resample of half the dataset with
beta 0.7, then yielding A shuffled) and of the random-subset control, against what the uniform
baseline pays per epoch: torch.randperm(N), and randperm(N).tolist() as RandomSampler yields it."""

import pytest
import torch

from dsampling_ext import DynamicPartitionSampler, RandomSubsetSampler
from targets import target

SIZES = [50_000, 1_281_167, 10_000_000]
IMPLS = ["sampler", "random_subset", "randperm", "randperm_tolist"]
target("sampler epoch N=1281167", "sampler", "randperm_tolist", 1.5, "resample + yield <= 1.5x RandomSampler's epoch")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("n", SIZES)
def test_sampler_epoch(benchmark, n, impl):
    benchmark.group = f"sampler epoch N={n}"
    benchmark.extra_info["impl"] = impl
    rounds = dict(rounds=5, iterations=1, warmup_rounds=1) if n >= 1_000_000 else dict(rounds=20, iterations=1, warmup_rounds=1)
    if impl == "sampler":
        sampler = DynamicPartitionSampler(n, 0.5, seed=0)
        accuracy = iter([0.5 - 1e-6 * i for i in range(10**6)])  # always a drop: a Type-I resample each epoch

        def epoch():
            sampler.update(next(accuracy))
            sampler.set_epoch(sampler.updates)
            return list(sampler)

        out = benchmark.pedantic(epoch, **rounds)
        assert len(out) == round(n * 0.5) and sampler.last_action == "type1"
    elif impl == "random_subset":
        sampler = RandomSubsetSampler(n, 0.5, seed=0)
        assert len(list(sampler)) == round(n * 0.5)
        benchmark.pedantic(lambda: list(sampler), **rounds)
    elif impl == "randperm":
        benchmark.pedantic(torch.randperm, args=(n,), **rounds)
    else:
        benchmark.pedantic(lambda: torch.randperm(n).tolist(), **rounds)
