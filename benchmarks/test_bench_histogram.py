"""loss_histogram vs what a user would write (aminmax + torch.histc + linspace) vs numpy.histogram,
with a plain copy of the same tensor as the memory-bandwidth reference."""

import numpy as np
import pytest
import torch
from reference import histogram_composite

import dsampling_ext
from dsampling_ext.ops import bin_count
from targets import target

SIZES = [512, 50_000, 1_281_167, 10_000_000]
IMPLS = ["kernel", "composite", "numpy", "copy"]
BIG = f"loss_histogram N={SIZES[-1]}"
target(BIG, "kernel", "copy", 2.0, "reads the input at most twice")
target(BIG, "kernel", "composite", 1 / 3, ">= 3x faster than the torch composite")


def _losses(n):
    # Cross-entropy-like: exponential, float32.
    return torch.empty(n).exponential_(generator=torch.Generator().manual_seed(n))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("n", SIZES)
def test_loss_histogram(benchmark, n, impl):
    x = _losses(n)
    k = bin_count("sturges", n)
    benchmark.group = f"loss_histogram N={n}"
    benchmark.extra_info["impl"] = impl
    if impl == "kernel":
        counts, edges = dsampling_ext.loss_histogram(x, k)
        want_counts, want_edges = np.histogram(x.numpy(), bins=k)
        np.testing.assert_array_equal(counts.numpy(), want_counts)
        np.testing.assert_array_equal(edges.numpy(), want_edges)
        benchmark(dsampling_ext.loss_histogram, x, k)
    elif impl == "composite":
        counts, _ = histogram_composite(x, k)
        assert counts.sum().item() == n
        benchmark(histogram_composite, x, k)
    elif impl == "numpy":
        xn = x.numpy()
        benchmark(np.histogram, xn, k)
    else:
        dst = torch.empty_like(x)
        benchmark(dst.copy_, x)
