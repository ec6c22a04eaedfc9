"""histogram_select (one fused call) vs the step-by-step PyTorch composite, and vs a training step.

Sizes: the paper's history 512 with batch 128 and 256, and history 4096 with batch 1024.
The training step is one forward + backward + SGD step of python/adonis_example.py's CNN at
batch 256 (16x16 images), the step the selection is meant to be cheap next to.
"""

import sys
from pathlib import Path

import pytest
import torch
from reference import HistogramSelectReference

import dsampling_ext
from targets import target

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))
from toy_data import small_cnn  # noqa: E402

CONFIGS = [(512, 128), (512, 256), (4096, 1024)]
for history, batch in CONFIGS:
    target(f"histogram_select H={history} B={batch}", "kernel", "composite", 0.1, ">= 10x faster than the composite")
target("histogram_select H=512 B=256", "kernel", "train_step", 0.02, "<= 2% of a training step at batch 256")


def _stream(batch, count=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.empty(batch).exponential_(generator=g) for _ in range(count)]


@pytest.mark.parametrize("impl", ["kernel", "composite"])
@pytest.mark.parametrize("history,batch", CONFIGS)
def test_histogram_select(benchmark, history, batch, impl):
    benchmark.group = f"histogram_select H={history} B={batch}"
    benchmark.extra_info["impl"] = impl
    stream = _stream(batch)
    # Correctness first: the fused op and the composite agree on a warm history.
    h, s = torch.zeros(history), torch.zeros(2, dtype=torch.int64)
    ref = HistogramSelectReference(history)
    for offset, losses in enumerate(stream[:8]):
        keep, p = dsampling_ext.histogram_select(h, s, losses, offset=offset)
        want_keep, want_p = ref(losses, offset=offset)
        assert torch.equal(keep, want_keep) and torch.equal(p, want_p)
    step = iter(range(10**9))
    if impl == "kernel":
        benchmark(lambda: dsampling_ext.histogram_select(h, s, stream[next(step) % len(stream)]))
    else:
        benchmark(lambda: ref(stream[next(step) % len(stream)]))


def test_train_step(benchmark):
    benchmark.group = "histogram_select H=512 B=256"
    benchmark.extra_info["impl"] = "train_step"
    torch.manual_seed(0)
    model = small_cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(256, 1, 16, 16), torch.randint(0, 10, (256,))

    def step():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    benchmark(step)
