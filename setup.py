"""Build dsampling_ext._C: a CppExtension, or a CUDAExtension when CUDA can be built.

CUDA is built when a CUDA build of torch and a CUDA toolkit are both present (no GPU needed).
  DSAMPLING_FORCE_CUDA=1  require the CUDA build (fails clearly if it is impossible)
  DSAMPLING_FORCE_CPU=1   never build CUDA
  TORCH_CUDA_ARCH_LIST    target architectures (default 7.5;8.0;9.0+PTX when no GPU is visible)
The toolkit must be CUDA >= 12.8 (_cuda_env.MIN_TOOLKIT); an older one is refused (forced) or
left out with a message (auto), as is a missing one with a CUDA build of torch.
  NVCC_FLAGS, DEBUG=1     extra nvcc flags; -O0 -g builds
  DSAMPLING_SANITIZE=1    a CPU build with AddressSanitizer + UBSan, objects under build/asan
                          (`make sanitize`: run it with LD_PRELOAD of libasan)
"""

import importlib.util
import os
import sys
from pathlib import Path

import torch
from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("_cuda_env", ROOT / "dsampling_ext" / "_cuda_env.py")
cuda_env = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cuda_env)


def _want_cuda() -> bool:
    force_cuda = os.environ.get("DSAMPLING_FORCE_CUDA") == "1"
    force_cpu = os.environ.get("DSAMPLING_FORCE_CPU") == "1" or SANITIZE
    if force_cuda and force_cpu:
        raise RuntimeError("DSAMPLING_FORCE_CUDA=1 and DSAMPLING_FORCE_CPU=1 contradict each other")
    if force_cpu:
        return False
    home = cuda_env.prepare_environment(gpu_visible=torch.cuda.is_available())
    if force_cuda and torch.version.cuda is None:
        raise RuntimeError(f"DSAMPLING_FORCE_CUDA=1 needs a CUDA build of torch; this is {torch.__version__}")
    if torch.version.cuda is None:
        return False
    problem = cuda_env.toolkit_problem(home)
    if problem is not None:
        if force_cuda:
            raise RuntimeError(f"DSAMPLING_FORCE_CUDA=1 but {problem}")
        print(f"dsampling_ext: building the CPU kernels only: torch {torch.__version__} is a CUDA build but {problem}",
              file=sys.stderr)
        return False
    return True


SANITIZE = os.environ.get("DSAMPLING_SANITIZE") == "1"
# Imported after prepare_environment: cpp_extension reads CUDA_HOME once, at import.
WITH_CUDA = _want_cuda()
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402

cxx_flags, nvcc_flags = cuda_env.compile_flags(
    WITH_CUDA, openmp=torch.backends.openmp.is_available(), debug=os.environ.get("DEBUG") == "1", sanitize=SANITIZE
)
extension = (CUDAExtension if WITH_CUDA else CppExtension)(
    name="dsampling_ext._C",
    sources=[os.path.relpath(s, ROOT) for s in cuda_env.sources(ROOT / "csrc", WITH_CUDA)],
    include_dirs=[str(ROOT / "csrc")],
    extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags} if WITH_CUDA else {"cxx": cxx_flags},
    extra_link_args=cuda_env.SANITIZE_FLAGS if SANITIZE else [],
)


class Build(BuildExtension):
    """Keep CPU, CUDA and sanitizer object files apart so that the builds can share one checkout."""

    def finalize_options(self):
        super().finalize_options()
        self.build_temp = os.path.join("build", "asan" if SANITIZE else "cuda" if WITH_CUDA else "cpu")


setup(
    name="dsampling_ext",
    version="0.1.0",
    description="Fused C++/CUDA sample-selection kernels that speed up PyTorch training",
    packages=find_packages(include=["dsampling_ext", "dsampling_ext.*"]),
    # The floors are the oldest versions built and tested (make test: torch 2.13.0 CPU;
    # make cuda-build: 2.14.1 with CUDA 13.0; Python 3.11), checked by tests/test_build.py.
    python_requires=">=3.11",
    install_requires=["torch>=2.13", "numpy"],
    ext_modules=[extension],
    cmdclass={"build_ext": Build.with_options(use_ninja=True)},
    zip_safe=False,
)
