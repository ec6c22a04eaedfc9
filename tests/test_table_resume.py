"""The resume recipe of docs/integrations.md for a plain loop: a ScoreTable and a StatefulDataLoader
over a PruningSampler, saved anywhere (mid-epoch, at an epoch boundary) and reloaded into fresh
objects, give the uninterrupted run's steps, len(loader) and weights, whatever is called between
loading and iterating."""

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset
from torchdata.stateful_dataloader import StatefulDataLoader

from dsampling_ext import IndexedDataset, PruningSampler, ScoreTable, weighted_mean

EPOCHS, N, BATCH = 5, 300, 32


def fresh():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 6, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    torch.manual_seed(0)
    model = nn.Linear(6, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    table = ScoreTable(N)
    sampler = PruningSampler(table, EPOCHS, anneal=0.2, seed=7)
    loader = StatefulDataLoader(IndexedDataset(TensorDataset(x, y)), batch_size=BATCH, sampler=sampler)
    return model, optimizer, table, sampler, loader


def run(objects, start=0, stop=None):
    """The recipe's loop from epoch ``start``; returns (steps, checkpoint): each step as (epoch,
    (len(loader), len(sampler)) read before iterating, indices, weights), and the checkpoint taken
    after ``stop`` = (epoch, batches) (batches = len(loader): at the epoch's end), or None."""
    model, optimizer, table, sampler, loader = objects
    steps = []
    for epoch in range(start, EPOCHS):
        sampler.set_epoch(epoch)
        length = (len(loader), len(sampler))
        for i, (xb, yb, idx) in enumerate(loader):
            losses = nn.functional.cross_entropy(model(xb), yb, reduction="none")
            table.record(idx, losses)
            w = sampler.weights(idx)
            optimizer.zero_grad()
            weighted_mean(losses, w).backward()
            optimizer.step()
            steps.append((epoch, length, idx.tolist(), w.tolist()))
            if stop == (epoch, i + 1):
                done = i + 1 == length[0]
                return steps, dict(epoch=epoch + done, model=model.state_dict(), optimizer=optimizer.state_dict(),
                                   table=table.state_dict(), loader=loader.state_dict())
    return steps, None


def resume(checkpoint):
    objects = fresh()
    model, optimizer, table, sampler, loader = objects
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    table.load_state_dict(checkpoint["table"])
    loader.load_state_dict(checkpoint["loader"])
    return objects


def whole_run():
    objects = fresh()
    steps, _ = run(objects)
    return steps, objects[0]


@pytest.mark.parametrize("where", ["boundary", "mid-epoch"])
def test_resumed_run_is_the_uninterrupted_one(where):
    whole, whole_model = whole_run()
    lengths = {e: length for e, length, _, _ in whole}
    stop = (2, lengths[2][0]) if where == "boundary" else (2, 3)
    first, checkpoint = run(fresh(), stop=stop)
    objects = resume(checkpoint)
    rest, _ = run(objects, start=checkpoint["epoch"])
    assert [s[:2] for s in first + rest] == [s[:2] for s in whole]  # every epoch's lengths, the resumed one's too
    assert first + rest == whole
    assert objects[3].epoch == EPOCHS - 1
    for a, b in zip(objects[0].parameters(), whole_model.parameters()):
        assert torch.equal(a, b)


def test_a_boundary_resume_trains_the_next_epochs_selection():
    """Saved after epoch 2 ran to its end: set_epoch(3), then iterating, serves epoch 3 (the
    loader loads the sampler's epoch-2 state only at iter(), after set_epoch(3))."""
    whole, _ = whole_run()
    lengths = {e: length for e, length, _, _ in whole}
    _, checkpoint = run(fresh(), stop=(2, lengths[2][0]))
    assert checkpoint["epoch"] == 3
    _, _, _, sampler, loader = resume(checkpoint)
    sampler.set_epoch(3)
    served = sorted(i for batch in loader for i in batch[2].tolist())
    assert sampler.epoch == 3
    assert served == sorted(i for e, _, idx, _ in whole if e == 3 for i in idx)


def test_a_mid_epoch_resume_knows_the_saved_epochs_length_before_iterating():
    whole, _ = whole_run()
    lengths = {e: length for e, length, _, _ in whole}
    _, checkpoint = run(fresh(), stop=(2, 3))
    _, _, _, sampler, loader = resume(checkpoint)
    sampler.set_epoch(2)
    # the saved selection, not one made from the epoch's own records (219 samples instead of 224)
    assert (len(loader), len(sampler)) == lengths[2] == (7, 224)
