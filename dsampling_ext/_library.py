"""Load the compiled kernels: the prebuilt ``dsampling_ext._C`` from setup.py, or a JIT build.

The JIT build compiles the same sources with ``torch.utils.cpp_extension.load`` (CUDA sources
only when CUDA is available), caches them under ``<checkout>/build/jit`` (or
``$DSAMPLING_BUILD_DIR``), never in the user's home, and says so once with a warning.
``DSAMPLING_FORCE_JIT=1`` takes the JIT path even when ``_C`` exists.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from pathlib import Path

import torch

from . import _cuda_env

_PACKAGE_DIR = Path(__file__).resolve().parent
_info: dict = {}


class JitBuildWarning(UserWarning):
    """The compiled extension was missing and was built just in time (or loaded from that cache)."""


class CudaKernelsMissingWarning(UserWarning):
    """torch can use a GPU but the CUDA kernels could not be built (no CUDA toolkit, or one too
    old): the JIT build compiled the CPU kernels only, and CUDA tensors raise an error."""


class ForeignBuildWarning(UserWarning):
    """The compiled kernels loaded belong to another source tree than the Python files."""


def _user_stacklevel() -> int:
    """``stacklevel`` of the first frame outside this package: the user's ``import`` line.

    Counts frames as ``warnings.warn`` does, which passes over importlib's bootstrap frames."""
    level, frame = 1, sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        if not ("importlib" in name and "_bootstrap" in name):
            if not name.startswith(str(_PACKAGE_DIR) + os.sep):
                return level
            level += 1
        frame = frame.f_back
    return 1


def _csrc_dir() -> Path:
    for candidate in (_PACKAGE_DIR / "csrc", _PACKAGE_DIR.parent / "csrc"):
        if (candidate / "ops.cpp").is_file():
            return candidate
    raise ImportError(
        "dsampling_ext: the compiled extension dsampling_ext._C is missing and the C++ sources "
        f"(csrc/) are not next to the package at {_PACKAGE_DIR}; install with "
        "`pip install --no-build-isolation -e .` from a checkout"
    )


def _jit_build() -> Path:
    from torch.utils import cpp_extension

    csrc = _csrc_dir()
    with_cuda = torch.cuda.is_available() and torch.version.cuda is not None
    if with_cuda:
        home = _cuda_env.prepare_environment(gpu_visible=True)
        problem = _cuda_env.toolkit_problem(home)
        if problem is None:
            cpp_extension.CUDA_HOME = home
        else:  # pip's CUDA torch comes without nvcc: the CPU kernels still work
            with_cuda = False
            low = ".".join(map(str, _cuda_env.MIN_TOOLKIT))
            warnings.warn(
                f"dsampling_ext: torch {torch.__version__} sees a GPU but {problem}, so only the CPU kernels are "
                f"built and CUDA tensors raise an error. For the CUDA kernels install a CUDA toolkit >= {low} "
                f"matching torch's CUDA {torch.version.cuda} (NVIDIA's installer, or conda's cuda-nvcc and "
                "cuda-cudart-dev) and set CUDA_HOME to its root: the next import JIT-builds the CUDA kernels too "
                "(or build them once: pip install --no-build-isolation -e <checkout>)", CudaKernelsMissingWarning,
                stacklevel=_user_stacklevel())
    build_dir = Path(os.environ.get("DSAMPLING_BUILD_DIR", csrc.parent / "build" / "jit"))
    name = "dsampling_jit_cuda" if with_cuda else "dsampling_jit_cpu"
    build_dir = build_dir / f"{name}-torch{torch.__version__}"
    build_dir.mkdir(parents=True, exist_ok=True)
    kernels = "CPU+CUDA" if with_cuda else "CPU"
    if (build_dir / f"{name}.so").is_file():
        message = (f"dsampling_ext: no prebuilt extension; loading the JIT-built {kernels} kernels cached in "
                   f"{build_dir} (rebuilt first if {csrc} changed)")
    else:
        message = (f"dsampling_ext: no prebuilt extension; JIT-building {kernels} kernels from {csrc} into "
                   f"{build_dir} (a few minutes, once: later imports load them from there)")
    warnings.warn(message, JitBuildWarning, stacklevel=_user_stacklevel())
    cxx, nvcc = _cuda_env.compile_flags(with_cuda, openmp=torch.backends.openmp.is_available())
    cpp_extension.load(
        name=name,
        sources=_cuda_env.sources(csrc, with_cuda),
        extra_include_paths=[str(csrc)],
        extra_cflags=cxx,
        extra_cuda_cflags=nvcc,
        build_directory=str(build_dir),
        is_python_module=False,
        verbose=False,
    )
    return build_dir / f"{name}.so"


def load() -> dict:
    """Load the kernels once; return what was loaded (see ``dsampling_ext.build_info``)."""
    if _info:
        return _info
    library = None
    if os.environ.get("DSAMPLING_FORCE_JIT") != "1":
        try:
            module = importlib.import_module("dsampling_ext._C")
            library, path = module.__file__, "prebuilt"
        except ImportError:
            library = None
    if library is None:
        library, path = str(_jit_build()), "jit"
        owner = _csrc_dir().parent  # the source tree the JIT build compiled
        matches = owner == _PACKAGE_DIR.parent or owner == _PACKAGE_DIR
    else:
        owner = Path(library).resolve().parent
        matches = owner == _PACKAGE_DIR
        if not matches:  # e.g. an editable install's finder resolved dsampling_ext._C in its own checkout
            warnings.warn(
                f"dsampling_ext: the Python files at {_PACKAGE_DIR} loaded the compiled kernels of another tree, "
                f"{library}; they may not match. Build this tree (pip install --no-build-isolation -e "
                f"{_PACKAGE_DIR.parent}) or set DSAMPLING_FORCE_JIT=1",
                ForeignBuildWarning, stacklevel=_user_stacklevel())
    cuda_version = torch.ops.dsampling._cuda_version()
    _info.update(
        path=path,
        library=library,
        package=str(_PACKAGE_DIR),
        library_tree=str(owner),
        matches_package=matches,
        cuda=cuda_version >= 0,
        cuda_version=None if cuda_version < 0 else f"{cuda_version // 1000}.{cuda_version % 1000 // 10}",
        torch=torch.__version__,
        torch_cuda=torch.version.cuda,
    )
    return _info
