"""Hugging Face transformers: a ``Trainer`` that trains each epoch on a table sampler's selection.

What the plain Trainer does with such a sampler: it drops the index column (it is not an argument
of the model's forward; a model that takes ``**kwargs``, like BERT, swallows it instead), its
loss is the model's mean (nothing recorded, nothing weighted), accelerate shards the sampler's
per-rank shard again, and it counts every epoch's batches, its accumulation and its
``max_steps`` (so the LR schedule) from the first epoch's length. :class:`TableSamplerTrainer`
keeps the index, records per-sample losses and applies the weights, lets accelerate shard the
whole selection once, takes each epoch's length when the epoch starts, and schedules the
learning rate by training progress (:class:`~dsampling_ext.ProgressScheduler`).
"""

from __future__ import annotations

import math
import os

import torch
from torch import Tensor, nn
from transformers import Trainer

from ..schedules import ProgressScheduler
from ..scores import TableSampler, weighted_mean
from .accelerate import let_accelerate_shard

__all__ = ["TableSamplerTrainer"]

#: lr_scheduler_type values with a progress-driven twin (ProgressLR's schedules).
_SCHEDULES = ("linear", "cosine", "constant")


class TableSamplerTrainer(Trainer):
    """``transformers.Trainer`` whose training epochs are a :class:`~dsampling_ext.TableSampler`'s.

    Give it the sampler and a train dataset wrapped in :class:`~dsampling_ext.IndexedDataset`
    (dict items gain the key ``index_key``). Training losses are :meth:`per_sample_losses` of the
    model's outputs, recorded in the sampler's table and averaged with the sampler's weights;
    evaluation keeps the model's own loss. Checkpoints hold each rank's table and its place in
    the epoch (``dsampling_rank<r>.pt``), so ``train(resume_from_checkpoint=...)`` goes on as the
    uninterrupted run would, from a checkpoint mid-epoch or at an epoch's end.

    Args:
        sampler: the TableSampler (e.g. PruningSampler) over the train dataset; its ``epochs`` must
            be ``args.num_train_epochs`` when it anneals.
        index_key: the batch key holding the dataset indices (IndexedDataset's default "index").
        args, kwargs: the positional and keyword arguments of ``transformers.Trainer``. ``args.max_steps`` must be unset (-1),
            ``args.lr_scheduler_type`` one of linear, cosine, constant, and ``args.warmup_steps`` a
            ratio below 1 (epochs have no fixed number of steps); ``compute_loss_func`` is refused
            (override :meth:`per_sample_losses`).
    """

    # compute_loss returns each batch's (weighted) mean: training_step divides it by the batches
    # of its accumulation, the last, shorter one of an epoch included
    loss_is_scaled_for_ga = False

    def __init__(self, *args, sampler: TableSampler, index_key: str = "index", **kwargs):
        if not isinstance(sampler, TableSampler):
            raise TypeError(f"sampler must be a dsampling_ext TableSampler (e.g. PruningSampler), got "
                            f"{type(sampler).__name__}")
        super().__init__(*args, **kwargs)
        train = self.args
        if train.max_steps > 0:
            raise ValueError(f"args.max_steps must be -1 with TableSamplerTrainer (epochs vary in steps; train by "
                             f"num_train_epochs), got {train.max_steps}")
        if sampler.anneal > 0 and math.ceil(train.num_train_epochs) != sampler.epochs:
            raise ValueError(f"args.num_train_epochs ({train.num_train_epochs}) must be the sampler's epochs "
                             f"({sampler.epochs}), which place its full-data epochs")
        if self.compute_loss_func is not None:
            raise ValueError("compute_loss_func is not used by TableSamplerTrainer: override per_sample_losses")
        self.sampler, self.index_key = sampler, index_key
        self._epoch, self._steps_in_epoch, self._batches_done = 0, 1, 0

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        # each rank's table (its records not yet gathered differ) and where in which epoch it is
        super()._save_optimizer_and_scheduler(output_dir)
        os.makedirs(output_dir, exist_ok=True)
        torch.save(dict(table=self.sampler.table.state_dict(), epoch=self._epoch, batches_done=self._batches_done,
                        steps_in_epoch=self._steps_in_epoch), self._sampling_file(output_dir))

    def _init_training_state(self, max_steps, num_update_steps_per_epoch, num_train_epochs, resume_from_checkpoint,
                             trial):
        # The Trainer finds the resumed epoch and step from the first epoch's length; the saved
        # epoch and batches are exact.
        epochs_trained, steps_trained = super()._init_training_state(
            max_steps, num_update_steps_per_epoch, num_train_epochs, resume_from_checkpoint, trial)
        if resume_from_checkpoint is None:
            return epochs_trained, steps_trained
        saved = torch.load(self._sampling_file(resume_from_checkpoint), weights_only=True)
        self.sampler.table.load_state_dict(saved["table"])
        if saved["batches_done"] == saved["steps_in_epoch"]:  # saved at the epoch's end
            return saved["epoch"] + 1, 0
        return saved["epoch"], 0 if self.args.ignore_data_skip else saved["batches_done"]

    def _sampling_file(self, checkpoint: str) -> str:
        return os.path.join(checkpoint, f"dsampling_rank{self.args.process_index}.pt")

    def _get_train_sampler(self, train_dataset=None):
        let_accelerate_shard(self.sampler, self.train_dataset if train_dataset is None else train_dataset)
        return self.sampler

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if self.index_key not in self._signature_columns:
            self._signature_columns.append(self.index_key)  # kept by remove_unused_columns

    def _run_epoch(self, model, epoch, train_dataloader, steps_in_epoch, num_update_steps_per_epoch, **kwargs):
        # The Trainer counts every epoch's batches from the first epoch's length: select the epoch
        # first (accelerate passes set_epoch to the sampler) and count its own.
        train_dataloader.set_epoch(epoch)
        steps_in_epoch = len(train_dataloader)
        resumed = epoch == kwargs["epochs_trained"] and kwargs["resume_from_checkpoint"] is not None
        self._epoch, self._steps_in_epoch = epoch, steps_in_epoch
        self._batches_done = kwargs["steps_trained_in_current_epoch"] if resumed else 0
        updates = math.ceil(steps_in_epoch / self.args.gradient_accumulation_steps)
        return super()._run_epoch(model=model, epoch=epoch, train_dataloader=train_dataloader,
                                  steps_in_epoch=steps_in_epoch, num_update_steps_per_epoch=updates, **kwargs)

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        self._batches_done += 1
        return loss

    def progress(self) -> float:
        """Epochs of training done, fractional: epoch + batches done / the epoch's batches."""
        return self._epoch + self._batches_done / max(self._steps_in_epoch, 1)

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        if self.lr_scheduler is None:
            kind = str(getattr(self.args.lr_scheduler_type, "value", self.args.lr_scheduler_type))
            if kind not in _SCHEDULES:
                raise ValueError(f"args.lr_scheduler_type must be one of {_SCHEDULES} with TableSamplerTrainer (the "
                                 f"schedule follows training progress), got {kind!r}")
            if self.args.warmup_steps >= 1:
                raise ValueError(f"args.warmup_steps must be a ratio in [0, 1) with TableSamplerTrainer (epochs vary "
                                 f"in steps), got {self.args.warmup_steps}")
            epochs = math.ceil(self.args.num_train_epochs)
            self.lr_scheduler = ProgressScheduler(self.optimizer if optimizer is None else optimizer, epochs,
                                                  self.progress, schedule=kind, warmup=self.args.warmup_steps * epochs)
        return self.lr_scheduler

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        indices = inputs.pop(self.index_key, None)  # never passed to the model (**kwargs would swallow it)
        if not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if indices is None:
            raise ValueError(f"training batches must hold the dataset indices under {self.index_key!r}: wrap the "
                             f"train dataset in dsampling_ext.IndexedDataset")
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        losses = self.per_sample_losses(outputs, labels)
        self.sampler.table.record(indices, losses)
        loss = weighted_mean(losses, self.sampler.weights(indices))
        return (loss, outputs) if return_outputs else loss

    def per_sample_losses(self, outputs, labels: Tensor) -> Tensor:
        """One loss per sample (Tensor[B]): cross-entropy of classification logits [B, C].
        Override for other heads (a causal LM's shifted, per-token losses averaged per sample)."""
        logits = outputs["logits"]
        if logits.dim() != 2:
            raise ValueError(f"per_sample_losses handles classification logits [B, C], got {tuple(logits.shape)}: "
                             f"override TableSamplerTrainer.per_sample_losses for this model")
        return nn.functional.cross_entropy(logits, labels, reduction="none")
