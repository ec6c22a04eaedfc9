"""CUDA kernels against their CPU twins, bit for bit. Skipped without a GPU."""

import pytest
import torch

import dsampling_ext

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 1000, 1_000_003])
@pytest.mark.parametrize("seed,offset", [(0, 0), (-1, 7), (2**40 + 3, 2**33)])
def test_philox_uniform_identical(n, seed, offset):
    cpu = dsampling_ext.philox_uniform(n, seed, offset)
    cuda = dsampling_ext.philox_uniform(n, seed, offset, device="cuda")
    assert torch.equal(cuda.cpu(), cpu)


def _inputs(dtype, n, shift):
    g = torch.Generator().manual_seed(n)
    return (torch.empty(n, dtype=torch.float64).exponential_(generator=g) + shift).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n", [1, 7, 512, 100_000, 3_000_001])
@pytest.mark.parametrize("bins", [1, 10, "sturges", 5000, 20_000])
@pytest.mark.parametrize("range", [None, (0.5, 3.0)])
def test_loss_histogram_identical(dtype, n, bins, range):
    values = _inputs(dtype, n, 0.0)
    try:
        want_counts, want_edges = dsampling_ext.loss_histogram(values, bins, range)
    except RuntimeError as error:  # edges repeat in this dtype: the CPU says so; CUDA cannot sync
        assert "edges repeat" in str(error)
        return
    counts, edges = dsampling_ext.loss_histogram(values.cuda(), bins, range)
    assert torch.equal(counts.cpu(), want_counts)
    assert torch.equal(edges.cpu(), want_edges)


def test_loss_histogram_non_contiguous_and_constant():
    base = torch.randn(300, 41, device="cuda")
    for view in (base[:, ::3], base.t()):
        counts, edges = dsampling_ext.loss_histogram(view, 9)
        want_counts, want_edges = dsampling_ext.loss_histogram(view.cpu(), 9)
        assert torch.equal(counts.cpu(), want_counts) and torch.equal(edges.cpu(), want_edges)
    counts, edges = dsampling_ext.loss_histogram(torch.full((5,), 2.0, device="cuda"), 4)
    assert counts.tolist() == [0, 0, 5, 0]  # numpy: [1.5, 2.5] in 4 bins, 2.0 starts bin 2
    assert edges[0].item() == 1.5 and edges[-1].item() == 2.5


def test_non_finite_values_give_nan_edges_and_no_counts_without_a_sync():
    counts, edges = dsampling_ext.loss_histogram(torch.tensor([0.5, float("nan"), 1.0], device="cuda"), 3)
    assert counts.sum().item() == 0 and torch.isnan(edges).all()


def test_compile_with_cuda_graphs_matches_eager():
    values = torch.rand(4096, device="cuda")
    compiled = torch.compile(lambda v: dsampling_ext.loss_histogram(v, 12), fullgraph=True, mode="reduce-overhead")
    for _ in range(3):
        counts, edges = compiled(values)
    want_counts, want_edges = dsampling_ext.loss_histogram(values, 12)
    assert torch.equal(counts, want_counts) and torch.equal(edges, want_edges)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("rule,keep", [("pmf", "bernoulli"), ("pmf", "fraction"), ("pmf", "top"), ("cdf", "bernoulli")])
@pytest.mark.parametrize("clip_sigma,clip", [(None, "clamp"), (1.0, "clamp"), (0.5, "drop")])
@pytest.mark.parametrize("capacity,batch", [(512, 128), (4096, 1024), (100, 300)])
def test_histogram_select_identical(dtype, rule, keep, clip_sigma, clip, capacity, batch):
    g = torch.Generator().manual_seed(capacity + batch)
    opts = dict(rule=rule, keep=keep, clip_sigma=clip_sigma, clip=clip, threshold=0.05, keep_fraction=0.4, seed=11)
    h_cpu, s_cpu = torch.zeros(capacity, dtype=dtype), torch.zeros(2, dtype=torch.int64)
    h_gpu, s_gpu = h_cpu.cuda(), s_cpu.cuda()
    for offset in range(6):
        losses = torch.empty(batch, dtype=dtype).exponential_(generator=g)
        losses[::17] = losses[3]  # ties
        keys = torch.randperm(10 * batch, generator=g)[:batch] if offset % 2 else None
        keep_cpu, p_cpu = dsampling_ext.histogram_select(h_cpu, s_cpu, losses, offset=offset, keys=keys, **opts)
        keep_gpu, p_gpu = dsampling_ext.histogram_select(
            h_gpu, s_gpu, losses.cuda(), offset=offset, keys=None if keys is None else keys.cuda(), **opts)
        assert torch.equal(p_gpu.cpu(), p_cpu) and torch.equal(keep_gpu.cpu(), keep_cpu)
    assert torch.equal(h_gpu.cpu(), h_cpu) and torch.equal(s_gpu.cpu(), s_cpu)


def test_selector_runs_on_cuda_and_moves_its_history():
    sel = dsampling_ext.LossHistogramSelector(warmup_epochs=0)
    keep = sel.select(torch.rand(64, device="cuda"))
    assert keep.is_cuda and sel.loss_history.is_cuda
    sel.select(torch.rand(64))
    assert not sel.loss_history.is_cuda and sel.loss_history.numel() == 128


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("rows,classes", [(1, 1), (257, 10), (1024, 1000), (100_000, 10)])
@pytest.mark.parametrize("margin", [None, 0.3])
def test_argmax_mismatch_identical(dtype, rows, classes, margin):
    g = torch.Generator().manual_seed(rows * classes)
    logits = torch.randn(rows, classes, generator=g).to(dtype)
    logits[::7, 0] = logits[::7, -1]  # ties
    logits[::13, 1 % classes] = float("inf")
    labels = torch.randint(0, classes, (rows,), generator=g)
    cpu = dsampling_ext.argmax_mismatch(logits, labels, margin)
    gpu = dsampling_ext.argmax_mismatch(logits.cuda(), labels.cuda(), margin)
    for a, b in zip(cpu, gpu):
        assert torch.equal(a, b.cpu())


@pytest.mark.parametrize("n,size,k", [(10, 5, 5), (1000, 300, 200), (100_000, 50_000, 35_000)])
def test_partition_ops_identical(n, size, k):
    cpu = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    gpu = cpu.cuda()
    dsampling_ext.partition_resample(cpu, size, k, seed=3, offset=9)
    dsampling_ext.partition_resample(gpu, size, k, seed=3, offset=9)
    assert torch.equal(gpu.cpu(), cpu)
    assert torch.equal(dsampling_ext.random_subset(n, size, 4, 2, device="cuda").cpu(), dsampling_ext.random_subset(n, size, 4, 2))
