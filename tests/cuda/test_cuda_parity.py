"""CUDA kernels against their CPU twins, bit for bit. Skipped without a GPU.

Two results are compared with a stated tolerance instead: exp (the soft-margin gap of
argmax_mismatch) and pow (histogram_select's cdf rule with a non-integer beta) come from each
device's math library, which may round the last bit differently (ULP_TOLERANCE). Every decision
taken from values that agree to the bit must agree too.
"""

import math
import subprocess
import sys
import textwrap

import pytest
import torch

import dsampling_ext
from reference import argmax_mismatch_reference

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
ULP_TOLERANCE = dict(rtol=8 * 2.0**-52, atol=0.0)  # a few float64 ulps (exp/pow, and the gap's division)
AMBIGUOUS = 1e-9  # argmax rows whose float64 gap lies this close to the margin may round either way


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


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_non_finite_values_give_nan_edges_and_no_counts_without_a_sync(bad, dtype):
    # The CPU raises "values must be finite"; CUDA cannot without a host sync.
    values = torch.tensor([0.5, bad, 1.0], dtype=dtype)
    with pytest.raises(RuntimeError, match="values must be finite"):
        dsampling_ext.loss_histogram(values, 3)
    counts, edges = dsampling_ext.loss_histogram(values.cuda(), 3)
    assert counts.sum().item() == 0 and torch.isnan(edges).all()


@pytest.mark.parametrize("dtype,value", [(torch.float16, 2048.0), (torch.float32, 2.0**24), (torch.float64, 2.0**53),
                                         (torch.bfloat16, 256.0)], ids=str)
@pytest.mark.parametrize("bins", [1, 4, 20_000])
def test_a_constant_whose_widening_rounds_away(dtype, value, bins):
    # Every edge equal: the CPU raises numpy's "Too many bins"; CUDA without a range gives NaN edges
    # and zero counts (it used to read edges[-1]); with a range it raises as the CPU does.
    values = torch.full((1000,), value, dtype=dtype)
    with pytest.raises(RuntimeError, match="edges repeat"):
        dsampling_ext.loss_histogram(values, bins)
    counts, edges = dsampling_ext.loss_histogram(values.cuda(), bins)
    assert counts.sum().item() == 0 and torch.isnan(edges).all()
    with pytest.raises(RuntimeError, match="edges repeat"):
        dsampling_ext.loss_histogram(values.cuda(), bins, (value, value))


def test_histogram_select_and_table_select_on_a_collapsed_constant():
    big = torch.full((300,), 2.0**53, dtype=torch.float64)
    for device in ("cpu", "cuda"):  # histogram_select: one full last bin on both devices
        history = torch.zeros(512, dtype=torch.float64, device=device)
        state = torch.zeros(2, dtype=torch.int64, device=device)
        _, p = dsampling_ext.histogram_select(history, state, big.to(device))
        assert torch.equal(p.cpu(), torch.ones(300, dtype=torch.float64))
    seen = torch.zeros(300, dtype=torch.int32)
    for device in ("cpu", "cuda"):  # table_select's pmf rule: numpy's error on both
        with pytest.raises(RuntimeError, match="edges repeat"):
            dsampling_ext.ops.table_select(big.to(device), seen.to(device), 1, "pmf")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_with_a_range_are_not_counted(bad):
    values = torch.tensor([0.5, bad, 0.25, 1.0])
    counts, edges = dsampling_ext.loss_histogram(values.cuda(), 4, (0.0, 1.0))
    want_counts, want_edges = dsampling_ext.loss_histogram(values[torch.isfinite(values)], 4, (0.0, 1.0))
    assert torch.equal(counts.cpu(), want_counts) and torch.equal(edges.cpu(), want_edges)


@pytest.mark.parametrize("bins", [1, 3])
def test_one_crowded_bin(bins):
    # Every lane of a warp in one bin: the warp-aggregated atomics must still count each value once.
    values = torch.cat([torch.zeros(1_000_000), torch.ones(7)])
    counts, edges = dsampling_ext.loss_histogram(values.cuda(), bins)
    want_counts, want_edges = dsampling_ext.loss_histogram(values, bins)
    assert torch.equal(counts.cpu(), want_counts) and torch.equal(edges.cpu(), want_edges)


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
@pytest.mark.parametrize("capacity,batch", [(512, 128), (4096, 1024), (100, 300), (65536, 5000)])
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


def _select_both(capacity, losses, keys=None, **opts):
    h_cpu, s_cpu = torch.zeros(capacity, dtype=losses.dtype), torch.zeros(2, dtype=torch.int64)
    h_gpu, s_gpu = h_cpu.cuda(), s_cpu.cuda()
    cpu = dsampling_ext.histogram_select(h_cpu, s_cpu, losses, keys=keys, **opts)
    gpu = dsampling_ext.histogram_select(h_gpu, s_gpu, losses.cuda(), keys=None if keys is None else keys.cuda(), **opts)
    assert torch.equal(h_gpu.cpu(), h_cpu) and torch.equal(s_gpu.cpu(), s_cpu)
    return cpu, tuple(t.cpu() for t in gpu)


@pytest.mark.parametrize("beta", [0.5, 1.5, 2.7])
def test_histogram_select_cdf_with_a_non_integer_beta_agrees_to_the_last_ulps(beta):
    # p = percentile ** beta uses pow for a non-integer beta: CPU and CUDA libm may differ in the
    # last bit, so p is compared with ULP_TOLERANCE, and keep only where the two p agree exactly.
    losses = torch.empty(4096, dtype=torch.float64).exponential_(generator=torch.Generator().manual_seed(7))
    (keep_cpu, p_cpu), (keep_gpu, p_gpu) = _select_both(4096, losses, rule="cdf", beta=beta, clip_sigma=None, seed=5)
    torch.testing.assert_close(p_gpu, p_cpu, **ULP_TOLERANCE)
    same = p_gpu == p_cpu  # at least the p = 1 of the largest loss (no clipping)
    assert same.any() and torch.equal(keep_gpu[same], keep_cpu[same])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("rule,keep", [("pmf", "bernoulli"), ("pmf", "top"), ("cdf", "bernoulli")])
def test_histogram_select_skips_non_finite_losses_like_the_cpu(dtype, rule, keep):
    # CUDA always skips NaN/Inf losses (raising would need a host sync); the CPU does so with
    # skip_nonfinite=True and raises without it.
    losses = torch.empty(300, dtype=dtype).exponential_(generator=torch.Generator().manual_seed(3))
    losses[::7] = math.nan
    losses[3::11] = math.inf
    losses[5::13] = -math.inf
    opts = dict(rule=rule, keep=keep, threshold=0.02, keep_fraction=0.5, seed=2)
    with pytest.raises(RuntimeError, match="losses must be finite"):
        dsampling_ext.histogram_select(torch.zeros(128, dtype=dtype), torch.zeros(2, dtype=torch.int64), losses, **opts)
    for skip in (True, False):
        h_gpu, s_gpu = torch.zeros(128, dtype=dtype, device="cuda"), torch.zeros(2, dtype=torch.int64, device="cuda")
        h_cpu, s_cpu = torch.zeros(128, dtype=dtype), torch.zeros(2, dtype=torch.int64)
        keep_cpu, p_cpu = dsampling_ext.histogram_select(h_cpu, s_cpu, losses, skip_nonfinite=True, **opts)
        keep_gpu, p_gpu = dsampling_ext.histogram_select(h_gpu, s_gpu, losses.cuda(), skip_nonfinite=skip, **opts)
        assert torch.equal(p_gpu.cpu(), p_cpu) and torch.equal(keep_gpu.cpu(), keep_cpu)
        assert torch.equal(h_gpu.cpu(), h_cpu) and torch.equal(s_gpu.cpu(), s_cpu)
        assert not keep_gpu.cpu()[~torch.isfinite(losses)].any()


@pytest.mark.parametrize("keep", ["fraction", "top"])
@pytest.mark.parametrize("keep_fraction", [0.0, 0.01, 0.5, 1.0])
def test_histogram_select_ranked_modes_with_many_ties(keep, keep_fraction):
    # Few distinct losses: many equal counts (top) and a radix select that must break ties by index.
    g = torch.Generator().manual_seed(11)
    losses = torch.randint(0, 4, (3000,), generator=g).double()
    keys = torch.randint(0, 50, (3000,), generator=g)  # repeated keys: repeated draws
    (keep_cpu, p_cpu), (keep_gpu, p_gpu) = _select_both(
        1024, losses, keys=keys, keep=keep, keep_fraction=keep_fraction, threshold=0.0, clip_sigma=None)
    assert torch.equal(p_gpu, p_cpu) and torch.equal(keep_gpu, keep_cpu)


def test_histogram_select_rejects_a_bad_state_with_a_device_assertion():
    # The CPU raises; CUDA trips a device-side assertion, which ends the process's CUDA context,
    # so it runs in a child process.
    script = textwrap.dedent("""
        import torch, dsampling_ext
        history = torch.zeros(8, device="cuda")
        dsampling_ext.histogram_select(history, torch.tensor([9, 0], device="cuda"), torch.rand(4, device="cuda"))
        torch.cuda.synchronize()
    """)
    with pytest.raises(RuntimeError, match="state must hold a length"):
        dsampling_ext.histogram_select(torch.zeros(8), torch.tensor([9, 0]), torch.rand(4))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "device-side assert" in result.stderr, result.stderr[-2000:]


def test_selector_runs_on_cuda_and_moves_its_history():
    sel = dsampling_ext.LossHistogramSelector(warmup_epochs=0)
    keep = sel.select(torch.rand(64, device="cuda"))
    assert keep.is_cuda and sel.loss_history.is_cuda
    sel.select(torch.rand(64))
    assert not sel.loss_history.is_cuda and sel.loss_history.numel() == 128


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("rows,classes", [(1, 1), (257, 2), (257, 10), (300, 33), (1024, 1000), (64, 5000), (100_000, 10)])
@pytest.mark.parametrize("margin", [None, 0.3])
def test_argmax_mismatch_identical(dtype, rows, classes, margin):
    # Covers every lane-group width (1 to 32 lanes per row), ties, +inf, -inf, NaN and all -inf rows.
    g = torch.Generator().manual_seed(rows * classes)
    logits = torch.randn(rows, classes, generator=g).to(dtype)
    logits[::7, 0] = logits[::7, -1]  # ties
    logits[::13, 1 % classes] = math.inf
    logits[5::17, classes // 2] = math.nan
    logits[6::19] = -math.inf
    logits[8::23, -1] = -math.inf
    labels = torch.randint(0, classes, (rows,), generator=g)
    keep_cpu, kept_cpu, count_cpu = dsampling_ext.argmax_mismatch(logits, labels, margin)
    keep_gpu, kept_gpu, count_gpu = (t.cpu() for t in dsampling_ext.argmax_mismatch(logits.cuda(), labels.cuda(), margin))
    if margin is None:  # no exp involved: bit-identical
        assert torch.equal(keep_gpu, keep_cpu) and torch.equal(kept_gpu, kept_cpu) and torch.equal(count_gpu, count_cpu)
        assert torch.equal(keep_cpu, logits.argmax(1) != labels)
        return
    # With a margin, the gap's exp may round differently: rows within AMBIGUOUS of the margin may differ.
    _, gap = argmax_mismatch_reference(logits, labels, margin)
    clear = ~((gap - margin).abs() < AMBIGUOUS)
    assert torch.equal(keep_gpu[clear], keep_cpu[clear])
    n = int(count_gpu)
    assert n == int(keep_gpu.sum()) and torch.equal(kept_gpu[:n], keep_gpu.nonzero().flatten())
    assert (kept_gpu[n:] == -1).all()


@pytest.mark.parametrize("n,size,k", [(1, 0, 0), (10, 5, 5), (10, 10, 0), (1000, 300, 200), (100_000, 50_000, 35_000)])
def test_partition_ops_identical(n, size, k):
    cpu = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    gpu = cpu.cuda()
    dsampling_ext.partition_resample(cpu, size, k, seed=3, offset=9)
    dsampling_ext.partition_resample(gpu, size, k, seed=3, offset=9)
    assert torch.equal(gpu.cpu(), cpu)
    assert torch.equal(dsampling_ext.random_subset(n, size, 4, 2, device="cuda").cpu(), dsampling_ext.random_subset(n, size, 4, 2))
