"""Unbiased pruning under Lightning: the lines a LightningModule and Trainer add are marked (1)-(4).

TableSamplerCallback keeps the sampler that Lightning's DDP would wrap (and shard again), gives
Lightning each epoch's length for its batch count and accumulation, and keeps the table in the
checkpoints (with the StatefulDataLoader's place, a mid-epoch checkpoint resumes the uninterrupted
run too); ProgressScheduler is ProgressLR as an LRScheduler, so the cosine ends with the last epoch
however many steps the pruned epochs take.

    python python/lightning_example.py --epochs 4
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch import nn
from torchdata.stateful_dataloader import StatefulDataLoader
from toy_data import accuracy, example_data, example_parser, small_cnn

import dsampling_ext
from dsampling_ext.integrations.lightning import TableSamplerCallback


class Classifier(pl.LightningModule):
    def __init__(self, sampling: TableSamplerCallback, train_data, test_data, args):
        super().__init__()
        self.net, self.sampling, self.args = small_cnn(), sampling, args
        self.train_data, self.test_data = train_data, test_data

    def train_dataloader(self):
        # (2) a StatefulDataLoader, so that a mid-epoch checkpoint resumes the epoch at its place
        return StatefulDataLoader(self.train_data, batch_size=self.args.batch, sampler=self.sampling.sampler)

    def training_step(self, batch, batch_idx):
        x, y, idx = batch  # PrototypeImages yields (image, label, index)
        losses = nn.functional.cross_entropy(self.net(x), y, reduction="none")
        return self.sampling.loss(idx, losses)  # (3) recorded, and weighted

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)
        schedule = dsampling_ext.ProgressScheduler(optimizer, self.args.epochs, self.sampling.progress)  # (4)
        return dict(optimizer=optimizer, lr_scheduler=dict(scheduler=schedule, interval="step"))

    def on_train_epoch_start(self):
        self.trained = 0

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.trained += len(batch[1])

    def on_train_epoch_end(self):
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        print(f"  {self.current_epoch:>5} {self.trained:>8} {self.trainer.num_training_batches:>6} {lr:>8.4f} "
              f"{accuracy(self.net, self.test_data):>8.3f}")


def main(argv=None) -> None:
    args = example_parser(__doc__).parse_args(argv)
    train_data, test_data = example_data(args)
    torch.manual_seed(args.seed)
    table = dsampling_ext.ScoreTable(len(train_data))  # (1) the table, its sampler and the callback
    sampling = TableSamplerCallback(dsampling_ext.PruningSampler(table, args.epochs, seed=args.seed))
    trainer = pl.Trainer(max_epochs=args.epochs, accelerator="cpu", devices=1, callbacks=[sampling], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    print(f"  {'epoch':>5} {'trained':>8} {'steps':>6} {'last lr':>8} {'test acc':>8}")
    trainer.fit(Classifier(sampling, train_data, test_data, args))


if __name__ == "__main__":
    main()
