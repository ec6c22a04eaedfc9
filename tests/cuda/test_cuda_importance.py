"""weighted_sample and gradnorm_scores on CUDA against the CPU, bit for bit. Skipped without a GPU."""

import pytest
import torch

from dsampling_ext import ops

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)


@pytest.mark.parametrize("n", [1, 31, 32, 33, 1000, 100_003, 2**24 + 10])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64], ids=str)
def test_weighted_sample_identical(n, dtype):
    g = torch.Generator().manual_seed(n)
    w = (torch.rand(n, generator=g, dtype=torch.float64) ** 4).to(dtype)
    w[n // 2 :: 7] = 0
    w[-1] = 3.0
    for seed, offset, draws in ((0, 0, 10_000), (-5, 2**40, 1), (7, 3, 0)):
        want = ops.weighted_sample(w, draws, seed, offset)
        got = ops.weighted_sample(w.cuda(), draws, seed, offset)
        assert torch.equal(got[0].cpu(), want[0]) and torch.equal(got[1].cpu(), want[1])


@pytest.mark.parametrize("n", [33, 100_003, 10_000_000])
@pytest.mark.parametrize("where", [0, -1, "middle"])
def test_weighted_sample_one_dominant_weight_identical(n, where):
    # One tile owns ~every guide bucket: the guide kernel (a thread per bucket, binary search) must
    # give the CPU's table; zero-sum tiles on both sides own none.
    w = torch.full((n,), 1e-30, dtype=torch.float64)
    w[: n // 3] = 0
    w[n // 2 if where == "middle" else where] = 1e30
    want = ops.weighted_sample(w, 20_000, 3, 4)
    got = ops.weighted_sample(w.cuda(), 20_000, 3, 4)
    assert torch.equal(got[0].cpu(), want[0]) and torch.equal(got[1].cpu(), want[1])


def test_weighted_sample_extreme_scales_identical():
    w = torch.rand(5000, dtype=torch.float64)
    for k in (-1000, -60, 0, 900):
        scaled = w * 2.0**k
        scaled[::3] *= 1e-200 if k >= 0 else 1.0
        want = ops.weighted_sample(scaled, 4000, 1, 2)
        got = ops.weighted_sample(scaled.cuda(), 4000, 1, 2)
        assert torch.equal(got[0].cpu(), want[0]) and torch.equal(got[1].cpu(), want[1])


@pytest.mark.parametrize("classes", [1, 2, 3, 10, 33, 100, 1000])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32], ids=str)
def test_gradnorm_scores_identical(classes, dtype):
    # float16/bfloat16/float32 logits: the exp polynomial rounds alike on both devices.
    g = torch.Generator().manual_seed(classes)
    rows = 1029
    z = (torch.randn(rows, classes, generator=g) * 6).to(dtype)
    y = torch.randint(0, classes, (rows,), generator=g, dtype=torch.int32)
    groups = torch.randint(0, 300, (rows,), generator=g)
    for grp, num in ((None, classes), (groups, 300)):
        want = ops.gradnorm_scores(z, y, grp, num)
        got = ops.gradnorm_scores(z.cuda(), y.cuda(), None if grp is None else grp.cuda(), num)
        assert all(torch.equal(a.cpu(), b) for a, b in zip(got, want))


@pytest.mark.parametrize("rows", [255, 256, 257, 100_003])
def test_gradnorm_group_sums_identical_with_one_dominant_group(rows):
    # Most rows in group 0 (one chunk per 256 of them), the rest spread over 70,000 mostly empty
    # groups: the chunked sums run in the CPU's order.
    g = torch.Generator().manual_seed(rows)
    z = torch.randn(rows, 10, generator=g) * 4
    y = torch.randint(0, 10, (rows,), generator=g)
    groups = torch.where(torch.rand(rows, generator=g) < 0.9, 0, torch.randint(0, 70_000, (rows,), generator=g))
    want = ops.gradnorm_scores(z, y, groups, 70_000)
    got = ops.gradnorm_scores(z.cuda(), y.cuda(), groups.cuda(), 70_000)
    assert all(torch.equal(a.cpu(), b) for a, b in zip(got, want))


def test_gradnorm_scores_float64_close():
    # float64 takes each device's exp: equal to within the last bits.
    z = torch.randn(500, 37, dtype=torch.float64) * 5
    y = torch.randint(0, 37, (500,))
    want = ops.gradnorm_scores(z, y)
    got = ops.gradnorm_scores(z.cuda(), y.cuda())
    torch.testing.assert_close(got[0].cpu(), want[0], rtol=1e-14, atol=0)
    torch.testing.assert_close(got[1].cpu(), want[1], rtol=1e-14, atol=0)
    assert torch.equal(got[2].cpu(), want[2])


def test_gradnorm_scores_empty_batch():
    s, sums, counts = ops.gradnorm_scores(torch.zeros(0, 4, device="cuda"), torch.zeros(0, dtype=torch.int64, device="cuda"))
    assert s.numel() == 0 and sums.tolist() == [0.0] * 4 and counts.tolist() == [0] * 4
