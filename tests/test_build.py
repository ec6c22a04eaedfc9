"""The compiled part: where it came from, the JIT fallback, and CUDA without a GPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import dsampling_ext

REPO = Path(__file__).resolve().parent.parent


def test_build_info_reports_the_loaded_library():
    info = dsampling_ext.build_info()
    assert info["path"] == "prebuilt"
    assert Path(info["library"]).is_file()
    assert info["torch"] == torch.__version__ and info["torch_cuda"] == torch.version.cuda
    assert info["cuda"] == (info["cuda_version"] is not None)
    if os.environ.get("DSAMPLING_EXPECT_CUDA_BUILD") == "1":
        assert info["cuda"] and info["cuda_version"] == torch.version.cuda
        assert "site-packages" in Path(info["library"]).parts  # the installed CUDA build, not the checkout's


def test_every_op_has_a_cpu_kernel():
    for name in ("philox_fill_uniform_", "_philox4x32_10", "loss_histogram"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"dsampling::{name}", "CPU"), name
        if dsampling_ext.build_info()["cuda"]:
            assert torch._C._dispatch_has_kernel_for_dispatch_key(f"dsampling::{name}", "CUDA"), name


JIT_SCRIPT = """
import json, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import dsampling_ext
import torch
counts, edges = dsampling_ext.loss_histogram(torch.tensor([0.0, 1.0, 1.0, 3.0]), 3)
print(json.dumps({"info": dsampling_ext.build_info(), "counts": counts.tolist(),
                  "warnings": [str(w.message) for w in caught if w.category is dsampling_ext.JitBuildWarning]}))
"""


def test_jit_build_path_builds_loads_and_says_so():
    # The source checkout's package with the prebuilt module ignored: the same sources are
    # compiled by torch.utils.cpp_extension.load into build/jit-test (kept between runs).
    env = dict(os.environ, DSAMPLING_FORCE_JIT="1", DSAMPLING_BUILD_DIR=str(REPO / "build" / "jit-test"), PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-c", JIT_SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["info"]["path"] == "jit"
    assert Path(out["info"]["library"]).is_file()
    assert str(REPO / "build" / "jit-test") in out["info"]["library"]
    assert out["counts"] == [1, 2, 1]
    assert len(out["warnings"]) == 1 and "JIT-building" in out["warnings"][0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error a user without a GPU gets")
def test_cuda_request_without_a_gpu_raises_cleanly():
    with pytest.raises(RuntimeError, match="philox_uniform: device is on cuda but CUDA is not available"):
        dsampling_ext.philox_uniform(8, 0, 0, device="cuda")
