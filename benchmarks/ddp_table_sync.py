"""Per-step or per-epoch exchange of ScoreTable records under DDP: which is cheaper?

Two gloo ranks on this machine each record an epoch of N/2 samples in batches of B (losses
and, optionally, correctness). "per step" all-gathers each step's indices and losses right
away (what a table kept in sync at every step would cost); "per epoch" is what ScoreTable
does: record locally, then one ScoreTable.sync() at the epoch's end. Prints seconds per epoch
(median of repeats, rank 0).

    python benchmarks/ddp_table_sync.py [--n 50000] [--batch 256]
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dsampling_ext import ScoreTable
from dsampling_ext.distributed import all_gather_cat

WORLD = 2


def epoch_per_step(table, batches):
    for idx, losses in batches:
        table.record(idx, losses)
        all_idx, _ = all_gather_cat(idx)
        all_losses, _ = all_gather_cat(losses)
        table.scores[all_idx] = all_losses
        table.seen_epoch[all_idx] = table.epoch
    table._pending.clear()  # the records were exchanged already


def epoch_per_epoch(table, batches):
    for idx, losses in batches:
        table.record(idx, losses)
    table.sync()


def worker(rank, init_file, n, batch, repeats, out):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=120))
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(rank)
    mine = torch.arange(rank, n, WORLD)
    results = {}
    for name, epoch_fn in (("per step", epoch_per_step), ("per epoch", epoch_per_epoch)):
        table = ScoreTable(n)
        times = []
        for epoch in range(repeats):
            table.set_epoch(epoch)
            order = mine[torch.randperm(mine.numel(), generator=g)]
            batches = [(i, torch.rand(i.numel(), generator=g)) for i in order.split(batch)]
            dist.barrier()
            start = time.perf_counter()
            epoch_fn(table, batches)
            dist.barrier()
            times.append(time.perf_counter() - start)
        results[name] = statistics.median(times)
    if rank == 0:
        out.put(results)
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000, help="dataset size (both ranks together)")
    parser.add_argument("--batch", type=int, default=256, help="per-rank batch size")
    parser.add_argument("--repeats", type=int, default=5, help="epochs timed per mode")
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    out = ctx.SimpleQueue()
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(worker, args=(f"{tmp}/rendezvous", args.n, args.batch, args.repeats, out), nprocs=WORLD, join=True)
    results = out.get()
    steps = -(-args.n // WORLD // args.batch)
    for name, seconds in results.items():
        print(f"{name:>9}: {seconds * 1e3:8.1f} ms per epoch ({steps} steps per rank, {seconds / steps * 1e6:.0f} us per step)")


if __name__ == "__main__":
    main()
