"""The compiled part: where it came from, the JIT fallback, and CUDA without a GPU."""

import json
import os
import shutil
import re
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


def _schema_names() -> list[str]:
    """Every op csrc/ops.cpp defines (m.def("name(...) -> ..." or m.def("name", &fn))."""
    names = re.findall(r'm\.def\(\s*"([A-Za-z_][A-Za-z0-9_]*)', (REPO / "csrc" / "ops.cpp").read_text())
    assert len(names) >= 8 and len(set(names)) == len(names), names
    return names


@pytest.mark.parametrize("name", _schema_names())
def test_every_op_has_a_kernel_for_each_built_device(name):
    # The computed dispatch table: a kernel registered for the key, or a composite one covering it.
    has = lambda key: torch._C._dispatch_has_computed_kernel_for_dispatch_key(f"dsampling::{name}", key)  # noqa: E731
    assert has("CPU"), f"dsampling::{name} has no CPU kernel"
    if os.environ.get("DSAMPLING_EXPECT_CUDA_BUILD") == "1" or dsampling_ext.build_info()["cuda"]:
        assert has("CUDA"), f"dsampling::{name} has no CUDA kernel"


JIT_SCRIPT = """
import json, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import dsampling_ext
import torch
counts, edges = dsampling_ext.loss_histogram(torch.tensor([0.0, 1.0, 1.0, 3.0]), 3)
print(json.dumps({"info": dsampling_ext.build_info(), "counts": counts.tolist(),
                  "warnings": [(str(w.message), w.filename, w.lineno) for w in caught
                               if w.category in (dsampling_ext.JitBuildWarning, dsampling_ext.ForeignBuildWarning)]}))
"""


@pytest.mark.timeout(2 * 900 + 60)  # the two subprocesses' own limits, not pyproject's 10 minutes
def test_jit_build_path_builds_loads_and_says_so():
    # The source checkout's package with the prebuilt module ignored: the same sources are
    # compiled by torch.utils.cpp_extension.load into build/jit-test (kept between runs).
    # Run twice: the first run builds (or, on a machine that ran it before, loads the cache);
    # the second must say that it loads the cached build, not that it builds.
    env = dict(os.environ, DSAMPLING_FORCE_JIT="1", DSAMPLING_BUILD_DIR=str(REPO / "build" / "jit-test"), PYTHONPATH=str(REPO))
    runs = []
    for _ in range(2):
        result = subprocess.run([sys.executable, "-c", JIT_SCRIPT], cwd=REPO, env=env, capture_output=True, text=True,
                                timeout=900)
        assert result.returncode == 0, result.stderr
        runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    for out in runs:
        assert out["info"]["path"] == "jit" and out["info"]["matches_package"]
        assert Path(out["info"]["library"]).is_file()
        assert str(REPO / "build" / "jit-test") in out["info"]["library"]
        assert out["counts"] == [1, 2, 1]
        assert len(out["warnings"]) == 1
        message, filename, line = out["warnings"][0]
        assert (filename, line) == ("<string>", 5)  # the user's `import dsampling_ext`, not the library
    assert "JIT-building" in runs[0]["warnings"][0][0] or "loading the JIT-built" in runs[0]["warnings"][0][0]
    assert "loading the JIT-built CPU kernels cached in" in runs[1]["warnings"][0][0]
    assert "JIT-building" not in runs[1]["warnings"][0][0]


# A GPU machine with pip's CUDA torch and no CUDA toolkit, simulated: torch says a GPU is there and
# that it is a CUDA build, and the toolkit search finds nothing (patched before the package loads).
NO_TOOLKIT_SCRIPT = """
import importlib.util, json, sys, warnings
import torch
torch.cuda.is_available = lambda: True
torch.version.cuda = "13.0"
spec = importlib.util.spec_from_file_location("dsampling_ext._cuda_env", "dsampling_ext/_cuda_env.py")
cuda_env = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cuda_env)
cuda_env.find_cuda_home = lambda: None
sys.modules["dsampling_ext._cuda_env"] = cuda_env
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import dsampling_ext
counts, _ = dsampling_ext.loss_histogram(torch.tensor([0.0, 1.0, 1.0, 3.0]), 3)
try:
    dsampling_ext.ops._check_device("loss_histogram", "values", torch.device("cuda"))
    cuda_error = None
except RuntimeError as error:
    cuda_error = str(error)
print(json.dumps({"info": dsampling_ext.build_info(), "counts": counts.tolist(), "cuda_error": cuda_error,
                  "warnings": [(w.category.__name__, str(w.message)) for w in caught
                               if issubclass(w.category, UserWarning) and "dsampling_ext" in str(w.message)]}))
"""


@pytest.mark.timeout(900 + 60)
def test_a_gpu_without_a_cuda_toolkit_gets_the_cpu_kernels_and_a_warning():
    # It used to raise ImportError, leaving even the CPU kernels unusable. The JIT cache is the one
    # test_jit_build_path_builds_loads_and_says_so fills (the CPU kernels), so this mostly loads it.
    env = dict(os.environ, DSAMPLING_FORCE_JIT="1", DSAMPLING_BUILD_DIR=str(REPO / "build" / "jit-test"),
               PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-c", NO_TOOLKIT_SCRIPT], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["info"]["path"] == "jit" and out["info"]["cuda"] is False
    assert out["counts"] == [1, 2, 1]
    [missing] = [m for c, m in out["warnings"] if c == "CudaKernelsMissingWarning"]
    assert "no CUDA toolkit (nvcc) was found" in missing and "only the CPU kernels are built" in missing
    assert "install a CUDA toolkit >= 12.8" in missing and "CUDA_HOME" in missing
    assert "built without CUDA kernels" in out["cuda_error"]


def test_toolkit_version_gate(tmp_path):
    from dsampling_ext import _cuda_env

    assert _cuda_env.toolkit_problem(None).startswith("no CUDA toolkit")
    for release, ok in (("12.4", False), ("12.8", True), ("13.0", True)):
        home = tmp_path / release
        (home / "bin").mkdir(parents=True)
        nvcc = home / "bin" / "nvcc"
        nvcc.write_text(f"#!/bin/sh\necho 'Cuda compilation tools, release {release}, V{release}.1'\n")
        nvcc.chmod(0o755)
        assert _cuda_env.toolkit_version(str(home)) == tuple(map(int, release.split(".")))
        problem = _cuda_env.toolkit_problem(str(home))
        assert (problem is None) == ok, problem
    assert "older than the 12.8" in _cuda_env.toolkit_problem(str(tmp_path / "12.4"))


def test_python_files_of_another_tree_warn_that_the_library_is_not_theirs(tmp_path):
    # A second source tree on PYTHONPATH, without its own build: the editable install's finder
    # (or an installed copy) supplies dsampling_ext._C from this checkout. Import must say so.
    if Path(dsampling_ext.__file__).parent != REPO / "dsampling_ext" or dsampling_ext.build_info()["path"] != "prebuilt":
        pytest.skip("needs this checkout's editable install (make test's venv; make cuda-build installs a copy)")
    shutil.copytree(REPO / "dsampling_ext", tmp_path / "dsampling_ext",
                    ignore=shutil.ignore_patterns("_C*", "__pycache__"))
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    env.pop("DSAMPLING_FORCE_JIT", None)
    result = subprocess.run([sys.executable, "-c", JIT_SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["info"]["package"] == str(tmp_path / "dsampling_ext")
    assert out["info"]["library_tree"] == str(REPO / "dsampling_ext") and not out["info"]["matches_package"]
    [(message, filename, line)] = out["warnings"]
    assert f"the Python files at {tmp_path / 'dsampling_ext'} loaded the compiled kernels of another tree" in message
    assert (filename, line) == ("<string>", 5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error a user without a GPU gets")
def test_cuda_request_without_a_gpu_raises_cleanly():
    with pytest.raises(RuntimeError, match="philox_uniform: device is on cuda but CUDA is not available"):
        dsampling_ext.philox_uniform(8, 0, 0, device="cuda")


def test_cuda_device_check_traces_under_fullgraph(monkeypatch):
    # The check's CUDA path, as a machine with a GPU and a CUDA build takes it, must trace: torch
    # ops that return a non-tensor (an int) stop Dynamo, so the check reads a Python constant.
    from dsampling_ext import ops

    monkeypatch.setattr(ops._common, "_cuda_available", lambda: True)  # not torch.cuda's: Dynamo itself asks it
    monkeypatch.setattr(ops._common, "_CUDA_KERNELS", True)
    torch._dynamo.reset()
    check = torch.compile(lambda x: (ops._check_device("loss_histogram", "values", torch.device("cuda")), x + 1)[1],
                          fullgraph=True, backend="eager")
    assert torch.equal(check(torch.zeros(2)), torch.ones(2))


def test_cuda_request_to_a_cpu_only_build_raises_cleanly(monkeypatch):
    from dsampling_ext import ops

    monkeypatch.setattr(ops._common, "_cuda_available", lambda: True)
    monkeypatch.setattr(ops._common, "_CUDA_KERNELS", False)
    with pytest.raises(RuntimeError, match="loss_histogram: values is on cuda but dsampling_ext was built without CUDA"):
        ops._check_device("loss_histogram", "values", torch.device("cuda"))


def test_default_arch_list_has_turing_and_adds_ptx_for_newer_gpus(monkeypatch):
    from dsampling_ext import _cuda_env

    monkeypatch.delenv("TORCH_CUDA_ARCH_LIST", raising=False)
    monkeypatch.setenv("CUDA_HOME", os.environ.get("CUDA_HOME", ""))  # restored after the test
    _cuda_env.prepare_environment(gpu_visible=False)
    assert os.environ["TORCH_CUDA_ARCH_LIST"] == "7.5;8.0;9.0+PTX"  # T4 (sm_75) gets native code


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks what make gpu-check says without a GPU")
def test_gpu_check_fails_clearly_without_a_gpu(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "no CUDA GPU is visible" in result.stderr, result.stderr
    assert not list(tmp_path.iterdir())


def test_declared_floors_are_the_versions_make_builds_and_tests():
    setup_py = (REPO / "setup.py").read_text()
    makefile = (REPO / "Makefile").read_text()
    torch_floor = re.search(r'"torch>=([\d.]+)"', setup_py).group(1)
    python_floor = re.search(r'python_requires=">=([\d.]+)"', setup_py).group(1)
    tested = sorted(tuple(int(p) for p in v.split(".")[:2])
                    for v in re.findall(r"^(?:CUDA_)?TORCH_SPEC \?= torch==([\d.]+)", makefile, re.M))
    assert tested and tuple(int(p) for p in torch_floor.split(".")) == tested[0], (torch_floor, tested)
    assert tuple(int(p) for p in python_floor.split(".")) == sys.version_info[:2], (python_floor, sys.version_info)
