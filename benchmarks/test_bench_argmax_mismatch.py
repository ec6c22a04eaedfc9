"""argmax_mismatch vs the torch composite (argmax != labels, then nonzero for the kept indices),
with a copy of the logits as the memory-bandwidth reference."""

import pytest
import torch
from reference import argmax_mismatch_reference

import dsampling_ext
from targets import target

SHAPES = [(256, 10), (1024, 1000), (1_000_000, 10)]
BIG = "argmax_mismatch 1000000x10"
target(BIG, "kernel", "composite", 1 / 3, ">= 3x faster than the composite")
target(BIG, "kernel", "copy", 2.0, "<= 2x a copy of the logits")


def composite(logits, labels):
    keep = logits.argmax(1) != labels
    kept = keep.nonzero().flatten()
    return keep, kept, kept.numel()


@pytest.mark.parametrize("impl", ["kernel", "composite", "copy"])
@pytest.mark.parametrize("rows,classes", SHAPES)
def test_argmax_mismatch(benchmark, rows, classes, impl):
    benchmark.group = f"argmax_mismatch {rows}x{classes}"
    benchmark.extra_info["impl"] = impl
    g = torch.Generator().manual_seed(rows)
    logits = torch.randn(rows, classes, generator=g)
    labels = torch.randint(0, classes, (rows,), generator=g)
    if impl == "kernel":
        keep, kept, count = dsampling_ext.argmax_mismatch(logits, labels)
        want, _ = argmax_mismatch_reference(logits, labels)
        assert torch.equal(keep, want) and torch.equal(kept[: int(count)], want.nonzero().flatten())
        benchmark(dsampling_ext.argmax_mismatch, logits, labels)
    elif impl == "composite":
        benchmark(composite, logits, labels)
    else:
        out = torch.empty_like(logits)
        benchmark(out.copy_, logits)
