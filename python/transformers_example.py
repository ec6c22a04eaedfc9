"""Unbiased pruning with the Hugging Face Trainer on a tiny BERT built from a config (no download):
the lines a Trainer script adds are marked (1)-(3).

TableSamplerTrainer keeps the dataset index column (IndexedDataset adds it to dict items) and
never passes it to the model, records each sample's loss and applies the sampler's weights,
counts each epoch's batches when it starts (accumulation steps on each epoch's last batch) and
schedules the learning rate by training progress, so it ends with the last epoch.

    python python/transformers_example.py --epochs 4
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.data import Dataset
from transformers import BertConfig, BertForSequenceClassification, TrainerCallback, TrainingArguments

import dsampling_ext
from dsampling_ext.integrations.transformers import TableSamplerTrainer


class Tokens(Dataset):
    """Sequences of token ids, labelled by whether token 5 occurs in them."""

    def __init__(self, n: int, length: int = 8, seed: int = 0):
        self.ids = torch.randint(4, 30, (n, length), generator=torch.Generator().manual_seed(seed))

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        ids = self.ids[i]
        return dict(input_ids=ids, attention_mask=torch.ones_like(ids), labels=int((ids == 5).any()))


class EpochTable(TrainerCallback):
    """Prints each epoch's trained samples, optimizer steps and last learning rate."""

    def __init__(self, sampler):
        self.sampler, self.steps = sampler, 0

    def on_epoch_end(self, args, state, control, optimizer=None, **kwargs):
        steps, self.steps = state.global_step - self.steps, state.global_step
        lr = optimizer.param_groups[0]["lr"]
        print(f"  {int(state.epoch) - 1:>5} {len(self.sampler.indices):>8} {steps:>6} {lr:>10.6f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--accumulate", type=int, default=2)
    parser.add_argument("--output-dir", default="runs/transformers_example")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=32, hidden_size=32, num_hidden_layers=2,
                                                     num_attention_heads=2, intermediate_size=64,
                                                     max_position_embeddings=8, num_labels=2))
    train_data = dsampling_ext.IndexedDataset(Tokens(args.train_size))  # (1) items carry their index ...
    sampler = dsampling_ext.PruningSampler(dsampling_ext.ScoreTable(len(train_data)), args.epochs)  # ... and a sampler
    training = TrainingArguments(output_dir=args.output_dir, num_train_epochs=args.epochs, learning_rate=1e-3,
                                 per_device_train_batch_size=args.batch, gradient_accumulation_steps=args.accumulate,
                                 lr_scheduler_type="cosine", use_cpu=True, report_to=[], save_strategy="no",
                                 logging_strategy="no", disable_tqdm=True)
    trainer = TableSamplerTrainer(model=model, args=training, train_dataset=train_data,  # (2) the Trainer subclass
                                  sampler=sampler, callbacks=[EpochTable(sampler)])  # (3) given the sampler
    print(f"  {'epoch':>5} {'trained':>8} {'steps':>6} {'last lr':>10}")
    trainer.train()


if __name__ == "__main__":
    main()
