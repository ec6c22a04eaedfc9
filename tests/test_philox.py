import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import dsampling_ext
from dsampling_ext import ops
from reference import philox4x32_10, philox_uniform
from stats import chi2_critical, chi2_statistic

# Random123 tests/kat_vectors, "philox4x32 10" lines: counter[4], key[2] -> output[4].
KAT = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0), (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def _seed(key):
    """The schema int whose two 32-bit halves are (key[0] low, key[1] high)."""
    return ops._as_int64(key[0] | key[1] << 32, "seed")


@pytest.mark.parametrize("counter,key,expected", KAT)
def test_kernel_matches_known_answers(counter, key, expected, device):
    ctr = torch.tensor([counter], dtype=torch.int64, device=device)
    out = torch.ops.dsampling._philox4x32_10(ctr, _seed(key))
    assert out.cpu().tolist() == [list(expected)]


@pytest.mark.parametrize("counter,key,expected", KAT)
def test_reference_matches_known_answers(counter, key, expected):
    out = philox4x32_10(np.array([counter], dtype=np.uint32), *key)
    assert out.tolist() == [list(expected)]


def test_uniform_stream_starts_with_zero_key_block():
    # seed 0, offset 0: elements 0..3 are the words of the all-zero KAT block, top 24 bits.
    words = np.array(KAT[0][2], dtype=np.uint64)
    expected = (words >> np.uint64(8)).astype(np.float64) / 2**24
    assert dsampling_ext.philox_uniform(4, 0, 0).double().numpy().tolist() == expected.tolist()


@given(
    n=st.integers(0, 300),
    seed=st.integers(-(2**63), 2**64 - 1),
    offset=st.integers(-(2**63), 2**64 - 1),
)
def test_uniform_matches_reference(n, seed, offset):
    got = dsampling_ext.philox_uniform(n, seed, offset).numpy()
    np.testing.assert_array_equal(got, philox_uniform(n, seed, offset))


def test_uniform_depends_only_on_seed_offset_index(device):
    long = dsampling_ext.philox_uniform(1001, 7, 3, device=device)
    short = dsampling_ext.philox_uniform(10, 7, 3, device=device)
    assert torch.equal(long[:10], short)
    assert not torch.equal(dsampling_ext.philox_uniform(10, 7, 4, device=device), short)
    assert not torch.equal(dsampling_ext.philox_uniform(10, 8, 3, device=device), short)


def test_uniform_range_and_chi_square():
    # 10^6 draws into 1000 equal cells; chi-square against uniform at the 0.999 level.
    u = dsampling_ext.philox_uniform(1_000_000, seed=12345, offset=0).double().numpy()
    assert u.min() >= 0.0 and u.max() < 1.0
    observed = np.bincount((u * 1000).astype(np.int64), minlength=1000)
    assert chi2_statistic(observed, np.full(1000, 1000.0)) < chi2_critical(999)


def test_streams_of_adjacent_offsets_are_uncorrelated():
    a = dsampling_ext.philox_uniform(200_000, 1, 0).double().numpy()
    b = dsampling_ext.philox_uniform(200_000, 1, 1).double().numpy()
    # |r| of independent streams has sd 1/sqrt(n) ~ 0.0022; 5 sd bound.
    assert abs(np.corrcoef(a, b)[0, 1]) < 5 / np.sqrt(len(a))


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(n=-1, seed=0), ValueError, "n must be >= 0"),
        (dict(n=2.0, seed=0), TypeError, "n must be an int"),
        (dict(n=2, seed="0"), TypeError, "seed must be an int"),
        (dict(n=2, seed=2**64), ValueError, "seed must fit in 64 bits"),
        (dict(n=2, seed=0, offset=-(2**63) - 1), ValueError, "offset must fit in 64 bits"),
    ],
)
def test_uniform_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        dsampling_ext.philox_uniform(**kwargs)


def test_ops_reject_bad_tensors():
    with pytest.raises(RuntimeError, match="out must be float32"):
        torch.ops.dsampling.philox_fill_uniform_(torch.empty(4, dtype=torch.float64), 0, 0)
    with pytest.raises(RuntimeError, match="contiguous 1-D"):
        torch.ops.dsampling.philox_fill_uniform_(torch.empty(4, 2), 0, 0)
    with pytest.raises(RuntimeError, match=r"counter must have shape \[N, 4\]"):
        torch.ops.dsampling._philox4x32_10(torch.zeros(3, 3, dtype=torch.int64), 0)
    with pytest.raises(RuntimeError, match="counter must be int64"):
        torch.ops.dsampling._philox4x32_10(torch.zeros(3, 4, dtype=torch.int32), 0)


def test_opcheck(device):
    torch.library.opcheck(torch.ops.dsampling.philox_fill_uniform_.default, (torch.empty(37, device=device), 5, 9))
    ctr = torch.randint(0, 2**32, (17, 4), dtype=torch.int64, device=device)
    torch.library.opcheck(torch.ops.dsampling._philox4x32_10.default, (ctr, -3))
