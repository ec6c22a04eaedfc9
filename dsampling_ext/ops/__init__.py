"""Typed wrappers of the ``torch.ops.dsampling`` kernels, and their fake (meta) kernels.

Each wrapper validates its arguments (``ValueError``/``TypeError`` naming the argument) and calls
``torch.ops.dsampling.<op>.default``. The fake kernels repeat the C++ checks in
``csrc/common/checks.h`` with the same wording, so ``torch.compile`` traces the ops; they live
in ``_fakes`` (the op library points the dispatcher there), registered on import. One module
per op family: ``philox``, ``histogram``, ``argmax``, ``partition``, ``table``, ``importance``,
``prototypes``;
``dsampling_ext.ops.<name>`` is the public path of every wrapper.
"""

from ._common import (  # noqa: F401  (internal names the method modules use)
    BIN_RULES,
    LOSS_DTYPES,
    _as_int64,
    _bin_rule,
    _check_device,
    _check_tensor,
    _choice,
    bin_count,
)
from .argmax import argmax_mismatch
from .histogram import (  # noqa: F401
    CLIP_MODES,
    KEEP_MODES,
    MAX_HISTORY,
    MAX_SELECT_BINS,
    SELECT_RULES,
    _histogram_select,
    _select_options,
    histogram_select,
    loss_histogram,
)
from .importance import gradnorm_scores, weighted_sample
from .partition import partition_resample, random_subset, random_subset_
from .philox import philox_uniform
from .prototypes import centroid_distances, class_order
from .table import REWEIGHT_DEFAULT, TABLE_RULES, table_record_, table_select  # noqa: F401

from . import _fakes  # noqa: E402,F401  (registers the fake kernels)

__all__ = [
    "BIN_RULES",
    "argmax_mismatch",
    "bin_count",
    "centroid_distances",
    "class_order",
    "gradnorm_scores",
    "histogram_select",
    "loss_histogram",
    "partition_resample",
    "philox_uniform",
    "random_subset",
    "random_subset_",
    "table_record_",
    "table_select",
    "weighted_sample",
]
