"""dsampling_ext.integrations.transformers on two gloo processes with a tiny BERT built from a
config: the ranks together train exactly the sampler's selection each epoch (the index column
kept, each epoch's length counted when it starts), gradient accumulation steps on each epoch's
last batch, and the progress schedule ends at the last step."""

import os

import pytest

from frameworks import free_port, gather, skip_in_cuda_venv

skip_in_cuda_venv()

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import Dataset
from transformers import BertConfig, BertForSequenceClassification, TrainerCallback, TrainingArguments

from dsampling_ext import IndexedDataset, PruningSampler, ScoreTable
from dsampling_ext.integrations.transformers import TableSamplerTrainer

N, BATCH, EPOCHS, ACCUMULATE, LENGTH = 160, 8, 4, 3, 6


class Tokens(Dataset):
    """Sequences of token ids labelled by whether token 5 occurs in them."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(4, 30, (N, LENGTH), generator=g)

    def __len__(self):
        return N

    def __getitem__(self, i):
        return dict(input_ids=self.ids[i], attention_mask=torch.ones(LENGTH, dtype=torch.int64),
                    labels=int((self.ids[i] == 5).any()))


class Watch(TrainerCallback):
    """Each epoch's selection, at its start; the learning rate after each optimizer step."""

    def __init__(self, sampler):
        self.sampler, self.selection, self.lrs = sampler, {}, []

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.epoch = int(state.epoch)  # epochs done

    def on_step_begin(self, args, state, control, **kwargs):
        self.selection.setdefault(self.epoch, self.sampler.indices.tolist())

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        self.lrs.append(optimizer.param_groups[0]["lr"])


def train(output_dir, resume=None, **overrides):
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=32,
                                                     max_position_embeddings=LENGTH, num_labels=2))
    sampler = PruningSampler(ScoreTable(N), EPOCHS, seed=3)
    settings = dict(num_train_epochs=EPOCHS, per_device_train_batch_size=BATCH, gradient_accumulation_steps=ACCUMULATE,
                    learning_rate=1e-3, lr_scheduler_type="cosine", save_strategy="no")
    args = TrainingArguments(output_dir=output_dir, use_cpu=True, report_to=[], logging_strategy="no", disable_tqdm=True,
                             **{**settings, **overrides})
    trained = {}
    watch = Watch(sampler)

    class Recording(TableSamplerTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            trained.setdefault(watch.epoch, []).extend(inputs["index"].tolist())
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    trainer = Recording(model=model, args=args, train_dataset=IndexedDataset(Tokens()), sampler=sampler,
                        callbacks=[watch])
    trainer.train(resume_from_checkpoint=resume)
    return trainer, watch, trained


def ceil_div(a, b):
    return -(-a // b)



def worker(rank, port, output_dir):
    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    trainer, watch, trained = train(output_dir, ddp_backend="gloo")
    steps = 0
    for epoch in range(EPOCHS):
        selection = watch.selection[epoch]
        ranks = gather(trained[epoch])
        assert sorted(set(ranks[0]) | set(ranks[1])) == selection  # the whole selection, sharded once
        steps += ceil_div(ceil_div(len(selection), 2 * BATCH), ACCUMULATE)  # accelerate's batches per rank
    assert [len(watch.selection[e]) < N for e in range(EPOCHS)] == [False, True, True, False]
    assert trainer.state.global_step == steps
    assert watch.lrs[-1] == pytest.approx(0.0, abs=1e-12)  # the cosine ends at the last step
    weights = gather([p.detach().clone() for p in trainer.model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights))
    dist.barrier()



def test_two_gloo_ranks_train_the_whole_selection_with_live_epoch_lengths(tmp_path):
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)


@pytest.mark.parametrize("overrides, match", [
    (dict(max_steps=10), "args.max_steps must be -1"),
    (dict(num_train_epochs=3), r"args.num_train_epochs \(3\) must be the sampler's epochs \(4\)"),
    (dict(lr_scheduler_type="polynomial"), "args.lr_scheduler_type must be one of"),
])
def test_settings_that_would_skew_the_epochs_are_refused(tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        train(str(tmp_path), **overrides)


def test_resume_from_a_checkpoint_mid_epoch_or_at_an_epochs_end_is_the_uninterrupted_run(tmp_path):
    """One process, a checkpoint every 7 optimizer steps: epoch 0's 20 batches of 8 are 7 steps of
    3 batches (the last of 2), so checkpoint-7 is at an epoch's end and checkpoint-14 within a
    pruned epoch."""
    whole, watch, trained = train(str(tmp_path), save_strategy="steps", save_steps=7)
    weights = [p.detach().clone() for p in whole.model.parameters()]
    updates = [ceil_div(ceil_div(len(watch.selection[e]), BATCH), ACCUMULATE) for e in range(EPOCHS)]
    assert updates[0] == 7 and 7 + updates[1] < 14 < 7 + updates[1] + updates[2]
    for step in (7, 14):
        trainer, resumed, _ = train(str(tmp_path / f"resumed-{step}"), resume=str(tmp_path / f"checkpoint-{step}"))
        assert resumed.lrs == watch.lrs[step:]
        assert all(torch.equal(a, b) for a, b in zip(trainer.model.parameters(), weights))
