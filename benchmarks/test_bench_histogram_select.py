"""histogram_select (one fused call) vs what a user would write in plain torch, and vs a training step.

The composite is the ADONIS step as a user writes it without the library: a tensor history kept
with cat, mean and (population) std, clamp, torch.histc with Sturges bins, the PMF lookup of
each loss's bin, torch.rand for the Bernoulli draws. The bit-exact reference of tests/reference.py
(Philox in numpy, the kernel's summation order) only checks the kernel before it is timed.

Rows: ``kernel`` is ``dsampling_ext.histogram_select`` on a history tensor, ``selector`` is
``LossHistogramSelector.select`` (what a training loop calls), ``composite`` the plain torch
step. They run on one thread: the op is serial at these sizes, and one thread is the composite's
best case (torch.histc's parallel path costs more than it saves here, and far more on a shared
machine). Sizes: the paper's history 512 with batch 128 and 256, and history 4096 with batch
1024; and history 1 with batch 1, where the op's cost is that of one call (16 arguments from
Python, two new tensors). The training step (default threads) is one forward + backward + SGD
step of python/adonis_example.py's CNN at batch 256 (16x16 images), the step the selection is
meant to be cheap next to.
"""

import math
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
FLOOR = (1, 1)  # no target: the cost of one call of the op, next to the composite's
for history, batch in CONFIGS:
    target(f"histogram_select H={history} B={batch}", "kernel", "composite", 0.1, ">= 10x faster than the plain torch composite")
target("histogram_select H=512 B=256", "kernel", "train_step", 0.02, "<= 2% of a training step at batch 256")


class TorchComposite:
    """ADONIS selection in plain torch (defaults: clip at mean -+ 1 sd, Sturges bins, p > 0.1, keep 0.3)."""

    def __init__(self, capacity, threshold=0.1, clip_sigma=1.0, keep_fraction=0.3):
        self.capacity, self.threshold, self.clip_sigma, self.keep_fraction = capacity, threshold, clip_sigma, keep_fraction
        self.history = torch.empty(0)

    def __call__(self, losses):
        h = self.history = torch.cat([self.history, losses])[-self.capacity :]
        sd, mean = torch.std_mean(h, correction=0)
        lo, hi = (mean - self.clip_sigma * sd).item(), (mean + self.clip_sigma * sd).item()
        clipped = h.clamp(lo, hi)
        first, last = (v.item() for v in torch.aminmax(clipped))
        k = math.ceil(math.log2(h.numel())) + 1  # Sturges
        counts = torch.histc(clipped, bins=k, min=first, max=last)
        width = (last - first) / k or 1.0
        bins = ((losses.clamp(lo, hi) - first) / width).long().clamp_(0, k - 1)
        p = counts[bins] / h.numel()
        return (p > self.threshold) & (torch.rand(losses.shape) < self.keep_fraction), p


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _stream(batch, count=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.empty(batch).exponential_(generator=g) for _ in range(count)]


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("impl", ["kernel", "selector", "composite"])
@pytest.mark.parametrize("history,batch", CONFIGS + [FLOOR])
def test_histogram_select(benchmark, history, batch, impl):
    benchmark.group = f"histogram_select H={history} B={batch}"
    benchmark.extra_info["impl"] = impl
    stream = _stream(batch)
    # Correctness first, on a warm history: the fused op bit for bit against the reference, and
    # the composite's PMF against the op's (histc's float32 binning may move a value that lies
    # within rounding of an edge, so at most 1% of the losses may differ).
    h, s = torch.zeros(history), torch.zeros(2, dtype=torch.int64)
    ref, composite = HistogramSelectReference(history), TorchComposite(history)
    differ = total = 0
    for offset, losses in enumerate(stream[:8]):
        keep, p = dsampling_ext.histogram_select(h, s, losses, offset=offset)
        want_keep, want_p = ref(losses, offset=offset)
        assert torch.equal(keep, want_keep) and torch.equal(p, want_p)
        differ, total = differ + int((composite(losses)[1].double() - p).abs().gt(1e-6).sum()), total + batch
    assert differ <= 0.01 * total, (differ, total)
    step = iter(range(10**9))
    if impl == "kernel":
        benchmark(lambda: dsampling_ext.histogram_select(h, s, stream[next(step) % len(stream)]))
    elif impl == "selector":
        selector = dsampling_ext.LossHistogramSelector(history=history, warmup_epochs=0)
        benchmark(lambda: selector.select(stream[next(step) % len(stream)]))
    else:
        benchmark(lambda: composite(stream[next(step) % len(stream)]))


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
