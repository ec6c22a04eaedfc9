import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import dsampling_ext
from reference import argmax_mismatch_reference

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
SPECIAL = [0.0, 1.0, -1.0, 2.5, 3.0, math.inf, -math.inf, math.nan]
AMBIGUOUS = 1e-9  # a gap this close to the margin may round either way on the two sides


@st.composite
def logits_and_labels(draw, dtype):
    """Rows of float16-exact values with ties, +-inf and NaN. Small cases are drawn value by
    value from a small pool; large ones (several of the CPU kernel's 64-row blocks, or 1000
    classes so that at::parallel_for splits the rows) from a seeded generator, with a share of
    SPECIAL values. About half the labels are the row's argmax, so the margin decides them."""
    if draw(st.booleans()):
        pool = draw(st.lists(st.sampled_from(SPECIAL), min_size=1, max_size=4))
        rows, classes = draw(st.integers(1, 40)), draw(st.integers(1, 12))
        values = draw(st.lists(st.one_of(st.sampled_from(pool), st.floats(-8, 8, width=16)), min_size=rows * classes,
                               max_size=rows * classes))
        logits = torch.tensor(values, dtype=torch.float64).view(rows, classes)
        g = torch.Generator().manual_seed(rows * classes)
    else:
        rows = draw(st.integers(65, 700))
        classes = draw(st.one_of(st.integers(1, 12), st.just(1000)))
        g = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
        logits = (4 * torch.randn(rows, classes, generator=g, dtype=torch.float64)).half().double()
        special = torch.rand(rows, classes, generator=g) < draw(st.sampled_from([0.001, 0.05, 0.3]))
        picks = torch.tensor(SPECIAL, dtype=torch.float64)[torch.randint(0, len(SPECIAL), (rows, classes), generator=g)]
        logits = torch.where(special, picks, logits)
    logits = logits.to(dtype)
    labels = torch.where(torch.rand(rows, generator=g) < 0.5, logits.argmax(1), torch.randint(0, classes, (rows,), generator=g))
    return logits, labels


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@given(data=st.data(), margin=st.sampled_from([None, 0.0, 0.1, 0.5, 1.0]), int32=st.booleans())
def test_matches_torch_reference(dtype, data, margin, int32):
    logits, labels = data.draw(logits_and_labels(dtype))
    if int32:
        labels = labels.int()
    keep, kept, count = dsampling_ext.argmax_mismatch(logits, labels, margin)
    want, gap = argmax_mismatch_reference(logits, labels, margin)
    # Both sides compute a gap of exactly 0 (a top-2 tie) or exactly 1 (one finite class, C = 1
    # included): those rows are compared at any margin; others only away from the margin.
    exact = (gap == 0) | (gap == 1)
    clear = torch.ones_like(want) if margin is None else exact | ~((gap - margin).abs() < AMBIGUOUS)
    assert torch.equal(keep[clear], want[clear])
    n = int(count)
    assert n == int(keep.sum()) and count.dim() == 0
    assert kept[:n].tolist() == keep.nonzero().flatten().tolist()
    assert (kept[n:] == -1).all()


def test_hand_computed_cases():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 3.0], [1.0, 1.0, 0.0], [5.0, 0.0, 0.0]])
    labels = torch.tensor([0, 2, 0, 0])
    keep, kept, count = dsampling_ext.argmax_mismatch(logits, labels)
    # row 1: tie between classes 1 and 2 -> argmax 1 != 2; row 2: tie -> argmax 0 == label
    assert keep.tolist() == [False, True, False, False]
    assert kept.tolist() == [1, -1, -1, -1] and int(count) == 1
    # margin: row 0 gap = (e^2 - e^1) / (e^2 + e + 1) = 0.4205; row 2 gap 0; row 3 gap ~0.9867
    keep, _, _ = dsampling_ext.argmax_mismatch(logits, labels, margin=0.5)
    assert keep.tolist() == [True, True, True, False]
    e = math.e
    assert (e**2 - e) / (e**2 + e + 1) == pytest.approx(0.42051248)


def test_nan_and_inf_follow_torch():
    logits = torch.tensor([[1.0, math.nan, 2.0], [math.inf, 1.0, math.inf], [-math.inf, -math.inf, -math.inf]])
    labels = torch.tensor([1, 0, 0])
    keep, _, _ = dsampling_ext.argmax_mismatch(logits, labels, margin=1.0)
    assert torch.equal(keep, logits.argmax(1) != labels)  # NaN is the max; +inf and -inf rows have no gap


def test_single_class_has_gap_one():
    keep, _, _ = dsampling_ext.argmax_mismatch(torch.randn(5, 1), torch.zeros(5, dtype=torch.int64), margin=0.99)
    assert not keep.any()
    keep, _, _ = dsampling_ext.argmax_mismatch(torch.randn(5, 1), torch.zeros(5, dtype=torch.int64), margin=1.0)
    assert keep.all()


def test_non_contiguous_and_empty():
    base = torch.randn(64, 20, generator=torch.Generator().manual_seed(0))
    view = base[:, ::2]
    labels = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(dsampling_ext.argmax_mismatch(view, labels)[0], view.argmax(1) != labels)
    keep, kept, count = dsampling_ext.argmax_mismatch(torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64))
    assert keep.numel() == 0 and kept.numel() == 0 and int(count) == 0


def test_large_epoch_mode_case():
    # 300k rows: the compaction runs in several chunks (one per thread) that must not overlap
    logits = torch.randn(300_000, 10, generator=torch.Generator().manual_seed(2))
    labels = torch.randint(0, 10, (300_000,), generator=torch.Generator().manual_seed(3))
    keep, kept, count = dsampling_ext.argmax_mismatch(logits, labels)
    assert torch.equal(keep, logits.argmax(1) != labels)
    assert torch.equal(kept[: int(count)], keep.nonzero().flatten())


@pytest.mark.parametrize(
    "logits,labels,margin,error,match",
    [
        (torch.randn(4), torch.zeros(4, dtype=torch.int64), None, ValueError, r"logits must have shape \[B, C\]"),
        (torch.randn(4, 3), torch.zeros(5, dtype=torch.int64), None, ValueError, r"labels must have shape \[4\]"),
        (torch.randn(4, 3), torch.zeros(4), None, TypeError, "labels must be int64 or int32"),
        (torch.randint(0, 3, (4, 3)), torch.zeros(4, dtype=torch.int64), None, TypeError, "logits must be float16"),
        (torch.randn(4, 3), torch.zeros(4, dtype=torch.int64), 1.5, ValueError, r"margin must be None or a number in \[0, 1\]"),
        (torch.randn(4, 3), torch.tensor([0, 1, 3, 0]), None, RuntimeError, r"labels must be in \[0, 3\), got 3 at index 2"),
        (torch.randn(4, 3), torch.tensor([0, -1, 2, 0]), None, RuntimeError, r"labels must be in \[0, 3\), got -1"),
    ],
)
def test_rejects_bad_arguments(logits, labels, margin, error, match):
    with pytest.raises(error, match=match):
        dsampling_ext.argmax_mismatch(logits, labels, margin)


@pytest.mark.parametrize("margin", [None, 0.2])
def test_opcheck(device, margin):
    logits = torch.randn(33, 7, device=device)
    labels = torch.randint(0, 7, (33,), device=device)
    torch.library.opcheck(torch.ops.dsampling.argmax_mismatch.default, (logits, labels, margin))


def test_torch_compile_matches_eager():
    def filt(x, w, y):
        return dsampling_ext.argmax_mismatch(x @ w, y, 0.1)

    x, w = torch.randn(256, 16), torch.randn(16, 10)
    y = torch.randint(0, 10, (256,))
    eager = filt(x, w, y)
    compiled = torch.compile(filt, fullgraph=True)(x, w, y)
    want, _ = argmax_mismatch_reference(x @ w, y, 0.1)
    assert torch.equal(eager[0], want)
    for a, b in zip(eager, compiled):
        assert torch.equal(a, b)
