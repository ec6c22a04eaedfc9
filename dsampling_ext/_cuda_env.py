"""Locate the CUDA toolkit and pick target architectures for building the CUDA kernels.

Used by setup.py (loaded by path, before torch.utils.cpp_extension is imported) and by the JIT
loader. Standard library only.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

# Turing (T4), Ampere and Hopper code plus Hopper PTX, for builds that see no GPU (Docker, CI).
DEFAULT_ARCH_LIST = "7.5;8.0;9.0+PTX"

#: The oldest CUDA toolkit the kernels are built with: its CCCL (2.7) is the first whose cub
#: DeviceSelect / DevicePartition take 64-bit item counts (NVIDIA/cccl#2400). With an older one,
#: argmax_mismatch and table_select would silently truncate N >= 2**31.
MIN_TOOLKIT = (12, 8)


def _is_toolkit_root(path: Path) -> bool:
    return (path / "bin" / "nvcc").is_file() and (path / "include" / "cuda_runtime.h").is_file()


def find_cuda_home() -> str | None:
    """Return the CUDA toolkit root, or None when there is none.

    torch guesses the root as the parent of the nvcc on PATH; where that nvcc is a wrapper
    script (``exec /usr/local/cuda-13.0/bin/nvcc "$@"``) the guess is wrong and linking fails on
    -lcudart, so follow the wrapper to the real binary.
    """
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var) and _is_toolkit_root(Path(os.environ[var])):
            return os.environ[var]
    nvcc = shutil.which("nvcc")
    if nvcc is not None:
        real = Path(os.path.realpath(nvcc))
        if _is_toolkit_root(real.parent.parent):
            return str(real.parent.parent)
        try:
            text = real.read_text(errors="ignore")[:4096]
        except OSError:
            text = ""
        for target in re.findall(r"(/[^\s\"']+)/bin/nvcc\b", text):
            if _is_toolkit_root(Path(target)):
                return target
    for candidate in ["/usr/local/cuda", *sorted(glob.glob("/usr/local/cuda-*"), reverse=True)]:
        if _is_toolkit_root(Path(candidate)):
            return candidate
    return None


def toolkit_version(home: str) -> tuple[int, int] | None:
    """(major, minor) of the toolkit's nvcc ("release 13.0" in ``nvcc --version``), or None."""
    try:
        out = subprocess.run([str(Path(home) / "bin" / "nvcc"), "--version"], capture_output=True, text=True,
                             timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"release (\d+)\.(\d+)", out)
    return (int(found.group(1)), int(found.group(2))) if found else None


def toolkit_problem(home: str | None) -> str | None:
    """Why the CUDA kernels cannot be built with this toolkit root (None: they can)."""
    if home is None:
        return "no CUDA toolkit (nvcc) was found (set CUDA_HOME to its root)"
    version = toolkit_version(home)
    if version is None:
        return f"the version of {home}/bin/nvcc could not be read"
    if version < MIN_TOOLKIT:
        return (f"the CUDA toolkit at {home} is {version[0]}.{version[1]}, older than the "
                f"{MIN_TOOLKIT[0]}.{MIN_TOOLKIT[1]} the kernels need (its cub takes 64-bit item counts, "
                "NVIDIA/cccl#2400; older ones would truncate N >= 2**31)")
    return None


def prepare_environment(gpu_visible: bool) -> str | None:
    """Set CUDA_HOME and a default TORCH_CUDA_ARCH_LIST; return the toolkit root.

    Without a visible GPU torch cannot infer the architectures (it raises an IndexError), so an
    unset TORCH_CUDA_ARCH_LIST defaults to DEFAULT_ARCH_LIST: Turing (T4), Ampere and Hopper code
    plus Hopper PTX, which newer GPUs compile just in time instead of failing with "no kernel
    image is available".
    """
    home = find_cuda_home()
    if home is not None:
        os.environ["CUDA_HOME"] = home
    if not gpu_visible and not os.environ.get("TORCH_CUDA_ARCH_LIST"):
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCH_LIST
    return home


#: The CPU build of `make sanitize`: AddressSanitizer and UndefinedBehaviorSanitizer (with the float
#: to int conversions gcc leaves out of "undefined"), stopping at the first finding.
SANITIZE_FLAGS = ["-fsanitize=address,undefined,float-cast-overflow", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]


def compile_flags(with_cuda: bool, openmp: bool, debug: bool = False, sanitize: bool = False) -> tuple[list[str], list[str]]:
    """(cxx flags, nvcc flags) shared by setup.py and the JIT build; ``openmp`` when torch uses it.

    Floating-point contraction is off on both sides: the CPU and CUDA kernels must round the
    same way so that selections are bit-identical across devices. ``sanitize`` adds
    SANITIZE_FLAGS (CPU builds; the linker needs them too).
    """
    opt = ["-O0", "-g"] if debug else ["-O1", "-g", *SANITIZE_FLAGS] if sanitize else ["-O3"]
    # -fno-trapping-math lets gcc turn the clamps of the CPU loops into vector selects; the
    # kernels never rely on floating-point exception flags.
    cxx = [*opt, "-ffp-contract=off", "-fno-trapping-math"]
    if openmp:  # at::parallel_for is a template: without -fopenmp here it runs serially
        cxx.append("-fopenmp")
    if with_cuda:
        cxx.append("-DWITH_CUDA")
    nvcc = [*opt, "--expt-relaxed-constexpr", "-fmad=false", "-DWITH_CUDA"]
    nvcc += os.environ.get("NVCC_FLAGS", "").split()
    return cxx, nvcc


def sources(csrc: Path, with_cuda: bool) -> list[str]:
    """Every translation unit of the library: the schema list, CPU kernels, CUDA kernels."""
    files = [csrc / "ops.cpp", *sorted((csrc / "cpu").glob("*.cpp"))]
    if with_cuda:
        files += sorted((csrc / "cuda").glob("*.cu"))
    return [str(f) for f in files]
