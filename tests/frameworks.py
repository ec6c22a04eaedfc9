"""What the framework glue's tests share: their skip in make cuda-build's venv, and two gloo ranks."""

import os
import socket

import pytest
import torch.distributed as dist


def skip_in_cuda_venv():
    """The frameworks are installed by make test only; call before importing them."""
    if os.environ.get("DSAMPLING_EXPECT_CUDA_BUILD"):
        pytest.skip("make cuda-build's venv tests the CUDA kernels and installs no training frameworks; the glue is "
                    "pure Python, tested by make test", allow_module_level=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gather(obj):
    """Every rank's ``obj``, in rank order."""
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
