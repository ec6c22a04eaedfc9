"""Run numpy's own histogram test-suite with np.histogram wrapped: every call the op supports is
replayed through dsampling_ext.loss_histogram and compared, counts and edges, bit for bit.

Usage: python numpy_histogram_replay.py OUT.json. Writes {"compared", "skipped", "mismatches"}
and numpy's pytest exit code; numpy's tests still see numpy's own results.
"""

import json
import math
import os
import sys

import numpy as np
import pytest
import torch

import dsampling_ext

RULES = ("sturges", "sqrt", "rice")
DTYPES = (np.float16, np.float32, np.float64)


def supported(a, bins, range, density, weights):
    """The op's arguments for this call, or None when it is outside what the op does."""
    if weights is not None or density:
        return None
    try:
        values = np.asarray(a)
    except Exception:
        return None
    if values.dtype.type not in DTYPES or values.size == 0 or not np.isfinite(values).all():
        return None
    if isinstance(bins, str):
        if bins not in RULES:
            return None
    elif isinstance(bins, (int, np.integer)) and not isinstance(bins, bool):
        if bins < 1:
            return None
        bins = int(bins)
    else:  # explicit edges
        return None
    if range is not None:
        if any(float(r) != r for r in range):  # e.g. a longdouble bound: the op takes float64 bounds
            return None
        lo, hi = (float(r) for r in range)
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
            return None
        range = tuple(range)  # as given: numpy float scalars widen the edges' dtype, in numpy and in the op
    native = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("="))  # torch reads native order only
    return torch.from_numpy(native), bins, range


def main(out):
    real = np.histogram
    report = dict(compared=0, skipped=0, mismatches=[])

    def histogram(a, bins=10, range=None, density=None, weights=None):
        result = real(a, bins=bins, range=range, density=density, weights=weights)
        args = supported(a, bins, range, density, weights)
        if args is None:
            report["skipped"] += 1
            return result
        report["compared"] += 1
        values, op_bins, op_range = args
        case = dict(dtype=str(values.dtype), n=values.numel(), bins=op_bins, range=op_range and [repr(r) for r in op_range])
        try:
            counts, edges = dsampling_ext.loss_histogram(values, op_bins, op_range)
        except Exception as error:  # numpy answered, the op refused
            report["mismatches"].append(dict(case, error=str(error)[:200]))
            return result
        same = (np.array_equal(counts.numpy(), result[0]) and edges.numpy().dtype == result[1].dtype
                and np.array_equal(edges.numpy(), result[1]))
        if not same:
            report["mismatches"].append(dict(
                case, values=values.flatten()[:4].tolist(), numpy=[result[0][:8].tolist(), result[1][:9].tolist()],
                op=[counts[:8].tolist(), edges[:9].tolist(), str(edges.dtype)], numpy_edges_dtype=str(result[1].dtype)))
        return result

    np.histogram = histogram  # before pytest imports the test module (it does `from numpy import histogram`)
    suite = os.path.join(os.path.dirname(np.__file__), "lib", "tests", "test_histograms.py")
    code = pytest.main([suite, "-q", "-p", "no:cacheprovider", "-W", "ignore"])
    report["pytest_exit_code"] = int(code)
    with open(out, "w") as f:
        json.dump(report, f, indent=1, default=str)


if __name__ == "__main__":
    main(sys.argv[1])
