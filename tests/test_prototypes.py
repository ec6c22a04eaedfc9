"""IDS (seed 003): the centroid_distances op against its references, class_order, and
PrototypeSelection (fit, subsets, sampler, state, fit_model)."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import dsampling_ext
from dsampling_ext import IndexedDataset, PrototypeSelection, ops
from reference import centroid_distances_reference, ordered_centroid_distances, prototype_selection_reference

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def clustered(n, d, k, seed, dtype=torch.float32, spread=1.0, classes_used=None):
    """n points around k class means (a class's mean drawn at random), labels in [0, k)."""
    g = torch.Generator().manual_seed(seed)
    used = k if classes_used is None else classes_used
    labels = torch.randint(0, used, (n,), generator=g)
    means = 4 * torch.randn(k, d, generator=g, dtype=torch.float64)
    x = means[labels] + spread * torch.randn(n, d, generator=g, dtype=torch.float64)
    return x.to(dtype), labels


@st.composite
def problems(draw, dtype):
    """Random clustered embeddings: chunk boundaries (> 256 rows a class), lane boundaries
    (D around 32 and 64), empty classes, repeated rows (equal distances)."""
    n = draw(st.one_of(st.integers(0, 40), st.integers(200, 1500)))
    d = draw(st.sampled_from([1, 3, 31, 32, 33, 64, 70]))
    k = draw(st.integers(1, 9))
    used = draw(st.integers(1, k))
    x, y = clustered(n, d, k, draw(st.integers(0, 2**31)), dtype, classes_used=used)
    if n > 1 and draw(st.booleans()):
        x[n // 2 :] = x[: n - n // 2].clone()  # duplicated rows
        y[n // 2 :] = y[: n - n // 2].clone()
    if draw(st.booleans()):
        y = y.int()
    return x, y, k


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@given(data=st.data())
def test_op_matches_ordered_reference_to_the_bit(dtype, data):
    x, y, k = data.draw(problems(dtype))
    centroids, d2, counts = ops.centroid_distances(x, y, k)
    want_c, want_d2, want_counts = ordered_centroid_distances(x, y, k)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    assert centroids.dtype == d2.dtype == acc and counts.dtype == torch.int64
    assert torch.equal(counts, want_counts)
    assert torch.equal(centroids, want_c)
    assert torch.equal(d2, want_d2)
    # and close to the float64 composite
    ref_c, ref_d2, _ = centroid_distances_reference(x, y, k)
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    assert torch.allclose(centroids.double(), ref_c, rtol=tol, atol=tol)
    assert torch.allclose(d2.double(), ref_d2, rtol=tol, atol=tol * x.shape[1])


def test_hand_computed():
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0], [4.0, 4.0], [1.0, 3.0]])
    y = torch.tensor([0, 0, 2, 0, 2])
    centroids, d2, counts = ops.centroid_distances(x, y, 3)
    assert counts.tolist() == [3, 0, 2]
    assert centroids[0].tolist() == [2.0, pytest.approx(4.0 / 3.0)] and centroids[2].tolist() == [5.5, 6.5]
    assert centroids[1].tolist() == [0.0, 0.0]  # an empty class's centroid is 0
    c0 = torch.tensor([2.0, 4.0 / 3.0])
    want = [float(((x[i] - c0) ** 2).sum()) for i in (0, 1, 3)]
    assert d2[[0, 1, 3]].tolist() == pytest.approx(want, rel=1e-6)
    assert d2[[2, 4]].tolist() == pytest.approx([4.5**2 + 3.5**2] * 2)


def test_non_contiguous_empty_and_single_class():
    base = torch.randn(300, 40, generator=torch.Generator().manual_seed(0))
    view = base[:, ::2]
    y = torch.arange(300) % 4
    got = ops.centroid_distances(view, y, 4)
    want = ops.centroid_distances(view.contiguous(), y, 4)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    centroids, d2, counts = ops.centroid_distances(torch.zeros(0, 5), torch.zeros(0, dtype=torch.int64), 3)
    assert centroids.shape == (3, 5) and not centroids.any() and d2.numel() == 0 and counts.tolist() == [0, 0, 0]
    centroids, d2, counts = ops.centroid_distances(torch.tensor([[1.0, 2.0]]), torch.tensor([1]), 2)
    assert centroids[1].tolist() == [1.0, 2.0] and d2.tolist() == [0.0] and counts.tolist() == [0, 1]


def test_large_classes_span_many_chunks_and_threads():
    x, y = clustered(70_000, 48, 3, seed=5)
    got = ops.centroid_distances(x, y, 3)
    want = ordered_centroid_distances(x, y, 3)
    assert all(torch.equal(a, b) for a, b in zip(got, want))


@pytest.mark.parametrize(
    "x,y,k,error,match",
    [
        (torch.randn(4), torch.zeros(4, dtype=torch.int64), 2, ValueError, r"embeddings must have shape \[N, D\]"),
        (torch.randn(4, 0), torch.zeros(4, dtype=torch.int64), 2, ValueError, r"with D >= 1"),
        (torch.randint(0, 3, (4, 2)), torch.zeros(4, dtype=torch.int64), 2, TypeError, "embeddings must be float16"),
        (torch.randn(4, 2), torch.zeros(4), 2, TypeError, "labels must be int64 or int32"),
        (torch.randn(4, 2), torch.zeros(5, dtype=torch.int64), 2, ValueError, r"labels must have shape \[4\]"),
        (torch.randn(4, 2), torch.zeros(4, dtype=torch.int64), 0, ValueError, r"num_classes must be an int in \[1"),
        (torch.randn(4, 2), torch.tensor([0, 1, 2, 0]), 2, RuntimeError, r"labels must be in \[0, 2\), got 2 at index 2"),
        (torch.randn(4, 2), torch.tensor([0, -1, 1, 0]), 2, RuntimeError, r"labels must be in \[0, 2\), got -1"),
        (torch.tensor([[0.0, 1.0], [math.nan, 0.0]]), torch.tensor([0, 0]), 1, RuntimeError,
         r"embeddings must be finite, got nan at \[1, 0\]"),
        (torch.tensor([[0.0, math.inf]]), torch.tensor([0]), 1, RuntimeError, r"embeddings must be finite, got inf"),
    ],
)
def test_op_rejects_bad_arguments(x, y, k, error, match):
    with pytest.raises(error, match=match):
        ops.centroid_distances(x, y, k)


def test_op_checks_in_cpp_name_the_argument():
    op = torch.ops.dsampling.centroid_distances.default
    with pytest.raises(RuntimeError, match="centroid_distances: num_classes must be in"):
        op(torch.randn(3, 2), torch.zeros(3, dtype=torch.int64), 0)
    with pytest.raises(RuntimeError, match=r"centroid_distances: labels must have shape \[3\]"):
        op(torch.randn(3, 2), torch.zeros(2, dtype=torch.int64), 1)


@pytest.mark.parametrize("labels_dtype", [torch.int64, torch.int32], ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_opcheck(device, dtype, labels_dtype):
    x, y = clustered(300, 20, 4, seed=1, dtype=dtype)
    torch.library.opcheck(torch.ops.dsampling.centroid_distances.default,
                          (x.to(device), y.to(device, labels_dtype), 5))


def test_torch_compile_matches_eager():
    def fn(x, w, y):
        return ops.centroid_distances(torch.relu(x @ w), y, 6)

    x, w = torch.randn(400, 16), torch.randn(16, 24)
    y = torch.randint(0, 6, (400,))
    eager = fn(x, w, y)
    compiled = torch.compile(fn, fullgraph=True)(x, w, y)
    assert all(torch.equal(a, b) for a, b in zip(eager, compiled))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("order", ["easy", "hard"])
def test_class_order_sorts_by_class_distance_then_index(dtype, order):
    g = torch.Generator().manual_seed(3)
    y = torch.randint(0, 5, (2000,), generator=g)
    d2 = torch.randint(0, 50, (2000,), generator=g).to(dtype) / 7  # many ties
    d2[::11] = 0.0
    got = ops.class_order(y, d2, order).tolist()
    sign = 1 if order == "easy" else -1
    want = sorted(range(2000), key=lambda i: (int(y[i]), sign * float(d2[i]), i))
    assert got == want


# -- PrototypeSelection ----------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.8, 0.5, 0.7, 0.01, 1.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_fit_matches_reference_selection(fraction, dtype):
    x, y = clustered(3000, 24, 7, seed=11, dtype=dtype, classes_used=6)  # class 6 is empty
    sel = PrototypeSelection(fraction).fit(x, y, num_classes=7)
    _, d2, _ = ordered_centroid_distances(x, y, 7)
    easy, hard, prototypes = prototype_selection_reference(d2, y, 7, fraction)
    assert sel.easy_indices.tolist() == easy
    assert sel.hard_indices.tolist() == hard
    assert sel.prototypes.tolist() == prototypes and prototypes[6] == -1
    if dtype == torch.float64:  # the float64 composite's distances rank the samples the same way
        _, ref_d2, _ = centroid_distances_reference(x, y, 7)
        assert prototype_selection_reference(ref_d2, y, 7, fraction) == (easy, hard, prototypes)


def test_fraction_one_keeps_everything_and_counts_are_exact():
    x, y = clustered(500, 8, 4, seed=2)
    sel = PrototypeSelection(1.0).fit(x, y)
    assert sel.easy_indices.tolist() == sel.hard_indices.tolist() == list(range(500))
    sizes = torch.bincount(y, minlength=4).tolist()
    for fraction in (0.7, 0.8, 0.3):
        sel = PrototypeSelection(fraction).fit(x, y)
        want = sum(math.ceil(round(fraction * s, 9)) for s in sizes)
        assert sel.easy_indices.numel() == want
        assert want <= sel.hard_indices.numel() <= want + 4
    # 0.55 * 100 is 55.00000000000001 in floats: ceil must still keep 55, not 56
    sel = PrototypeSelection(0.55).fit(torch.randn(100, 3), torch.zeros(100, dtype=torch.int64))
    assert sel.easy_indices.numel() == 55 and sel.hard_indices.numel() == 56  # 55 farthest + the prototype


def test_single_sample_classes_and_prototypes():
    x = torch.tensor([[0.0], [1.0], [2.0], [10.0], [5.0]])
    y = torch.tensor([0, 0, 0, 1, 2])
    sel = PrototypeSelection(0.5).fit(x, y)  # class 0: mean 1, distances 1, 0, 1
    assert sel.prototypes.tolist() == [1, 3, 4]
    assert sel.easy_indices.tolist() == [0, 1, 3, 4]  # ceil(1.5) = 2 nearest: 1, then 0 (tie with 2: lower index)
    assert sel.hard_indices.tolist() == [0, 1, 2, 3, 4]  # 2 farthest: 0 and 2 (tie), plus the prototype 1


def test_ties_go_to_the_lower_index():
    x = torch.tensor([[1.0], [-1.0], [1.0], [-1.0], [0.0], [3.0], [-3.0]])
    y = torch.zeros(7, dtype=torch.int64)  # mean 0: distances 1, 1, 1, 1, 0, 9, 9
    sel = PrototypeSelection(3 / 7).fit(x, y)
    assert sel.prototypes.tolist() == [4]
    assert sel.easy_indices.tolist() == [0, 1, 4]
    assert sel.hard_indices.tolist() == [0, 4, 5, 6]
    x = torch.tensor([[5.0], [-1.0], [1.0], [-5.0], [1.0]])
    y = torch.tensor([0, 0, 0, 0, 1])  # class 0: mean 0, distances 25, 1, 1, 25
    sel = PrototypeSelection(0.25).fit(x, y)
    assert sel.prototypes.tolist() == [1, 4]  # the nearest two tie: the lower index is the prototype
    assert sel.easy_indices.tolist() == [1, 4] and sel.hard_indices.tolist() == [0, 1, 4]


@pytest.mark.parametrize(
    "make,error,match",
    [
        (lambda: PrototypeSelection(0.0), ValueError, r"fraction must be a number in \(0, 1\], got 0.0"),
        (lambda: PrototypeSelection(1.5), ValueError, r"fraction must be a number in \(0, 1\], got 1.5"),
        (lambda: PrototypeSelection("0.8"), TypeError, r"fraction must be a number in \(0, 1\], got str"),
        (lambda: PrototypeSelection().set_epoch(-1), ValueError, "epoch must be an int >= 0"),
        (lambda: PrototypeSelection().set_epoch(1.0), TypeError, "epoch must be an int, got float"),
        (lambda: PrototypeSelection(order="medium"), ValueError, "order must be 'easy' or 'hard'"),
        (lambda: PrototypeSelection(switch_epoch=-1), ValueError, "switch_epoch must be an int >= 0"),
        (lambda: PrototypeSelection(refit_every=0), ValueError, "refit_every must be an int >= 1"),
        (lambda: PrototypeSelection().fit(torch.randn(3, 2), torch.tensor([0, 1, 2]), num_classes=2), ValueError,
         r"labels must be in \[0, 2\), got 2"),
        (lambda: PrototypeSelection().fit(torch.randn(3, 2), torch.tensor([0, -1, 1])), ValueError,
         r"labels must be in \[0, 2\), got -1"),
        (lambda: PrototypeSelection().fit(torch.tensor([[0.0], [math.nan]]), torch.tensor([0, 1])), ValueError,
         "embeddings must be finite, got nan"),
        (lambda: PrototypeSelection().fit(torch.randn(3, 2), torch.zeros(3)), ValueError, "labels must be a 1-D int64"),
        (lambda: PrototypeSelection().fit(torch.zeros(0, 2), torch.zeros(0, dtype=torch.int64)), ValueError,
         "labels must be non-empty"),
        (lambda: list(PrototypeSelection()), RuntimeError, "must be fitted first"),
    ],
)
def test_rejects_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_overflowing_distances_are_reported():
    x = torch.tensor([[3e38, 0.0], [-3e38, 0.0]])  # finite, but (x - mean)^2 overflows float32
    with pytest.raises(ValueError, match="embeddings must be finite"):
        PrototypeSelection().fit(x, torch.zeros(2, dtype=torch.int64))


def test_sampler_switches_from_easy_to_hard_and_shuffles_reproducibly():
    x, y = clustered(400, 6, 3, seed=4)
    sel = PrototypeSelection(0.6, switch_epoch=2, seed=9).fit(x, y)
    easy, hard = set(sel.easy_indices.tolist()), set(sel.hard_indices.tolist())
    assert easy != hard
    orders = []
    for epoch in range(4):
        sel.set_epoch(epoch)
        order = list(sel)
        assert len(order) == len(sel) and set(order) == (easy if epoch < 2 else hard) and len(set(order)) == len(order)
        assert sel.subset_name() == ("easy" if epoch < 2 else "hard")
        orders.append(order)
    assert orders[0] != orders[1] and orders[0] != sorted(orders[0])
    again = PrototypeSelection(0.6, switch_epoch=2, seed=9).fit(x, y)
    again.set_epoch(3)
    assert list(again) == orders[3]
    hard_first = PrototypeSelection(0.6, order="hard", seed=9).fit(x, y)
    hard_first.set_epoch(100)
    assert set(hard_first) == hard
    fixed = PrototypeSelection(0.6, shuffle=False).fit(x, y)
    assert list(fixed) == sorted(easy)


def test_shards_partition_the_epoch():
    x, y = clustered(301, 5, 3, seed=6)
    whole = PrototypeSelection(0.8, seed=2, num_replicas=1, rank=0).fit(x, y)
    shards = [PrototypeSelection(0.8, seed=2, num_replicas=3, rank=r).fit(x, y) for r in range(3)]
    for s in [whole, *shards]:
        s.set_epoch(5)
    order = list(whole)
    parts = [list(s) for s in shards]
    assert all(len(p) == len(shards[0]) == math.ceil(len(order) / 3) for p in parts)
    padded = order + order[: 3 * len(parts[0]) - len(order)]
    assert [padded[r::3] for r in range(3)] == parts


def test_state_dict_resumes_without_refitting():
    x, y = clustered(500, 6, 4, seed=8)
    sel = PrototypeSelection(0.7, switch_epoch=3, seed=1).fit(x, y)
    sel.set_epoch(4)
    state = sel.state_dict()
    resumed = PrototypeSelection(0.7, switch_epoch=3, seed=1)
    resumed.load_state_dict(state)
    assert list(resumed) == list(sel)
    assert torch.equal(resumed.prototypes, sel.prototypes) and torch.equal(resumed.centroids, sel.centroids)
    resumed.set_epoch(5)
    sel.set_epoch(5)
    assert list(resumed) == list(sel)
    with pytest.raises(ValueError, match="state was saved by"):
        PrototypeSelection(0.5).load_state_dict(state)


def test_state_dict_mid_epoch_resumes_where_it_stopped():
    x, y = clustered(300, 6, 3, seed=17)
    sel = PrototypeSelection(0.7, switch_epoch=1, seed=3).fit(x, y)
    sel.set_epoch(2)
    it = iter(sel)
    head = [next(it) for _ in range(50)]
    state = sel.state_dict()
    rest = list(it)
    resumed = PrototypeSelection(0.7, switch_epoch=1, seed=3)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # the loop calls set_epoch for the epoch it resumes: the position is kept
    assert state["position"] == 50 and list(resumed) == rest and len(head) + len(rest) == len(sel)
    resumed.set_epoch(3)
    sel.set_epoch(3)
    assert list(resumed) == list(sel)


# -- fit_model -------------------------------------------------------------------------------


def small_model(d=6, classes=3):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Flatten(), nn.Linear(16, classes))


def test_fit_model_takes_the_input_of_the_last_linear_by_default():
    x, y = clustered(300, 6, 3, seed=12)
    model = small_model()
    model.train()
    loader = DataLoader(IndexedDataset(TensorDataset(x, y)), batch_size=64, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    sel = PrototypeSelection(0.5).fit_model(model, loader, progress=False)
    assert model.training  # mode restored
    with torch.no_grad():
        features = model[:3](x)
    want = PrototypeSelection(0.5).fit(features, y)
    assert torch.equal(sel.easy_indices, want.easy_indices) and torch.equal(sel.hard_indices, want.hard_indices)
    assert torch.equal(sel.centroids, want.centroids)
    named = PrototypeSelection(0.5).fit_model(model, DataLoader(TensorDataset(x, y), batch_size=50), layer="1",
                                              progress=False)  # (inputs, targets) in order; the ReLU's output
    assert torch.equal(named.easy_indices, want.easy_indices)
    module = PrototypeSelection(0.5).fit_model(model, loader, layer=model[0], progress=True)
    with torch.no_grad():
        assert torch.equal(module.centroids, PrototypeSelection(0.5).fit(model[0](x), y).centroids)


def test_fit_model_keeps_the_first_row_of_an_index_embedded_twice():
    # An index the loader gives twice (augmented twice, padded shards) counts once, with the row
    # of its first occurrence. The model's last Linear takes x itself, so the embeddings are x.
    x, y = clustered(60, 6, 3, seed=21)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 3))
    augmented = x[[5, 17]] + 100.0
    batches = [(x[:30], y[:30], torch.arange(30)), (augmented, y[[5, 17]], torch.tensor([5, 17])),
               (x[30:], y[30:], torch.arange(30, 60))]
    sel = PrototypeSelection(0.5).fit_model(model, batches, progress=False)
    want = PrototypeSelection(0.5).fit(x, y)
    assert torch.equal(sel.centroids, want.centroids) and torch.equal(sel.sq_distances, want.sq_distances)
    assert torch.equal(sel.easy_indices, want.easy_indices) and torch.equal(sel.hard_indices, want.hard_indices)
    first_seen_late = [(augmented[:1], y[5:6], torch.tensor([5])), *batches[:1], *batches[2:]]
    late = PrototypeSelection(0.5).fit_model(model, first_seen_late, progress=False)
    assert not torch.equal(late.centroids, want.centroids)  # there the augmented row came first


class Probe(nn.Module):
    """Records the mode of every forward it sees."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, []

    def forward(self, x):
        self.calls.append((torch.is_inference_mode_enabled(), self.training))
        return self.inner(x)


def test_fit_model_embeds_in_inference_and_eval_mode_and_skips_the_head():
    x, y = clustered(200, 6, 3, seed=16)
    torch.manual_seed(0)
    body, head = Probe(nn.Sequential(nn.Linear(6, 8), nn.ReLU())), nn.Linear(8, 3)
    head_calls = []
    head.register_forward_hook(lambda *_: head_calls.append(1))
    model = nn.Sequential(body, head)
    sel = PrototypeSelection(0.5).fit_model(model, DataLoader(TensorDataset(x, y), batch_size=64), progress=False)
    assert body.calls == [(True, False)] * 4  # 4 batches, under inference_mode, in eval mode
    assert head_calls == [] and model.training  # the hook stopped the forward before the head; mode restored
    assert not sel.centroids.is_inference()  # what the sampler keeps is usable outside inference_mode


def test_fit_model_rejects_what_it_cannot_embed():
    x, y = clustered(100, 6, 3, seed=13)
    model = small_model()
    shuffled = DataLoader(TensorDataset(x, y), batch_size=10, shuffle=True)
    with pytest.raises(ValueError, match="loader must yield \\(inputs, targets, indices\\) when it shuffles"):
        PrototypeSelection().fit_model(model, shuffled, progress=False)
    with pytest.raises(ValueError, match="layer must name a submodule"):
        PrototypeSelection().fit_model(model, DataLoader(TensorDataset(x, y)), layer="head", progress=False)
    with pytest.raises(ValueError, match="no nn.Linear"):
        PrototypeSelection().fit_model(nn.Sequential(nn.ReLU()), DataLoader(TensorDataset(x, y)), progress=False)
    part = DataLoader(IndexedDataset(TensorDataset(x, y)), batch_size=10, sampler=list(range(0, 100, 2)))
    with pytest.raises(ValueError, match="loader must yield every index 0..N-1"):
        PrototypeSelection().fit_model(model, part, progress=False)


def test_refit_every_re_embeds_with_the_trained_model():
    x, y = clustered(300, 6, 3, seed=14, spread=3.0)
    model = small_model()
    loader = DataLoader(IndexedDataset(TensorDataset(x, y)), batch_size=100)
    sel = PrototypeSelection(0.5, refit_every=2).fit_model(model, loader, progress=False)
    first = sel.easy_indices.clone()
    sel.set_epoch(1)
    assert sel.fitted_epoch == 0
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    sel.set_epoch(2)
    assert sel.fitted_epoch == 2 and not torch.equal(sel.easy_indices, first)
    with torch.no_grad():
        want = PrototypeSelection(0.5).fit(model[:3](x), y)
    assert torch.equal(sel.easy_indices, want.easy_indices)
    with pytest.raises(RuntimeError, match="refit_every needs fit_model or use_model"):
        PrototypeSelection(refit_every=1).fit(x, y).set_epoch(1)


def test_resumed_run_refits_like_the_uninterrupted_one():
    """Stop after epoch 2 (a state_dict), resume in a new sampler with the same model: epochs 3-5,
    and the refit at epoch 4, give what the uninterrupted run gives."""
    x, y = clustered(400, 6, 4, seed=15, spread=3.0)
    loader = DataLoader(IndexedDataset(TensorDataset(x, y)), batch_size=128)

    def drift(model, epoch):  # "training": a deterministic change of the weights per epoch
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(epoch)))

    model = small_model()
    run = PrototypeSelection(0.6, switch_epoch=3, seed=2, refit_every=4).fit_model(model, loader, progress=False)
    orders, state = [], None
    for epoch in range(6):
        run.set_epoch(epoch)
        orders.append(list(run))
        drift(model, epoch)
        if epoch == 2:
            state = run.state_dict()
    model = small_model()
    for epoch in range(3):
        drift(model, epoch)
    resumed = PrototypeSelection(0.6, switch_epoch=3, seed=2, refit_every=4)
    resumed.load_state_dict(state)
    resumed.use_model(model, loader, progress=False)
    for epoch in range(3, 6):
        resumed.set_epoch(epoch)
        assert list(resumed) == orders[epoch]
        drift(model, epoch)
    assert resumed.fitted_epoch == 4 and not torch.equal(resumed.hard_indices, state["fitted"]["hard"])  # refitted


def test_public_exports():
    assert dsampling_ext.PrototypeSelection is PrototypeSelection
    assert dsampling_ext.centroid_distances is ops.centroid_distances
    for name in ("PrototypeSelection", "centroid_distances", "embed_dataset", "select_prototypes"):
        assert name in dsampling_ext.__all__


def test_select_prototypes_from_given_distances():
    d2 = torch.tensor([4.0, 1.0, 9.0, 1.0, 0.5, 2.0])
    y = torch.tensor([0, 0, 0, 0, 2, 2])
    easy, hard, prototypes = dsampling_ext.select_prototypes(d2, y, torch.tensor([4, 0, 2]), 0.5)
    assert easy.tolist() == [1, 3, 4] and hard.tolist() == [0, 1, 2, 4, 5] and prototypes.tolist() == [1, -1, 4]
    with pytest.raises(ValueError, match=r"counts must be int64 class sizes adding up to 6"):
        dsampling_ext.select_prototypes(d2, y, torch.tensor([4, 0, 1]), 0.5)
    with pytest.raises(TypeError, match="sq_distances must be float32 or float64"):
        dsampling_ext.select_prototypes(d2.half(), y, torch.tensor([4, 0, 2]), 0.5)
    with pytest.raises(ValueError, match=r"labels must have shape \(6,\)"):
        dsampling_ext.select_prototypes(d2, y[:5], torch.tensor([4, 0, 2]), 0.5)
    with pytest.raises(ValueError, match=r"fraction must be a number in \(0, 1\], got 0"):
        dsampling_ext.select_prototypes(d2, y, torch.tensor([4, 0, 2]), 0)
