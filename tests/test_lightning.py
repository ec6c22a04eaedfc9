"""dsampling_ext.integrations.lightning: on two gloo processes (Lightning's DDP with its default
use_distributed_sampler=True) the ranks together train exactly the sampler's selection each epoch,
the batch count and accumulation follow each epoch's length, the progress schedule ends at the last
step, and a run resumed from a checkpoint (mid-epoch with the StatefulDataLoader, or at an epoch
boundary; on one process and on two) is the uninterrupted run."""

import functools
import os
import warnings

import pytest

from frameworks import free_port, gather, skip_in_cuda_venv

skip_in_cuda_venv()

import lightning.pytorch as pl
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset
from torchdata.stateful_dataloader import StatefulDataLoader

from dsampling_ext import (ImportanceSampler, IndexedDataset, ProgressScheduler, PruningSampler, ScoreTable, ops,
                           weighted_mean)
from dsampling_ext.integrations.lightning import TableSamplerCallback

N, BATCH, EPOCHS, ACCUMULATE = 400, 20, 4, 3


class Linear(pl.LightningModule):
    def __init__(self, sampling, loader=StatefulDataLoader):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Linear(6, 2)
        self.sampling, self.loader = sampling, loader
        self.selection, self.trained, self.batches, self.lrs = {}, {}, {}, []  # per epoch; lr after each batch

    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(N, 6, generator=g)
        data = IndexedDataset(TensorDataset(x, (x[:, 0] + 0.5 * x[:, 1] > 0).long()))
        return self.loader(data, batch_size=BATCH, sampler=self.sampling.sampler)

    def on_train_batch_start(self, batch, batch_idx):
        # at the first batch, not on_train_epoch_start: Lightning skips that hook in an epoch resumed mid-way
        if self.current_epoch not in self.selection:
            self.selection[self.current_epoch] = self.sampling.sampler.indices.tolist()
            self.batches[self.current_epoch] = self.trainer.num_training_batches

    def training_step(self, batch, batch_idx):
        x, y, idx = batch
        self.trained.setdefault(self.current_epoch, []).extend(idx.tolist())
        losses = nn.functional.cross_entropy(self.net(x), y, reduction="none")
        return self.sampling.loss(idx, losses)

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.lrs.append(self.trainer.optimizers[0].param_groups[0]["lr"])

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        scheduler = ProgressScheduler(optimizer, EPOCHS, self.sampling.progress)
        return dict(optimizer=optimizer, lr_scheduler=dict(scheduler=scheduler, interval="step"))


def fit(max_epochs, devices=1, ckpt_path=None, accumulate=1, checkpoints=None, loader=StatefulDataLoader,
        module_class=Linear):
    """A fit of the module; ``checkpoints``: a ModelCheckpoint to save with."""
    sampling = TableSamplerCallback(PruningSampler(ScoreTable(N), EPOCHS, seed=3))
    module = module_class(sampling, loader)
    trainer = pl.Trainer(max_epochs=max_epochs, accelerator="cpu", devices=devices,
                         strategy="ddp" if devices > 1 else "auto", callbacks=[sampling] + ([checkpoints] if checkpoints else []),
                         logger=False, enable_checkpointing=checkpoints is not None, enable_progress_bar=False,
                         enable_model_summary=False, accumulate_grad_batches=accumulate)
    trainer.fit(module, ckpt_path=ckpt_path)
    return trainer, module


def ceil_div(a, b):
    return -(-a // b)



def worker(rank, port):
    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), NODE_RANK="0", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    trainer, module = fit(EPOCHS, devices=2, accumulate=ACCUMULATE)
    assert (module.sampling.sampler.num_replicas, module.sampling.sampler.rank) == (2, rank)
    steps = 0
    for epoch in range(EPOCHS):
        selection = module.selection[epoch]
        ranks = gather(module.trained[epoch])
        assert sorted(set(ranks[0]) | set(ranks[1])) == selection  # the whole selection, sharded once
        assert module.batches[epoch] == ceil_div(ceil_div(len(selection), 2), BATCH)  # this epoch's, not the first's
        assert gather(selection)[0] == selection
        steps += ceil_div(module.batches[epoch], ACCUMULATE)  # the epoch's last batch steps, whatever the remainder
    assert [len(module.selection[e]) < N for e in range(EPOCHS)] == [False, True, True, False]
    assert trainer.global_step == steps
    assert module.lrs[-1] == pytest.approx(0.0, abs=1e-12) and module.lrs[0] > 0.09  # the cosine ends at the last step
    weights = gather([p.detach().clone() for p in module.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights))
    dist.barrier()



def test_two_gloo_ranks_train_the_whole_selection_with_live_epoch_lengths():
    mp.spawn(worker, args=(free_port(),), nprocs=2, join=True)


@pytest.mark.parametrize("loader", [StatefulDataLoader, DataLoader])
def test_a_checkpoint_at_an_epoch_boundary_resumes_the_uninterrupted_run(tmp_path, loader):
    _, whole = fit(EPOCHS, loader=loader)
    first_trainer, first = fit(2, loader=loader)
    first_trainer.save_checkpoint(tmp_path / "epoch2.ckpt")
    _, resumed = fit(EPOCHS, ckpt_path=tmp_path / "epoch2.ckpt", loader=loader)
    assert [resumed.selection[e] for e in (2, 3)] == [whole.selection[e] for e in (2, 3)]
    assert [resumed.trained[e] for e in (2, 3)] == [whole.trained[e] for e in (2, 3)]
    assert first.lrs + resumed.lrs == whole.lrs
    for a, b in zip(resumed.parameters(), whole.parameters()):
        assert torch.equal(a, b)


# the uninterrupted run's epochs have 20, 15, 16 and 20 batches: steps 7, 35 and 42 are batch 7 of
# the first epoch, the last batch of the (pruned) second and batch 7 of the (pruned) third
# (with 2 workers prefetching, the loader's saved place is still the consumed batch's)
@pytest.mark.parametrize("step, workers", [(7, 0), (35, 0), (42, 0),
                                           pytest.param(42, 2, marks=pytest.mark.worker_processes)])
def test_a_mid_epoch_checkpoint_resumes_the_uninterrupted_run(tmp_path, step, workers):
    checkpoints = ModelCheckpoint(dirpath=tmp_path, filename="{step}", every_n_train_steps=step, save_top_k=-1)
    loader = functools.partial(StatefulDataLoader, num_workers=workers)
    _, whole = fit(EPOCHS, checkpoints=checkpoints, loader=loader)
    assert [whole.batches[e] for e in range(EPOCHS)] == [20, 15, 16, 20]
    _, resumed = fit(EPOCHS, ckpt_path=tmp_path / f"step={step}.ckpt", loader=loader)
    epoch, done = next((e, step - sum(whole.batches[f] for f in range(e))) for e in range(EPOCHS)
                       if step < sum(whole.batches[f] for f in range(e + 1)))
    assert resumed.batches == {e: whole.batches[e] for e in range(epoch, EPOCHS)}  # the resumed epoch's too
    assert resumed.selection == {e: whole.selection[e] for e in range(epoch, EPOCHS)}
    assert resumed.trained[epoch] == whole.trained[epoch][done * BATCH:]  # on after the saved batch
    assert {e: resumed.trained[e] for e in range(epoch + 1, EPOCHS)} == {e: whole.trained[e] for e in range(epoch + 1, EPOCHS)}
    assert resumed.lrs == whole.lrs[step:]
    for a, b in zip(resumed.parameters(), whole.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("resumed_with", [DataLoader, StatefulDataLoader])
def test_a_mid_epoch_checkpoint_of_a_plain_dataloader_is_refused(tmp_path, resumed_with):
    """Lightning saves no place in the epoch for a plain DataLoader: resumed, it would restart the
    epoch with its batch count at the saved batch."""
    checkpoints = ModelCheckpoint(dirpath=tmp_path, filename="{step}", every_n_train_steps=42)
    fit(3, checkpoints=checkpoints, loader=DataLoader)
    with pytest.raises(ValueError, match=r"train_dataloader must be a torchdata StatefulDataLoader to resume a "
                                         r"checkpoint saved within an epoch \(epoch 2, after batch 7\): the saved "
                                         r"run's train loader did not save its place"):
        fit(EPOCHS, ckpt_path=tmp_path / "step=42.ckpt", loader=resumed_with)


class OneCycle(Linear):
    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.1, self.trainer.estimated_stepping_batches)
        return dict(optimizer=optimizer, lr_scheduler=dict(scheduler=scheduler, interval="step"))


class EpochCosine(Linear):
    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        return dict(optimizer=optimizer, lr_scheduler=torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, EPOCHS))


# ProgressScheduler (Linear's) and an epoch-interval scheduler follow the epochs, whatever their lengths
@pytest.mark.parametrize("module_class, warned", [(OneCycle, True), (Linear, False), (EpochCosine, False)])
def test_a_step_scheduler_sized_in_steps_is_warned_about(module_class, warned):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(1, module_class=module_class)
    ours = [str(w.message) for w in caught if str(w.message).startswith("TableSamplerCallback")]
    assert len(ours) == warned
    if warned:
        assert ("OneCycleLR steps every batch" in ours[0] and "estimated_stepping_batches counts every epoch as long "
                "as the fit's first (20 batches)" in ours[0] and "dsampling_ext.ProgressScheduler" in ours[0])


def test_the_callback_refuses_a_table_of_another_size():
    sampling = TableSamplerCallback(PruningSampler(ScoreTable(N - 1), EPOCHS))
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", callbacks=[sampling], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(ValueError, match=f"the train dataset holds {N} samples but the sampler's ScoreTable {N - 1}"):
        trainer.fit(Linear(sampling))


def resume_worker(rank, port, path):
    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), NODE_RANK="0", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    checkpoints = ModelCheckpoint(dirpath=path, filename="{step}", every_n_train_steps=13, save_top_k=-1)
    _, whole = fit(EPOCHS, devices=2, checkpoints=checkpoints)
    assert whole.batches[0] < 13 < whole.batches[0] + whole.batches[1]  # within epoch 1
    _, resumed = fit(EPOCHS, devices=2, ckpt_path=os.path.join(path, "step=13.ckpt"))
    assert resumed.selection[2] == whole.selection[2]  # made from every rank's records of epoch 1
    assert resumed.trained[2] == whole.trained[2]
    for a, b in zip(resumed.parameters(), whole.parameters()):
        assert torch.equal(a, b)
    dist.barrier()


def test_a_mid_epoch_checkpoint_on_two_ranks_keeps_every_ranks_records(tmp_path):
    """Lightning saves rank 0's callback state: the table must hold the other ranks' records of the
    saved epoch too, or the next selection is made without them."""
    mp.spawn(resume_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)


class Importance(pl.LightningModule):
    """The docs' ImportanceSampler lines: the sampler as the loader's batch_sampler, its set_epoch
    in on_train_epoch_start."""

    def __init__(self, set_epoch=True):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Linear(6, 2)
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(N, 6, generator=g)
        self.y = (self.x[:, 0] + 0.5 * self.x[:, 1] > 0).long()
        self.sampler = ImportanceSampler(N, self.y, BATCH, seed=2)
        self.set_epoch, self.draws, self.trained = set_epoch, {}, {}

    def train_dataloader(self):
        return DataLoader(IndexedDataset(TensorDataset(self.x, self.y)), batch_sampler=self.sampler)

    def on_train_epoch_start(self):
        if self.set_epoch:
            self.sampler.set_epoch(self.current_epoch)
        total = len(self.sampler) * BATCH
        self.draws[self.current_epoch] = ops.weighted_sample(self.sampler.epoch_probabilities, total, 2,
                                                             self.sampler.epoch)[0].tolist()

    def training_step(self, batch, batch_idx):
        x, y, idx = batch
        self.trained.setdefault(self.current_epoch, []).extend(idx.tolist())
        logits = self.net(x)
        self.sampler.update(idx, logits.detach(), y)
        return weighted_mean(nn.functional.cross_entropy(logits, y, reduction="none"), self.sampler.weights(idx))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit_importance(module):
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module)
    return module


def test_an_importance_sampler_trains_each_epochs_own_draws():
    module = fit_importance(Importance())
    assert [module.trained[e] == module.draws[e] for e in range(3)] == [True] * 3  # epoch e's draws, all of them
    assert module.draws[0] != module.draws[1]


def test_an_importance_sampler_without_set_epoch_warns_instead_of_training_empty_epochs():
    # Lightning sets only a sampler's epoch: without the hook every epoch after the first found its
    # batches handed out already (Lightning stops at len() without exhausting the iterator).
    with pytest.warns(RuntimeWarning, match="epoch 0 is iterated again after all its batches"):
        module = fit_importance(Importance(set_epoch=False))
    assert [len(module.trained.get(e, [])) for e in range(3)] == [N] * 3
