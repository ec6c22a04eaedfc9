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
