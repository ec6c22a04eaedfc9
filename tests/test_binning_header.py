"""csrc/common/binning.h's index arithmetic, compiled on the host (the code the CUDA kernels run).

A constant input whose ±0.5 widening is lost to rounding (bfloat16 >= 256, float16 >= 2048,
float32 >= 2**24, float64 >= 2**53) has all its edges equal: numpy's position is 0 / 0. The bin
lookup used to turn that NaN into -1 and read edges[-1] (CUDA loss_histogram, both devices'
histogram_select and table_select's pmf rule)."""

import shutil
import subprocess
from pathlib import Path

import pytest
from torch.utils import cpp_extension

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def header_cases(tmp_path_factory):
    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler")
    exe = tmp_path_factory.mktemp("binning") / "binning_host_test"
    includes = [f"-I{p}" for p in [str(REPO / "csrc"), *cpp_extension.include_paths()]]
    subprocess.run([compiler, "-std=c++17", "-O1", "-ffp-contract=off", *includes,
                    str(REPO / "tests" / "cpp" / "binning_host_test.cpp"), "-o", str(exe)],
                   check=True, capture_output=True, text=True, timeout=600)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True, timeout=60).stdout
    rows = [line.split() for line in out.splitlines()]
    return {(name, float(value), int(k)): tuple(map(int, rest)) for name, value, k, *rest in rows}


COLLAPSED = [("bfloat16", 256.0), ("bfloat16", 1024.0), ("float16", 2048.0), ("float32", 2.0**24), ("float64", 2.0**53)]


@pytest.mark.parametrize("name,value", COLLAPSED)
@pytest.mark.parametrize("k", [1, 2, 3, 10])
def test_collapsed_edges_give_the_last_bin_and_read_only_stored_edges(header_cases, name, value, k):
    bin_, lowest, highest, first_bin_has_width = header_cases[(name, value, k)]
    assert first_bin_has_width == 0  # numpy: "Too many bins for data range"
    assert 0 <= lowest and highest <= k  # never edges[-1]
    assert bin_ == k - 1  # edges[k-1] <= v <= edges[k]: numpy's closed last bin


@pytest.mark.parametrize("k,want", [(1, 0), (2, 1), (3, 1), (10, 5)])
def test_a_constant_the_widening_survives_bins_as_numpy(header_cases, k, want):
    # 1.0 in numpy's [0.5, 1.5]: np.histogram([1.0], bins=k) puts it in bin k // 2
    bin_, lowest, highest, first_bin_has_width = header_cases[("float64", 1.0, k)]
    assert (bin_, first_bin_has_width) == (want, 1) and 0 <= lowest and highest <= k
