"""centroid_distances and PrototypeSelection on CUDA against the CPU, bit for bit. Skipped
without a GPU."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dsampling_ext import IndexedDataset, PrototypeSelection, ops

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def clustered(n, d, k, seed, dtype, used=None):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, used or k, (n,), generator=g)
    x = 4 * torch.randn(k, d, generator=g, dtype=torch.float64)[labels] + torch.randn(n, d, generator=g, dtype=torch.float64)
    return x.to(dtype), labels


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n,d,k", [(1, 1, 1), (5, 3, 7), (257, 33, 2), (10_000, 64, 10), (100_003, 512, 1000),
                                   (300_000, 17, 3), (2000, 2048, 5)])
@pytest.mark.parametrize("int32", [False, True])
def test_centroid_distances_identical(dtype, n, d, k, int32):
    x, y = clustered(n, d, k, n + d, dtype, used=max(1, k - 1))  # the last class empty
    if int32:
        y = y.int()
    want = ops.centroid_distances(x, y, k)
    got = ops.centroid_distances(x.cuda(), y.cuda(), k)
    for a, b in zip(got, want):
        assert a.device.type == "cuda" and torch.equal(a.cpu(), b)


def test_empty_and_non_contiguous():
    centroids, d2, counts = ops.centroid_distances(torch.zeros(0, 4, device="cuda"),
                                                   torch.zeros(0, dtype=torch.int64, device="cuda"), 3)
    assert centroids.shape == (3, 4) and not centroids.any() and d2.numel() == 0 and not counts.any()
    base = torch.randn(500, 60, device="cuda")
    y = torch.arange(500, device="cuda") % 7
    got = ops.centroid_distances(base[:, ::3], y, 7)
    want = ops.centroid_distances(base[:, ::3].cpu(), y.cpu(), 7)
    assert all(torch.equal(a.cpu(), b) for a, b in zip(got, want))


def test_non_finite_embeddings_give_non_finite_distances_and_fit_raises():
    x = torch.randn(100, 8, device="cuda")
    x[3, 2] = float("nan")
    y = torch.zeros(100, dtype=torch.int64, device="cuda")
    _, d2, _ = ops.centroid_distances(x, y, 1)
    assert torch.isnan(d2).all()
    with pytest.raises(ValueError, match="embeddings must be finite"):
        PrototypeSelection().fit(x, y)


def test_op_under_compile_and_opcheck():
    x, y = clustered(600, 40, 5, 1, torch.float32)
    x, y = x.cuda(), y.cuda()
    torch.library.opcheck(torch.ops.dsampling.centroid_distances.default, (x, y, 5))
    compiled = torch.compile(lambda a, b: ops.centroid_distances(a, b, 5), fullgraph=True)
    assert all(torch.equal(a, b) for a, b in zip(compiled(x, y), ops.centroid_distances(x, y, 5)))


def test_prototype_selection_on_cuda_matches_the_cpu():
    x, y = clustered(20_000, 128, 10, 3, torch.float32)
    cpu = PrototypeSelection(0.8, switch_epoch=2, seed=4).fit(x, y)
    cuda = PrototypeSelection(0.8, switch_epoch=2, seed=4).fit(x.cuda(), y.cuda())
    for name in ("easy_indices", "hard_indices", "prototypes", "centroids", "sq_distances", "counts"):
        assert torch.equal(getattr(cpu, name), getattr(cuda, name)), name
    for epoch in range(4):
        cpu.set_epoch(epoch)
        cuda.set_epoch(epoch)
        assert list(cpu) == list(cuda)


def test_fit_model_on_cuda():
    x, y = clustered(1000, 6, 3, 5, torch.float32)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 3)).cuda()
    # one batch of every row, in order: the same GEMM as the reference's (cuBLAS may round a row
    # differently at another batch size, which could move a sample across the cut)
    loader = DataLoader(IndexedDataset(TensorDataset(x, y)), batch_size=1000)
    sel = PrototypeSelection(0.5).fit_model(model, loader, progress=False)
    with torch.no_grad():
        want = PrototypeSelection(0.5).fit(model[:2](x.cuda()), y.cuda())
    assert torch.equal(sel.easy_indices, want.easy_indices) and torch.equal(sel.hard_indices, want.hard_indices)
