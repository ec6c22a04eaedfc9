"""Lightning: a callback that runs a table sampler inside ``Trainer.fit`` (with
:class:`dsampling_ext.ProgressScheduler` for an LR schedule that ends with the last epoch).

What plain Lightning gets wrong with a sampler whose epochs change length: under DDP it wraps the
sampler in a ``DistributedSamplerWrapper`` (``use_distributed_sampler=True``), which shards the
sampler's shard again and freezes the epoch's length at the first epoch's; its batch count
(``num_training_batches``), and with it the last step of a gradient accumulation, stays the
first epoch's. :class:`TableSamplerCallback` keeps the sampler (it shards itself), gives it the
trainer's world size and rank, and sets the batch count from the sampler each epoch, also in an
epoch that Lightning resumes mid-way (it skips ``on_train_epoch_start`` there).
"""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from ..schedules import ProgressScheduler
from ..scores import TableSampler, weighted_mean

__all__ = ["TableSamplerCallback"]


def _stateful(loader) -> bool:
    """Whether Lightning saves and restores the loader's position (torchdata's StatefulDataLoader)."""
    return callable(getattr(loader, "state_dict", None)) and callable(getattr(loader, "load_state_dict", None))


class TableSamplerCallback(pl.Callback):
    """Run a :class:`~dsampling_ext.TableSampler` (e.g. a PruningSampler) under ``Trainer.fit``.

    Build the train loader as torchdata's ``StatefulDataLoader`` on ``callback.sampler`` over an
    :class:`~dsampling_ext.IndexedDataset`, pass the callback to the Trainer, and return
    ``callback.loss(indices, losses)`` from ``training_step``: it records the per-sample losses
    in the table and returns their weighted mean. ``callback.progress`` drives a
    :class:`~dsampling_ext.ProgressScheduler` (``"interval": "step"``); another scheduler that
    steps every batch is warned about, since ``trainer.estimated_stepping_batches`` counts every
    epoch as long as the fit's first.

    The table is the callback's state and Lightning saves a ``StatefulDataLoader``'s place in
    the epoch, so ``trainer.fit(module, ckpt_path=path)`` resumes the uninterrupted run from a
    checkpoint taken anywhere: mid-epoch (e.g. ``ModelCheckpoint(every_n_train_steps=...)``) or
    at an epoch's end. With a plain ``DataLoader`` only checkpoints at an epoch's end resume it;
    resuming a mid-epoch one is a ValueError (Lightning would restart the epoch).

    Args:
        sampler: the TableSampler of the train loader.
    """

    def __init__(self, sampler: TableSampler):
        if not isinstance(sampler, TableSampler):
            raise TypeError(f"sampler must be a dsampling_ext TableSampler (e.g. PruningSampler), got "
                            f"{type(sampler).__name__}")
        self.sampler = sampler
        self._trainer = None
        self._saved_loader_state = False  # whether the checkpoint resumed holds the train loader's position
        self._deferred_batch_count = None  # the batch count to set when the first batch starts

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if trainer.limit_train_batches != 1.0:
            raise ValueError(f"limit_train_batches must be 1.0 with TableSamplerCallback (each epoch trains the "
                             f"sampler's selection), got {trainer.limit_train_batches!r}")
        self._trainer = trainer
        # The sampler shards itself: Lightning's wrapper would shard it again and fix its length.
        trainer._accelerator_connector.use_distributed_sampler = False
        self.sampler.num_replicas, self.sampler.rank = trainer.world_size, trainer.global_rank

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for config in trainer.lr_scheduler_configs:
            if config.interval == "step" and not isinstance(config.scheduler, ProgressScheduler):
                rank_zero_warn(
                    f"TableSamplerCallback: the learning-rate scheduler {type(config.scheduler).__name__} steps every "
                    f"batch, but the sampler's epochs change length with the recorded losses, so no step count is "
                    f"known in advance: trainer.estimated_stepping_batches counts every epoch as long as the fit's "
                    f"first ({trainer.num_training_batches} batches), and a schedule sized by it stops short of its "
                    f"end. Use dsampling_ext.ProgressScheduler(optimizer, epochs, "
                    f"callback.progress), which ends with the last epoch, or an epoch-interval scheduler",
                    category=UserWarning)
        if not trainer.fit_loop.restarted_mid_epoch:
            return
        # Lightning resumes a checkpoint saved within an epoch without calling on_train_epoch_start
        loader = self._checked_loader(trainer)
        if self.sampler.epoch != trainer.current_epoch:
            # saved after the epoch's last batch: Lightning goes on with the next epoch on the saved one's
            # iterator, and counts the saved epoch as ended only while the batch count is still its own
            self._start_epoch(trainer, loader, remake_iterator=True, count_at_first_batch=True)
        elif not self._saved_loader_state:
            # (a checkpoint with the loader's place, resumed with a plain DataLoader, Lightning refuses itself)
            done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
            raise ValueError(
                f"train_dataloader must be a torchdata StatefulDataLoader to resume a checkpoint saved within an epoch "
                f"(epoch {trainer.current_epoch}, after batch {done}): the saved run's train loader did not save "
                f"its place, so Lightning would restart the epoch and cut it {done} batches short. Build the "
                f"train loader as StatefulDataLoader, or resume from a checkpoint saved at an epoch's end")

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a fit resumed at an epoch boundary starts on the iterator made before set_epoch: make it again
        self._start_epoch(trainer, self._checked_loader(trainer), remake_iterator=trainer.fit_loop.is_resuming)

    def _checked_loader(self, trainer: pl.Trainer):
        loader = trainer.train_dataloader
        if getattr(loader, "sampler", None) is not self.sampler:
            raise ValueError("the train DataLoader must be built with sampler=callback.sampler")
        if len(loader.dataset) != self.sampler.table.num_samples:
            raise ValueError(f"the train dataset holds {len(loader.dataset)} samples but the sampler's ScoreTable "
                             f"{self.sampler.table.num_samples}: build the table with ScoreTable(len(dataset))")
        return loader

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        if self._deferred_batch_count is not None:
            trainer.fit_loop.max_batches, self._deferred_batch_count = self._deferred_batch_count, None

    def _start_epoch(self, trainer: pl.Trainer, loader, remake_iterator: bool, count_at_first_batch: bool = False):
        self.sampler.set_epoch(trainer.current_epoch)  # Lightning set it already; the same epoch keeps its place
        # Lightning reads the length once, before the first set_epoch of a fit, and caps every epoch
        # at it; it has no public setter, so the cap and the batch count (which also decides the
        # accumulation's last step) are set to this epoch's here.
        fit_loop = trainer.fit_loop
        batches = len(loader)
        fit_loop._combined_loader.limits = [batches]  # the iterator's length, read when it is made
        if count_at_first_batch:
            self._deferred_batch_count = batches
        else:
            fit_loop.max_batches = batches
        if remake_iterator:
            iter(fit_loop._data_fetcher)

    def loss(self, indices: Tensor, losses: Tensor) -> Tensor:
        """Record the batch's per-sample losses and return their weighted mean (the loss to return)."""
        self.sampler.table.record(indices, losses)
        return weighted_mean(losses, self.sampler.weights(indices))

    def progress(self) -> float:
        """Epochs of training done, fractional: epoch + batches done / the epoch's batches."""
        trainer = self._trainer
        if trainer is None:
            return 0.0
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return trainer.current_epoch + done / max(trainer.num_training_batches, 1)

    def state_dict(self) -> dict:
        # Lightning saves rank 0's state, and every rank loads it: gather every rank's records since
        # the last selection first (a collective; Lightning takes the state on every rank)
        self.sampler.table.sync()
        # Lightning saves the train loader's position only for a stateful loader
        saved_loader_state = self._trainer is not None and _stateful(self._trainer.train_dataloader)
        return dict(table=self.sampler.table.state_dict(), saved_loader_state=saved_loader_state)

    def load_state_dict(self, state_dict: dict) -> None:
        self.sampler.table.load_state_dict(state_dict["table"])
        self._saved_loader_state = state_dict.get("saved_loader_state", False)  # False in checkpoints from before it
        # Lightning reads len(loader) and makes the loader's iterator before its set_epoch: at the
        # table's epoch they give the saved selection, not one made again over the epoch's records
        self.sampler.set_epoch(self.sampler.table.epoch)
