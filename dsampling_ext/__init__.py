"""dsampling_ext: fused C++/CUDA kernels that decide which samples get a backward pass."""

from ._library import CudaKernelsMissingWarning, ForeignBuildWarning, JitBuildWarning, load as _load

_load()

from . import ops  # noqa: E402  (registers fake kernels once the ops exist)
from .accumulate import BatchAccumulator  # noqa: E402
from .importance import ImportanceSampler  # noqa: E402
from .histogram_selector import LossCache, LossHistogramSelector, selective_batches  # noqa: E402
from .misclassified_filter import MisclassifiedFilter  # noqa: E402
from .ops import (  # noqa: E402
    argmax_mismatch,
    centroid_distances,
    gradnorm_scores,
    histogram_select,
    loss_histogram,
    partition_resample,
    philox_uniform,
    random_subset,
    table_select,
    weighted_sample,
)
from .partition import DynamicPartitionSampler  # noqa: E402
from .baselines import RandomSubsetSampler  # noqa: E402
from .prototypes import PrototypeSelection, embed_dataset, select_prototypes  # noqa: E402
from .pruning import PruningSampler  # noqa: E402
from .sampling import IndexSubsetSampler, IndexedDataset  # noqa: E402
from .schedules import ProgressLR, ProgressScheduler  # noqa: E402
from .scores import ScoreTable, TableSampler, weighted_mean  # noqa: E402
from .timing import StageTimer  # noqa: E402


def build_info() -> dict:
    """How the compiled kernels were obtained.

    Returns:
        dict with ``path`` ("prebuilt" or "jit"), ``library`` (file loaded), ``package`` (where
        the Python files are), ``library_tree`` (the tree the library belongs to: its package
        directory, or the source tree a JIT build compiled), ``matches_package`` (whether that is
        this package; import warns with ForeignBuildWarning otherwise), ``cuda`` (whether
        CUDA kernels are compiled in), ``cuda_version`` (toolkit they were built with, or None),
        ``torch`` and ``torch_cuda`` (the running torch and its CUDA version).
    """
    return dict(_load())


__all__ = [
    "BatchAccumulator",
    "CudaKernelsMissingWarning",
    "DynamicPartitionSampler",
    "ForeignBuildWarning",
    "ImportanceSampler",
    "IndexSubsetSampler",
    "IndexedDataset",
    "JitBuildWarning",
    "LossCache",
    "LossHistogramSelector",
    "MisclassifiedFilter",
    "ProgressLR",
    "ProgressScheduler",
    "PrototypeSelection",
    "PruningSampler",
    "RandomSubsetSampler",
    "ScoreTable",
    "StageTimer",
    "TableSampler",
    "argmax_mismatch",
    "build_info",
    "centroid_distances",
    "embed_dataset",
    "gradnorm_scores",
    "histogram_select",
    "loss_histogram",
    "ops",
    "partition_resample",
    "philox_uniform",
    "random_subset",
    "select_prototypes",
    "selective_batches",
    "table_select",
    "weighted_mean",
    "weighted_sample",
]
