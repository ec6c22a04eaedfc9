"""loss_histogram against numpy's own histogram test-suite, and the two cases it once missed."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dsampling_ext import loss_histogram

REPLAY = Path(__file__).parent / "tools" / "numpy_histogram_replay.py"


def test_every_supported_call_of_numpys_histogram_tests_agrees(tmp_path):
    out = tmp_path / "replay.json"
    run = subprocess.run([sys.executable, str(REPLAY), str(out)], capture_output=True, text=True, timeout=600)
    report = json.loads(out.read_text())
    assert report["pytest_exit_code"] == 0, run.stdout[-2000:]  # numpy's tests pass with the wrapper in place
    # numpy 2.4's test_histograms.py makes ~5,450 np.histogram calls; ~4,950 are ones the op supports
    # (float input, finite, int or sturges/sqrt/rice bins, no weights or density, float64 bounds).
    assert report["compared"] >= 4000, report["compared"]
    assert report["mismatches"] == []


@pytest.mark.parametrize("rule", ["sturges", "sqrt", "rice"])
@pytest.mark.parametrize("values", [[3.0] * 7, [2.5]])
def test_a_rule_on_zero_range_data_gives_numpys_single_bin(rule, values):
    a = np.array(values)
    counts, edges = loss_histogram(torch.tensor(values, dtype=torch.float64), rule)
    want_counts, want_edges = np.histogram(a, rule)
    assert counts.tolist() == want_counts.tolist() == [len(values)]
    assert edges.tolist() == want_edges.tolist()


@pytest.mark.parametrize("rule, range_", [("sturges", (-20.0, 20.0)), ("sqrt", (-1.0, 3.0)), ("rice", (0.5, 0.6)),
                                          ("sturges", (5.0, 6.0))])
def test_a_rule_with_a_range_takes_numpys_width_from_the_data_inside(rule, range_):
    a = np.random.default_rng(0).normal(size=1000)
    counts, edges = loss_histogram(torch.from_numpy(a), rule, range_)
    want_counts, want_edges = np.histogram(a, rule, range_)
    assert counts.numel() == want_counts.size  # e.g. 63 Sturges bins over (-20, 20), not 11
    assert np.array_equal(counts.numpy(), want_counts) and np.array_equal(edges.numpy(), want_edges)


def test_typed_range_bounds_widen_the_edges_like_numpy():
    a = np.array([1.0], dtype=np.float16)
    bounds = (np.float32(1.0000001), np.float32(2.0))
    counts, edges = loss_histogram(torch.from_numpy(a), 1, bounds)
    want_counts, want_edges = np.histogram(a, 1, bounds)
    assert edges.dtype == torch.float32 and want_edges.dtype == np.float32
    assert counts.tolist() == want_counts.tolist() == [0] and np.array_equal(edges.numpy(), want_edges)
