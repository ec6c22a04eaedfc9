"""Unbiased pruning in a Hugging Face accelerate loop: the lines a loop adds are marked (1)-(5).

The loader goes through dsampling_ext.integrations.accelerate.prepare instead of
accelerator.prepare: the sampler then yields the whole selection on every process and accelerate
shards it once (prepared the plain way it would be sharded twice, which the sampler refuses at
the next epoch). The table is registered for checkpointing, so accelerator.save_state and
load_state resume the selection with the model (see docs/integrations.md).

    python python/accelerate_example.py --epochs 4
    accelerate launch --cpu --num_processes 2 python/accelerate_example.py --epochs 4
"""

from __future__ import annotations

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from torch import nn
from torch.utils.data import DataLoader
from toy_data import accuracy, example_data, example_parser, small_cnn

import dsampling_ext
from dsampling_ext.integrations.accelerate import prepare


def main(argv=None) -> None:
    args = example_parser(__doc__).parse_args(argv)
    train_data, test_data = example_data(args)  # PrototypeImages yields (image, label, index)
    accelerator = Accelerator(cpu=True, dataloader_config=DataLoaderConfiguration(use_stateful_dataloader=True))
    torch.manual_seed(args.seed)
    model = small_cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    table = dsampling_ext.ScoreTable(len(train_data))  # (1) the table and its sampler
    sampler = dsampling_ext.PruningSampler(table, args.epochs, seed=args.seed)
    loader = prepare(accelerator, DataLoader(train_data, batch_size=args.batch, sampler=sampler))  # (2)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(table)  # (3) save_state / load_state carry the table
    schedule = dsampling_ext.ProgressLR(optimizer, args.epochs)
    if accelerator.is_main_process:
        print(f"  {'epoch':>5} {'trained':>8} {'steps':>6} {'last lr':>8} {'test acc':>8}")
    for epoch in range(args.epochs):
        loader.set_epoch(epoch)  # the loader's set_epoch: accelerate passes it to the sampler
        steps, trained = len(loader), torch.zeros((), dtype=torch.int64)
        for i, (x, y, idx) in enumerate(loader):
            losses = nn.functional.cross_entropy(model(x), y, reduction="none")
            table.record(idx, losses)  # (4) the scores come from this forward
            accelerator.backward(dsampling_ext.weighted_mean(losses, sampler.weights(idx)))  # (5) unbiased weights
            optimizer.step()
            optimizer.zero_grad()
            schedule.step(epoch + (i + 1) / steps)
            trained += len(y)
        trained = int(accelerator.reduce(trained, "sum"))
        if accelerator.is_main_process:
            lr = optimizer.param_groups[0]["lr"]
            acc = accuracy(accelerator.unwrap_model(model), test_data)
            print(f"  {epoch:>5} {trained:>8} {steps:>6} {lr:>8.4f} {acc:>8.3f}")


if __name__ == "__main__":
    main()
