"""ImportanceSampler (RAS, SPEC section 4): its distribution against the formula, unbiased
weighted gradients with lower variance than uniform sampling, the smoothing floor, resume, and
bad arguments. Two-rank behaviour is in tests/test_distributed.py."""

import io
import itertools
import math
import warnings

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from torchdata.stateful_dataloader import StatefulDataLoader

from dsampling_ext import ImportanceSampler, IndexedDataset, ops, weighted_mean
from reference import gradnorm_scores_reference
from resume import stateful_resume


def ras_reference(groups, batches, smoothing, within, decay):
    """p_i from the SPEC's formulas, in plain Python: batches = [(indices, logits, labels)]."""
    ids = sorted(set(groups.tolist()))
    gid = [ids.index(v) for v in groups.tolist()]
    n, G = len(gid), len(ids)
    size = [gid.count(k) for k in range(G)]
    sum_sq, count = [0.0] * G, [0.0] * G
    score, scored = [0.0] * n, [False] * n
    for idx, z, y in batches:
        s = gradnorm_scores_reference(z, y)[0].float().tolist()
        bs, bc = [0.0] * G, [0] * G
        for i, v in zip(idx.tolist(), s):
            bs[gid[i]] += v * v
            bc[gid[i]] += 1
        for k in range(G):
            if bc[k]:
                sum_sq[k], count[k] = decay * sum_sq[k] + bs[k], decay * count[k] + bc[k]
        last = dict(zip(idx.tolist(), s))  # an index twice in a batch: its last score, once
        for i, v in last.items():
            score[i] = decay * score[i] + (1 - decay) * v if scored[i] else v
            scored[i] = True
    seen = [k for k in range(G) if count[k] > 0]
    glob = sum(sum_sq[k] for k in seen) / sum(count[k] for k in seen) if seen else None
    mass = [size[k] * math.sqrt(sum_sq[k] / count[k] if count[k] else glob) if glob is not None else 0.0
            for k in range(G)]
    P = [m / sum(mass) for m in mass] if sum(mass) > 0 else [s / n for s in size]
    if within == "uniform":
        q = [1 / size[gid[i]] for i in range(n)]
    else:
        in_group = [[i for i in range(n) if gid[i] == k] for k in range(G)]
        all_scored = [score[i] for i in range(n) if scored[i]]
        gmean = sum(all_scored) / len(all_scored) if all_scored else 1.0
        filled = list(score)
        for k in range(G):
            mine = [score[i] for i in in_group[k] if scored[i]]
            for i in in_group[k]:
                if not scored[i]:
                    filled[i] = sum(mine) / len(mine) if mine else gmean
        tot = [sum(filled[i] for i in in_group[k]) for k in range(G)]
        q = [filled[i] / tot[gid[i]] for i in range(n)]
    return torch.tensor([(1 - smoothing) * P[gid[i]] * q[i] + smoothing / n for i in range(n)], dtype=torch.float64)


def _batches(groups, steps, batch, seed, classes=4):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        idx = torch.randint(0, len(groups), (batch,), generator=g)
        # larger logits for larger group ids: scores differ across groups
        z = torch.randn(batch, classes, generator=g) * (1 + 3 * (groups[idx] % 3)).float()[:, None]
        out.append((idx, z, torch.randint(0, classes, (batch,), generator=g)))
    return out


@pytest.mark.parametrize("within", ["uniform", "score"])
@pytest.mark.parametrize("steps", [0, 1, 6])
def test_distribution_matches_the_formula(within, steps):
    groups = torch.tensor([7, -2, 7, 30] * 25 + [5] * 3)  # any int ids; group 5 is rarely scored
    sampler = ImportanceSampler(103, groups, 8, smoothing=0.2, within=within, score_decay=0.7)
    batches = _batches(groups, steps, 9, seed=steps)
    for idx, z, y in batches:
        raw = sampler.update(idx, z, y)
        torch.testing.assert_close(raw.double(), gradnorm_scores_reference(z, y)[0], rtol=2e-6, atol=0)
    want = ras_reference(groups, batches, 0.2, within, 0.7)
    torch.testing.assert_close(sampler.probabilities(), want, rtol=1e-5, atol=0)
    assert float(sampler.probabilities().sum()) == pytest.approx(1.0, abs=1e-12)
    if steps == 0:
        assert torch.allclose(want, torch.full((103,), 1 / 103, dtype=torch.float64))


def test_no_probability_below_smoothing_over_n():
    # One group confidently right (scores ~1e-20), one wrong: without smoothing the first would
    # almost never be drawn; with it, every p_i >= smoothing / N and every weight <= 1 / smoothing.
    n = 200
    groups = torch.arange(n) % 2
    for within in ("uniform", "score"):
        for smoothing in (0.05, 0.1, 0.5):
            sampler = ImportanceSampler(n, groups, 10, smoothing=smoothing, within=within)
            z = torch.zeros(n, 2)
            z[groups == 0, 0] = 50.0
            sampler.update(torch.arange(n), z, torch.zeros(n, dtype=torch.int64))
            p = sampler.probabilities()
            assert float(p.min()) >= smoothing / n * (1 - 1e-12)
            assert float(p[groups == 0].max()) < smoothing / n * (1 + 1e-6)  # the floor is reached
            sampler.set_epoch(1)
            assert float(sampler.weights(torch.arange(n)).max()) <= 1 / smoothing * (1 + 1e-6)


def _linear_problem():
    """A fixed linear softmax model on 300 points in 3 groups whose gradient norms differ: groups
    0 and 1 are fit well (labels = the model's argmax), group 2 has random labels."""
    g = torch.Generator().manual_seed(0)
    n, d, c = 300, 5, 3
    groups = torch.arange(n) % 3
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True)  # equal norms: the score is the gradient norm up to ||x||
    w = torch.randn(c, d, generator=g, dtype=torch.float64) * 4
    logits = x @ w.T
    y = logits.argmax(1)
    noisy = groups == 2
    y[noisy] = torch.randint(0, c, (int(noisy.sum()),), generator=g)
    p = torch.softmax(logits, 1)
    grads = ((p - torch.nn.functional.one_hot(y, c)).unsqueeze(2) * x.unsqueeze(1)).reshape(n, -1)  # dL_i/dW
    return groups, logits, y, grads


def _weighted_batch_gradients(sampler, grads, epoch):
    sampler.set_epoch(epoch)
    out = []
    for batch in sampler:
        idx = torch.tensor(batch)
        out.append((grads[idx] * sampler.weights(idx).double()[:, None]).mean(0))  # weighted_mean's gradient
    return torch.stack(out)


def test_weighted_gradient_is_unbiased_with_lower_variance():
    groups, logits, y, grads = _linear_problem()
    n = len(groups)
    full = grads.mean(0)
    batch, batches = 16, 3000
    ras = ImportanceSampler(n, groups, batch, smoothing=0.1, batches_per_epoch=batches, seed=1)
    ras.update(torch.arange(n), logits.float(), y)
    uniform = ImportanceSampler(n, groups, batch, smoothing=1.0, batches_per_epoch=batches, seed=1)
    results = {}
    for name, sampler in (("ras", ras), ("uniform", uniform)):
        est = _weighted_batch_gradients(sampler, grads, 1)
        p = sampler.epoch_probabilities
        per_draw = grads / (n * p[:, None])  # one draw's estimate, with probability p_i
        var = (p[:, None] * per_draw**2).sum(0) - full**2  # exact variance of one draw, per coordinate
        # Unbiased: the mean over batches * batch draws is within 5 standard deviations of the
        # full gradient in every coordinate.
        z = (est.mean(0) - full) / (var / (batch * batches)).sqrt()
        assert float(z.abs().max()) < 5, (name, z)
        # The empirical variance of a batch estimate is the exact one within 10% (3000 batches).
        emp, exact = float(est.var(0).sum()), float(var.sum() / batch)
        assert emp == pytest.approx(exact, rel=0.1)
        results[name] = exact
    # RAS puts the draws where the gradients are large: lower variance than uniform sampling.
    assert results["ras"] < 0.75 * results["uniform"], results


def test_weights_are_one_over_n_p_and_weighted_mean_uses_them():
    groups = torch.arange(50) % 5
    sampler = ImportanceSampler(50, groups, 7, seed=3)
    idx, z, y = _batches(groups, 1, 20, seed=0, classes=5)[0]
    sampler.update(idx, z, y)
    sampler.set_epoch(2)
    batch = torch.tensor(next(iter(sampler)))
    w = sampler.weights(batch)
    assert w.dtype == torch.float32
    torch.testing.assert_close(w.double(), 1 / (50 * sampler.epoch_probabilities[batch]), rtol=1e-7, atol=0)
    losses = torch.rand(7)
    assert float(weighted_mean(losses, w)) == pytest.approx(float((losses * w).sum() / 7), rel=1e-6)


def test_draws_are_the_weighted_sample_of_the_epoch():
    groups = torch.arange(1000) % 10
    sampler = ImportanceSampler(1000, groups, 32, seed=9)
    for idx, z, y in _batches(groups, 3, 64, seed=1, classes=10):
        sampler.update(idx, z, y)
    sampler.set_epoch(4)
    got = torch.tensor([i for b in sampler for i in b])
    want, _ = ops.weighted_sample(sampler.epoch_probabilities, len(sampler) * 32, 9, 4)
    assert len(sampler) == math.ceil(1000 / 32) and torch.equal(got, want)
    # a dataloader yields the same batches
    sampler.set_epoch(4)
    loader = DataLoader(IndexedDataset(TensorDataset(torch.arange(1000) * 10)), batch_sampler=sampler)
    assert torch.equal(torch.cat([idx for _, idx in loader]), want)


def _train(sampler, groups, epochs, stop=None):
    """Epochs of draws and updates; stops (returning) after `stop` = (epoch, batch) batches."""
    seen = []
    g = torch.Generator().manual_seed(11)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for b, batch in enumerate(sampler):
            idx = torch.tensor(batch)
            seen.append(batch)
            sampler.update(idx, torch.randn(len(batch), 3, generator=g) * (1 + groups[idx, None]), groups[idx] % 3)
            if stop == (epoch, b):
                return seen
    return seen


@pytest.mark.parametrize("stop", [(0, 0), (1, 6), (1, 14)])  # 15 batches an epoch: (1, 14) ends epoch 1
@pytest.mark.parametrize("within", ["uniform", "score"])
def test_resume_gives_identical_batches(within, stop):
    groups = torch.arange(120) % 4
    make = lambda: ImportanceSampler(120, groups, 8, within=within, seed=2)  # noqa: E731
    whole = make()
    expected = _train(whole, groups, 3)
    first = make()
    head = _train(first, groups, 3, stop=stop)
    assert first.state_dict()["position"] == stop[1] + 1  # batches yielded in the stopped epoch
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    resumed = make()
    resumed.load_state_dict(torch.load(buf))
    # the rest of the stopped epoch (set_epoch again keeps its draws and position), then the next
    g = torch.Generator().manual_seed(11)
    for _ in range(len(head)):  # the same random logits as the uninterrupted run
        torch.randn(8, 3, generator=g)
    tail = []
    for epoch in range(stop[0], 3):
        resumed.set_epoch(epoch)
        for batch in resumed:
            idx = torch.tensor(batch)
            tail.append(batch)
            resumed.update(idx, torch.randn(8, 3, generator=g) * (1 + groups[idx, None]), groups[idx] % 3)
    assert head + tail == expected
    assert torch.equal(resumed.probabilities(), whole.probabilities())
    with pytest.raises(ValueError, match="state was saved by"):
        ImportanceSampler(120, groups, 9).load_state_dict(first.state_dict())


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(num_samples=0), ValueError, r"num_samples must be an int >= 1, got 0"),
    (dict(groups=[0, 1]), TypeError, r"groups must be a torch.Tensor"),
    (dict(groups=torch.zeros(10)), TypeError, r"groups must hold integer ids, got torch.float32"),
    (dict(groups=torch.zeros(9, dtype=torch.int64)), ValueError, r"groups must have shape \[10\]"),
    (dict(batch_size=0), ValueError, r"batch_size must be an int >= 1, got 0"),
    (dict(smoothing=1.5), ValueError, r"smoothing must be a number in \[0, 1\], got 1.5"),
    (dict(smoothing=float("nan")), ValueError, r"smoothing must be a number"),
    (dict(smoothing="0.1"), TypeError, r"smoothing must be a number, got str"),
    (dict(within="top"), ValueError, r"within must be one of \('uniform', 'score'\), got 'top'"),
    (dict(score_decay=1.0), ValueError, r"score_decay must be a number in \[0, 1\), got 1.0"),
    (dict(seed=1.5), TypeError, r"seed must be an int, got float 1.5"),
    (dict(batches_per_epoch=0), ValueError, r"batches_per_epoch must be an int >= 1, got 0"),
    (dict(rank=3, num_replicas=2), ValueError, r"rank must be an int in \[0, 2\), got 3"),
])
def test_rejects_bad_arguments(kwargs, error, match):
    args = dict(num_samples=10, groups=torch.arange(10) % 2, batch_size=4)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ImportanceSampler(**args)


def test_update_and_weights_reject_bad_inputs():
    sampler = ImportanceSampler(10, torch.arange(10) % 2, 4)
    z, y = torch.randn(3, 2), torch.tensor([0, 1, 0])
    with pytest.raises(ValueError, match=r"logits must have one row per index \(2\), got 3"):
        sampler.update(torch.tensor([0, 1]), z, y)
    with pytest.raises(ValueError, match=r"indices must be in \[0, 10\)"):
        sampler.update(torch.tensor([0, 1, 10]), z, y)
    with pytest.raises(ValueError, match=r"indices must be a 1-D int64/int32 tensor"):
        sampler.update(torch.tensor([0.0, 1.0, 2.0]), z, y)
    with pytest.raises(RuntimeError, match=r"gradnorm_scores: labels must be in \[0, 2\), got 5"):
        sampler.update(torch.tensor([0, 1, 2]), z, torch.tensor([0, 5, 1]))
    with pytest.raises(ValueError, match=r"indices must be in \[0, 10\), got -1"):
        sampler.weights(torch.tensor([-1, 2]))
    with pytest.raises(TypeError, match=r"indices must be a torch.Tensor"):
        sampler.weights([1, 2])


def test_repeated_indices_carry_their_last_score():
    # Draws are with replacement: a batch may hold an index twice. Every copy carries the last
    # occurrence's value, so the table write gives one result in any order (CUDA's index_put
    # picks no particular copy), without a host sync.
    from dsampling_ext.scores import _last_occurrence

    idx = torch.tensor([3, 1, 3, 2, 1, 3, 7])
    ordered, last = _last_occurrence(idx)
    values = torch.tensor([10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0])[last]
    assert ordered.tolist() == [1, 1, 2, 3, 3, 3, 7]
    assert values.tolist() == [14.0, 14.0, 13.0, 15.0, 15.0, 15.0, 16.0]
    sampler = ImportanceSampler(10, torch.arange(10) % 2, 4, score_decay=0.5)
    z = torch.zeros(3, 2)
    z[2, 0] = 3.0  # the last copy of index 4 has another score than the first
    raw = sampler.update(torch.tensor([4, 5, 4]), z, torch.tensor([1, 1, 1]))
    assert float(sampler.scores[4]) == pytest.approx(float(raw[2])) and bool(sampler.scored[4])


@pytest.mark.filterwarnings("ignore:'set_vital' is deprecated")  # torchdata 0.11 calls it on torch 2.13
@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.worker_processes)])
def test_stateful_dataloader_resumes_mid_epoch(workers):
    # torchdata's StatefulDataLoader snapshots the batch sampler's state per batch, so a resumed
    # loader gives the batches the uninterrupted one would, even with workers prefetching.
    groups = torch.arange(103) % 4
    data = IndexedDataset(TensorDataset(torch.randn(103, 2), groups))

    def loader():
        sampler = ImportanceSampler(103, groups, 10, seed=6)
        sampler.update(torch.arange(103), torch.randn(103, 4, generator=torch.Generator().manual_seed(0)), groups)
        sampler.set_epoch(1)
        return StatefulDataLoader(data, batch_sampler=sampler, num_workers=workers)

    whole, resumed = stateful_resume(loader)
    assert len(whole) == 11
    assert resumed == whole


def test_each_rank_takes_its_slice_of_every_global_draw():
    # num_replicas=3 without a process group: step b's global draw is indices [b*3*B, (b+1)*3*B) of
    # one weighted_sample call (uniform before any score), rank r its r-th B-slice.
    n, batch, world = 50, 4, 3
    groups = torch.arange(n) % 2
    samplers = [ImportanceSampler(n, groups, batch, seed=9, num_replicas=world, rank=r) for r in range(world)]
    for s in samplers:
        s.set_epoch(2)
    p = samplers[0].epoch_probabilities
    assert torch.allclose(p, torch.full((n,), 1.0 / n, dtype=torch.float64), rtol=1e-15, atol=0)
    assert all(torch.equal(s.epoch_probabilities, p) for s in samplers)
    steps = len(samplers[0])
    draw, _ = ops.weighted_sample(p, steps * batch * world, 9, 2)
    for r, s in enumerate(samplers):
        got = list(s)
        assert len(got) == steps
        for b, indices in enumerate(got):
            start = b * batch * world + r * batch
            assert indices == draw[start : start + batch].tolist()


def resumable_run(epochs=4, n=120, batch=10):
    """A model trained with the sampler through torchdata's StatefulDataLoader, as the resume
    recipe of docs/integrations.md does; returns its objects."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] + 0.3 * x[:, 1] > 0).long()
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    sampler = ImportanceSampler(n, y, batch, seed=1)
    loader = StatefulDataLoader(IndexedDataset(TensorDataset(x, y)), batch_sampler=sampler)
    return model, optimizer, sampler, loader


def train(objects, start, epochs, stop=None):
    """Epochs from ``start``: set_epoch, then the batches; returns (steps, checkpoint after the
    step ``stop`` = (epoch, batch))."""
    model, optimizer, sampler, loader = objects
    steps = []
    for epoch in range(start, epochs):
        sampler.set_epoch(epoch)
        for i, (xb, yb, idx) in enumerate(loader):
            logits = model(xb)
            sampler.update(idx, logits.detach(), yb)
            w = sampler.weights(idx)
            optimizer.zero_grad()
            weighted_mean(torch.nn.functional.cross_entropy(logits, yb, reduction="none"), w).backward()
            optimizer.step()
            steps.append((epoch, idx.tolist(), w.tolist()))
            if stop == (epoch, i + 1):
                done = i + 1 == len(loader)
                return steps, dict(epoch=epoch + done, model=model.state_dict(), optimizer=optimizer.state_dict(),
                                   loader=loader.state_dict())
    return steps, None


@pytest.mark.filterwarnings("ignore:'set_vital' is deprecated")
@pytest.mark.parametrize("stop", [(1, 12), (2, 5)], ids=["boundary", "mid-epoch"])
def test_stateful_loader_resume_is_the_uninterrupted_run(stop):
    # The loader loads its state at iter(), after the loop's set_epoch for the next epoch: a
    # state saved at an epoch's end must not replay that epoch.
    whole, _ = train(resumable_run(), 0, 4)
    first, checkpoint = train(resumable_run(), 0, 4, stop=stop)
    objects = resumable_run()
    objects[0].load_state_dict(checkpoint["model"])
    objects[1].load_state_dict(checkpoint["optimizer"])
    objects[3].load_state_dict(checkpoint["loader"])
    rest, _ = train(objects, checkpoint["epoch"], 4)
    assert first + rest == whole


def test_an_epoch_whose_batches_were_sharded_again_is_refused():
    # num_replicas=2: an epoch yielded to its end with update() seeing fewer than 3/4 of its batches
    # (halfway between 1/2 and all: a loader that kept every other batch) raises at the next
    # set_epoch; every batch updated, or an epoch stopped early, does not.
    groups = torch.arange(80) % 4
    logits = torch.zeros(10, 4)

    def epoch(sampler, every):
        for i, batch in enumerate(sampler):
            if i % every == 0:
                sampler.update(torch.tensor(batch), logits, groups[batch])

    sampler = ImportanceSampler(80, groups, 10, seed=3, num_replicas=2, rank=1)
    sampler.set_epoch(0)
    epoch(sampler, 1)
    sampler.set_epoch(1)  # all 4 batches updated
    next(iter(sampler))
    sampler.set_epoch(2)  # stopped after one batch: not checked
    epoch(sampler, 2)
    with pytest.raises(RuntimeError, match=r"epoch 2 yielded 4 batches on this rank but update\(\) saw only 2"):
        sampler.set_epoch(3)
    single = ImportanceSampler(80, groups, 10, seed=3)
    single.set_epoch(0)
    epoch(single, 2)
    single.set_epoch(1)  # one replica: no loader shards it again


def test_an_epoch_taken_by_its_length_then_iterated_without_set_epoch_warns_and_restarts():
    # A loader that knows len() (Lightning's) takes exactly the epoch's batches and never exhausts
    # the iterator. Without set_epoch the next iteration would find the epoch done and yield
    # nothing: it warns and yields the epoch's batches again. With set_epoch it is quiet.
    sampler = ImportanceSampler(64, torch.arange(64) % 4, 8, seed=1)
    sampler.set_epoch(0)
    first = list(itertools.islice(iter(sampler), len(sampler)))
    with pytest.warns(RuntimeWarning, match="epoch 0 is iterated again after all its batches: call sampler.set_epoch"):
        again = list(itertools.islice(iter(sampler), len(sampler)))
    assert again == first and len(first) == 8
    sampler.set_epoch(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(list(itertools.islice(iter(sampler), len(sampler)))) == 8
