"""dsampling_ext.integrations.accelerate on two gloo processes (accelerate's MULTI_CPU): every
epoch the ranks together train exactly the sampler's selection (an ImportanceSampler's: each rank
its own slice of every draw), and a loader prepared the plain way (sharded twice) is refused at the
next epoch instead of training half of it."""

import os

import pytest

from frameworks import free_port, gather, skip_in_cuda_venv

skip_in_cuda_venv()

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from accelerate import Accelerator, DataLoaderConfiguration
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dsampling_ext import ImportanceSampler, IndexedDataset, PruningSampler, ScoreTable, ops, weighted_mean
from dsampling_ext.integrations.accelerate import prepare

WORLD, N, BATCH, EPOCHS = 2, 400, 20, 4


def task():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 6, generator=g)
    return IndexedDataset(TensorDataset(x, (x[:, 0] + 0.5 * x[:, 1] > 0).long()))



def prepared(accelerator):
    """The docs' accelerate lines: (model, optimizer, table, sampler, loader), all prepared."""
    torch.manual_seed(0)
    model = nn.Linear(6, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    table = ScoreTable(N)
    sampler = PruningSampler(table, EPOCHS, seed=3)
    loader = prepare(accelerator, DataLoader(task(), batch_size=BATCH, sampler=sampler))
    model, optimizer = accelerator.prepare(model, optimizer)
    return model, optimizer, table, sampler, loader


def train_through_prepare(accelerator):
    model, optimizer, table, sampler, loader = prepared(accelerator)
    for epoch in range(EPOCHS):
        loader.set_epoch(epoch)
        selection = sampler.indices.tolist()
        assert len(loader) == -(-len(selection) // (BATCH * WORLD))  # accelerate's batches of the whole selection
        trained = []
        for xb, yb, idx in loader:
            losses = nn.functional.cross_entropy(model(xb), yb, reduction="none")
            table.record(idx, losses)
            accelerator.backward(weighted_mean(losses, sampler.weights(idx)))
            optimizer.step()
            optimizer.zero_grad()
            trained += idx.tolist()
        ranks = gather(trained)
        assert sorted(set(ranks[0]) | set(ranks[1])) == selection  # the whole selection, once sharded
        assert gather(selection)[0] == selection  # the same selection on every rank
        if epoch in (1, 2):
            assert len(selection) < N  # pruned
    weights = gather([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights))


def refuse_a_plain_prepare(accelerator):
    table = ScoreTable(N)
    sampler = PruningSampler(table, EPOCHS, seed=3)
    loader = accelerator.prepare(DataLoader(task(), batch_size=BATCH, sampler=sampler))  # sharded twice
    loader.set_epoch(0)
    for xb, yb, idx in loader:
        table.record(idx, torch.ones(len(idx)))
    with pytest.raises(RuntimeError, match=r"epoch 0 selected 400 indices but only 200 were recorded on the 2 ranks"):
        loader.set_epoch(1)


def train_importance_through_prepare(accelerator, rank):
    torch.manual_seed(0)
    model = nn.Linear(6, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    data = task()
    labels = data.dataset.tensors[1]
    sampler = ImportanceSampler(N, labels, BATCH, seed=5)  # num_replicas=2 from the process group
    assert (sampler.num_replicas, len(sampler)) == (WORLD, N // (BATCH * WORLD))
    loader = prepare(accelerator, DataLoader(data, batch_sampler=sampler))
    model, optimizer = accelerator.prepare(model, optimizer)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        assert len(loader) == N // (BATCH * WORLD)  # this rank's batches, not half of them
        draws = ops.weighted_sample(sampler.epoch_probabilities, N, 5, epoch)[0].view(-1, WORLD, BATCH)
        trained = []
        for xb, yb, idx in loader:
            logits = model(xb)
            sampler.update(idx, logits.detach(), yb)
            losses = nn.functional.cross_entropy(logits, yb, reduction="none")
            accelerator.backward(weighted_mean(losses, sampler.weights(idx)))
            optimizer.step()
            optimizer.zero_grad()
            trained.append(idx.tolist())
        assert trained == draws[:, rank].tolist()  # step s: this rank's slice of global draw s
    weights = gather([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights))


def refuse_a_plain_prepare_of_an_importance_sampler(accelerator):
    data = task()
    sampler = ImportanceSampler(N, data.dataset.tensors[1], BATCH, seed=5)
    loader = accelerator.prepare(DataLoader(data, batch_sampler=sampler))  # sharded twice
    sampler.set_epoch(0)
    model = nn.Linear(6, 2)
    for xb, yb, idx in loader:
        sampler.update(idx, model(xb).detach(), yb)
    with pytest.raises(RuntimeError, match=r"epoch 0 yielded 10 batches on this rank but update\(\) saw only 5"):
        sampler.set_epoch(1)


def worker(rank, port):
    os.environ.update(WORLD_SIZE=str(WORLD), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    accelerator = Accelerator(cpu=True)
    assert accelerator.num_processes == WORLD
    try:
        train_through_prepare(accelerator)
        refuse_a_plain_prepare(accelerator)
        train_importance_through_prepare(accelerator, rank)
        refuse_a_plain_prepare_of_an_importance_sampler(accelerator)
        dist.barrier()
    finally:
        dist.destroy_process_group()



def test_two_gloo_ranks_train_the_whole_selection_once():
    mp.spawn(worker, args=(free_port(),), nprocs=WORLD, join=True)


def test_prepare_refuses_a_table_of_another_size():
    loader = DataLoader(task(), batch_size=BATCH, sampler=PruningSampler(ScoreTable(300), EPOCHS))
    with pytest.raises(ValueError, match="loader's dataset holds 400 samples but the sampler's ScoreTable 300"):
        prepare(Accelerator(cpu=True), loader)
    with pytest.raises(TypeError, match="loader must be a torch DataLoader whose sampler is a dsampling_ext sampler"):
        prepare(Accelerator(cpu=True), DataLoader(task(), batch_size=BATCH))


def accelerate_run(checkpoint_dir, stop=None, resume=None):
    """The docs' accelerate recipe in one process: returns each step's (epoch, len(loader),
    indices) and the final weights; ``stop`` = (epoch, batches) saves the state there and
    returns, ``resume`` = the epoch saved in goes on from that state."""
    accelerator = Accelerator(cpu=True, dataloader_config=DataLoaderConfiguration(use_stateful_dataloader=True))
    model, optimizer, table, sampler, loader = prepared(accelerator)
    accelerator.register_for_checkpointing(table)
    if resume is not None:
        accelerator.load_state(checkpoint_dir)
    steps = []
    for epoch in range(resume or 0, EPOCHS):
        loader.set_epoch(epoch)
        length = len(loader)
        for i, (xb, yb, idx) in enumerate(loader):
            losses = nn.functional.cross_entropy(model(xb), yb, reduction="none")
            table.record(idx, losses)
            accelerator.backward(weighted_mean(losses, sampler.weights(idx)))
            optimizer.step()
            optimizer.zero_grad()
            steps.append((epoch, length, idx.tolist()))
            if stop == (epoch, i + 1):
                accelerator.save_state(checkpoint_dir)
                return steps, None
    return steps, [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("stop", [(1, 3), (2, 4)], ids=["mid-epoch", "mid-epoch-after-pruning"])
def test_a_resumed_accelerate_run_is_the_uninterrupted_one(tmp_path, stop):
    whole, weights = accelerate_run(tmp_path / "unused")
    first, _ = accelerate_run(tmp_path / "state", stop=stop)
    rest, resumed_weights = accelerate_run(tmp_path / "state", resume=stop[0])
    assert first + rest == whole
    assert all(torch.equal(a, b) for a, b in zip(resumed_weights, weights))
