"""`make gpu-check`: the CUDA kernels on a real GPU, in one markdown report under runs/.

The Makefile builds and installs the CUDA extension into .venv-cuda, then runs this file from
outside the checkout (``python -P``) so that the installed build is the one measured:
  1. tests/cuda: every CUDA kernel against its CPU twin (bit for bit where the docs promise it);
  2. kernel timings with CUDA events: each kernel against the PyTorch composite a user would
     write and against a device-to-device copy of its input (the bandwidth floor), each kernel's
     output checked against its CPU twin first; the partition ops on both devices and against
     torch.randperm, to say which device is faster for which N;
  3. compute-sanitizer memcheck, racecheck and synccheck over tests/cuda, instrumenting the
     library's kernels, when the tool is installed.
Exits non-zero when a step fails, and at once, with a message, when no GPU is visible.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # reference.py: the composites a user would write

DEVICE = "cuda"
SANITIZER_TOOLS = ("memcheck", "racecheck", "synccheck")


# ----------------------------------------------------------------------------- timing


def _median_seconds(run_batch, first: float, budget: float, repeats: int) -> float:
    """Median time per call over `repeats` batches sized so that all of them take about `budget`."""
    repeats = repeats if first * repeats < 4 * budget else 3
    iters = max(1, min(1000, int(budget / repeats / max(first, 1e-7))))
    return statistics.median(run_batch(iters) / iters for _ in range(repeats))


def cuda_seconds(fn, budget: float = 0.2, repeats: int = 7) -> float:
    """Median GPU time per call of fn, between CUDA events on the current stream. Host work and
    host syncs inside fn count too (the GPU waits for them), as they would in a training loop."""
    fn()  # warm-up: allocator, kernel attributes, cub's temporary storage
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def run_batch(iters: int) -> float:
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3

    return _median_seconds(run_batch, run_batch(1), budget, repeats)


def cpu_seconds(fn, budget: float = 0.2, repeats: int = 7) -> float:
    fn()

    def run_batch(iters: int) -> float:
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        return time.perf_counter() - t0

    return _median_seconds(run_batch, run_batch(1), budget, repeats)


def fmt(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} us" if seconds < 1e-3 else f"{seconds * 1e3:.3f} ms"


# ----------------------------------------------------------------------------- kernel groups


def _equal(a, b) -> bool:
    return all(torch.equal(x.cpu(), y.cpu()) for x, y in zip(a, b))


def loss_histogram_rows(dsampling_ext):
    from dsampling_ext.ops import bin_count
    from reference import histogram_composite

    rows = []
    for n, bins in ((512, None), (50_000, None), (1_281_167, None), (10_000_000, None), (10_000_000, 20_000)):
        x_cpu = torch.empty(n).exponential_(generator=torch.Generator().manual_seed(n))
        x = x_cpu.to(DEVICE)
        k = bins or bin_count("sturges", n)
        assert _equal(dsampling_ext.loss_histogram(x, k), dsampling_ext.loss_histogram(x_cpu, k)), ("loss_histogram", n, k)
        dst = torch.empty_like(x)
        rows.append((f"loss_histogram N={n} bins={k}",
                     cuda_seconds(lambda: dsampling_ext.loss_histogram(x, k)),
                     cuda_seconds(lambda: histogram_composite(x, k)),
                     cuda_seconds(lambda: dst.copy_(x))))
    return rows


def histogram_select_rows(dsampling_ext):
    from reference import HistogramSelectReference

    rows = []
    configs = [(512, 128, {}), (512, 256, {}), (4096, 1024, {}), (4096, 1024, dict(keep="top")),
               (1024, 256, dict(rule="cdf")), (16384, 1024, dict(rule="cdf")), (65536, 1024, dict(rule="cdf"))]
    for capacity, batch, opts in configs:
        g = torch.Generator().manual_seed(capacity + batch)
        stream = [torch.empty(batch).exponential_(generator=g) for _ in range(32)]
        h_cpu, s_cpu = torch.zeros(capacity), torch.zeros(2, dtype=torch.int64)
        h, s = h_cpu.to(DEVICE), s_cpu.to(DEVICE)
        for offset, losses in enumerate(stream[:8]):  # correctness first, on a filling history
            want = dsampling_ext.histogram_select(h_cpu, s_cpu, losses, offset=offset, **opts)
            got = dsampling_ext.histogram_select(h, s, losses.to(DEVICE), offset=offset, **opts)
            assert _equal(got, want) and _equal((h, s), (h_cpu, s_cpu)), ("histogram_select", capacity, batch, opts)
        on_device = [losses.to(DEVICE) for losses in stream]
        step = iter(range(10**9))
        ref = HistogramSelectReference(capacity, device=DEVICE)
        copy = torch.empty_like(h)
        label = ", ".join(f"{k}={v}" for k, v in opts.items())
        rows.append((f"histogram_select H={capacity} B={batch}" + (f" {label}" if label else ""),
                     cuda_seconds(lambda: dsampling_ext.histogram_select(h, s, on_device[next(step) % 32], **opts)),
                     cuda_seconds(lambda: ref(on_device[next(step) % 32], **opts)),
                     cuda_seconds(lambda: copy.copy_(h))))
    return rows


def argmax_mismatch_rows(dsampling_ext):
    def composite(logits, labels, margin):
        keep = logits.argmax(1) != labels
        if margin is not None:
            top = logits.double().softmax(1).topk(min(2, logits.shape[1]), dim=1).values
            keep |= (top[:, 0] - top[:, -1]) <= margin
        kept = keep.nonzero().flatten()
        return keep, kept, kept.numel()

    rows = []
    for rows_, classes, margin in ((256, 10, None), (1024, 1000, None), (1_000_000, 10, None), (1_000_000, 10, 0.1),
                                   (100_000, 100, None)):
        g = torch.Generator().manual_seed(rows_ * classes)
        logits_cpu = torch.randn(rows_, classes, generator=g)
        labels_cpu = torch.randint(0, classes, (rows_,), generator=g)
        logits, labels = logits_cpu.to(DEVICE), labels_cpu.to(DEVICE)
        got = dsampling_ext.argmax_mismatch(logits, labels, margin)
        want = dsampling_ext.argmax_mismatch(logits_cpu, labels_cpu, margin)
        if margin is None:
            assert _equal(got, want), ("argmax_mismatch", rows_, classes)
        else:  # exp may round differently in the last bit: a few rows at the margin may differ
            assert (got[0].cpu() != want[0]).sum() <= 2, ("argmax_mismatch", rows_, classes, margin)
        dst = torch.empty_like(logits)
        rows.append((f"argmax_mismatch {rows_}x{classes}" + (f" margin={margin}" if margin is not None else ""),
                     cuda_seconds(lambda: dsampling_ext.argmax_mismatch(logits, labels, margin)),
                     cuda_seconds(lambda: composite(logits, labels, margin)),
                     cuda_seconds(lambda: dst.copy_(logits))))
    return rows


def philox_rows(dsampling_ext):
    n = 10_000_000
    assert torch.equal(dsampling_ext.philox_uniform(n, 3, 4, device=DEVICE).cpu(), dsampling_ext.philox_uniform(n, 3, 4))
    out, src = torch.empty(n, device=DEVICE), torch.rand(n, device=DEVICE)
    return [(f"philox_uniform N={n}",
             cuda_seconds(lambda: dsampling_ext.philox_uniform(n, 3, 4, device=DEVICE)),
             cuda_seconds(lambda: torch.rand(n, device=DEVICE)),  # torch's own generator, not bit-compatible
             cuda_seconds(lambda: out.copy_(src)))]


def partition_rows(dsampling_ext):
    """(N, op, CPU kernel, CUDA kernel, torch.randperm on the GPU, torch.randperm on the CPU)."""
    rows = []
    for n in (50_000, 1_281_167, 10_000_000):
        size = n // 2
        k = round(0.7 * size)
        start = torch.randperm(n, generator=torch.Generator().manual_seed(n))
        cpu, gpu = start.clone(), start.to(DEVICE)
        dsampling_ext.partition_resample(cpu, size, k, 1, 2)
        dsampling_ext.partition_resample(gpu, size, k, 1, 2)
        assert torch.equal(gpu.cpu(), cpu), ("partition_resample", n)
        assert torch.equal(dsampling_ext.random_subset(n, size, 5, 6, device=DEVICE).cpu(),
                           dsampling_ext.random_subset(n, size, 5, 6)), ("random_subset", n)
        randperm_gpu = cuda_seconds(lambda: torch.randperm(n, device=DEVICE))
        randperm_cpu = cpu_seconds(lambda: torch.randperm(n))
        rows.append((n, f"partition_resample(size={size}, k={k})",
                     cpu_seconds(lambda: dsampling_ext.partition_resample(cpu, size, k, 1, 2)),
                     cuda_seconds(lambda: dsampling_ext.partition_resample(gpu, size, k, 1, 2)),
                     randperm_gpu, randperm_cpu))
        rows.append((n, f"random_subset_(size={size})",
                     cpu_seconds(lambda: dsampling_ext.ops.random_subset_(cpu, size, 5, 6)),
                     cuda_seconds(lambda: dsampling_ext.ops.random_subset_(gpu, size, 5, 6)),
                     randperm_gpu, randperm_cpu))
    return rows


# ----------------------------------------------------------------------------- steps


def run_tests() -> tuple[bool, str]:
    result = subprocess.run([sys.executable, "-P", "-m", "pytest", str(REPO / "tests" / "cuda"), "-q", "-rs",
                             "-p", "no:cacheprovider"], cwd=REPO, capture_output=True, text=True)
    lines = (result.stdout + result.stderr).strip().splitlines()
    summary = lines[-1] if lines else "(no output)"
    failures = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    return result.returncode == 0, "\n".join([summary, *failures[:40]])


def find_compute_sanitizer() -> str | None:
    found = shutil.which("compute-sanitizer")
    if found:
        return found
    for home in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        for candidate in (Path(home or "/nonexistent") / "bin" / "compute-sanitizer",
                          Path(home or "/nonexistent") / "compute-sanitizer" / "compute-sanitizer"):
            if candidate.is_file():
                return str(candidate)
    return None


def run_sanitizer(tool_path: str, tool: str) -> tuple[bool, str, float]:
    # Only the library's kernels are instrumented (their mangled names hold "dsampling"); the
    # device-assertion test trips an assertion on purpose. Without the caching allocator every
    # tensor is its own allocation, so memcheck sees accesses past its end. The tools slow kernels
    # by 10-100x, so a test gets an hour here instead of pyproject's 10 minutes.
    command = [tool_path, "--tool", tool, "--error-exitcode", "1", "--kernel-name", "kns=dsampling",
               sys.executable, "-P", "-m", "pytest", str(REPO / "tests" / "cuda"), "-q", "-x", "-p", "no:cacheprovider",
               "-o", "timeout=3600", "-k", "not device_assertion"]
    env = dict(os.environ, PYTORCH_NO_CUDA_MEMORY_CACHING="1")
    t0 = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - t0
    lines = (result.stdout + result.stderr).strip().splitlines()
    summary = [line for line in lines if "SUMMARY" in line or line.startswith("=========")][-12:]
    tail = lines[-1:] if lines else ["(no output)"]
    return result.returncode == 0, "\n".join(summary + tail), elapsed


def table_record_rows(dsampling_ext):
    """table_record_ per training step (lane groups per row, the look-ahead for duplicates): batches of
    256 to 4096 with logits of 10 and 1000 classes, against the composite a user would write."""
    from dsampling_ext import ops

    rows = []
    n = 1_281_167
    for batch, classes in ((256, 10), (1024, 1000), (4096, 10), (4096, 1000)):
        g = torch.Generator().manual_seed(batch + classes)
        idx_cpu = torch.randint(0, n, (batch,), generator=g)  # duplicates possible: the last record wins
        losses_cpu = torch.rand(batch, generator=g)
        logits_cpu = torch.randn(batch, classes, generator=g)
        targets_cpu = torch.randint(0, classes, (batch,), generator=g)
        tables = []
        for device in ("cpu", DEVICE):
            table = (torch.zeros(n, device=device), torch.full((n,), -1, dtype=torch.int8, device=device),
                     torch.full((n,), -1, dtype=torch.int32, device=device))
            ops.table_record_(*table, idx_cpu.to(device), losses_cpu.to(device), 1, logits_cpu.to(device),
                              targets_cpu.to(device))
            tables.append(table)
        assert _equal(tables[0], tables[1]), ("table_record_", batch, classes)
        table = tables[1]
        idx, losses, logits, targets = (t.to(DEVICE) for t in (idx_cpu, losses_cpu, logits_cpu, targets_cpu))

        def composite():
            table[0][idx] = losses
            table[1][idx] = (logits.argmax(1) == targets).to(torch.int8)
            table[2][idx] = 1

        rows.append((f"table_record_ B={batch} C={classes}",
                     cuda_seconds(lambda: ops.table_record_(*table, idx, losses, 1, logits, targets)),
                     cuda_seconds(composite),
                     cuda_seconds(lambda: logits.clone())))
    return rows


def peak_bandwidth() -> tuple[float, str]:
    """The GPU's memory bandwidth in bytes/s: from its memory clock and bus width (double data
    rate) where torch reports them, else twice the bytes of a large device-to-device copy per second."""
    props = torch.cuda.get_device_properties(0)
    clock_khz, bus_bits = getattr(props, "memory_clock_rate", 0), getattr(props, "memory_bus_width", 0)
    if clock_khz and bus_bits:
        return 2.0 * clock_khz * 1e3 * bus_bits / 8, f"theoretical: {clock_khz / 1e6:.2f} GHz x {bus_bits} bits x 2"
    src = torch.empty(2**28, dtype=torch.uint8, device=DEVICE)
    dst = torch.empty_like(src)
    return 2 * src.numel() / cuda_seconds(lambda: dst.copy_(src)), "measured: a 256 MiB device-to-device copy"


def bandwidth_rows(dsampling_ext):
    """(op, bytes it must move at least, median seconds) at N = 10^7: its inputs read once and its
    outputs written once; a share of peak below 100% measures everything beyond that."""
    from dsampling_ext import ops

    n = 10_000_000
    g = torch.Generator().manual_seed(7)
    x = torch.empty(n).exponential_(generator=g).to(DEVICE)
    k = ops.bin_count("sturges", n)
    logits = torch.randn(n // 10, 10, generator=g).to(DEVICE)
    labels = torch.randint(0, 10, (n // 10,), generator=g).to(DEVICE)
    seen = torch.zeros(n, dtype=torch.int32, device=DEVICE)
    kept, _ = ops.table_select(x, seen, 1, "mean")
    return [
        (f"loss_histogram N={n} float32 bins={k}", 4 * n + 8 * k + 4 * (k + 1),
         cuda_seconds(lambda: dsampling_ext.loss_histogram(x, k))),
        (f"argmax_mismatch {n // 10}x10 float32", 4 * n + 8 * (n // 10) + 9 * (n // 10) + 8,
         cuda_seconds(lambda: dsampling_ext.argmax_mismatch(logits, labels))),
        (f"table_select N={n} mean float32", 8 * n + 12 * kept.numel(),
         cuda_seconds(lambda: ops.table_select(x, seen, 1, "mean"))),
    ]


def bandwidth_table(rows, peak: float) -> list[str]:
    out = ["| op | bytes (min) | kernel | GB/s | share of peak |", "|---|---:|---:|---:|---:|"]
    for op, nbytes, seconds in rows:
        out.append(f"| {op} | {nbytes / 1e6:.1f} MB | {fmt(seconds)} | {nbytes / seconds / 1e9:.0f} | "
                   f"{100 * nbytes / seconds / peak:.0f}% |")
    return out


def kernel_table(rows) -> list[str]:
    out = ["| group | kernel | composite | kernel / composite | d2d copy | kernel / copy |",
           "|---|---:|---:|---:|---:|---:|"]
    for group, kernel, composite, copy in rows:
        out.append(f"| {group} | {fmt(kernel)} | {fmt(composite)} | {kernel / composite:.3f} | {fmt(copy)} | "
                   f"{kernel / copy:.2f} |")
    return out


def partition_table(rows) -> list[str]:
    out = ["| N | op | CPU kernel | CUDA kernel | faster | randperm CUDA | randperm CPU |", "|---:|---|---:|---:|---|---:|---:|"]
    for n, op, cpu, gpu, randperm_gpu, randperm_cpu in rows:
        faster = f"CUDA {cpu / gpu:.1f}x" if gpu < cpu else f"CPU {gpu / cpu:.1f}x"
        out.append(f"| {n} | {op} | {fmt(cpu)} | {fmt(gpu)} | {faster} | {fmt(randperm_gpu)} | {fmt(randperm_cpu)} |")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "runs"), help="directory of the report (default: runs/)")
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--skip-sanitizer", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(f"gpu-check: no CUDA GPU is visible to torch {torch.__version__} (CUDA {torch.version.cuda}); "
              "it needs one. `make cuda-build` checks that the CUDA kernels build without a GPU.", file=sys.stderr)
        return 2
    import dsampling_ext

    info = dsampling_ext.build_info()
    if not info["cuda"]:
        print(f"gpu-check: the dsampling_ext that was imported has no CUDA kernels: {info}", file=sys.stderr)
        return 2
    props = torch.cuda.get_device_properties(0)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    report = [f"# make gpu-check, {stamp}", "",
              f"- device: {props.name}, compute capability {props.major}.{props.minor}, {props.multi_processor_count} SMs, "
              f"{props.total_memory / 2**30:.1f} GiB",
              f"- torch {torch.__version__} (CUDA {torch.version.cuda}); dsampling_ext built with CUDA {info['cuda_version']}, "
              f"{info['path']} from {info['library']}",
              f"- TORCH_CUDA_ARCH_LIST: {os.environ.get('TORCH_CUDA_ARCH_LIST', '(unset: built for the visible GPU)')}",
              ""]
    ok = True

    report += ["## tests/cuda", ""]
    if args.skip_tests:
        report += ["skipped (--skip-tests)", ""]
    else:
        passed, text = run_tests()
        ok &= passed
        report += ["```", text, "```", ""]

    report += ["## Kernel timings", "",
               "Median time per call between CUDA events (host work and host syncs inside a call count too). "
               "composite: the PyTorch code a user would write (tests/reference.py); d2d copy: a device-to-device "
               "copy of the kernel's input, the bandwidth floor. Each kernel's output was first checked against "
               "its CPU twin.", ""]
    rows = []
    for group in (loss_histogram_rows, histogram_select_rows, argmax_mismatch_rows, philox_rows, table_record_rows):
        rows += group(dsampling_ext)
    report += kernel_table(rows) + [""]
    peak, source = peak_bandwidth()
    report += ["## Bandwidth at N = 10^7", "",
               f"Bytes each op must move at least (inputs read once, outputs written once) per median call, as a share "
               f"of the GPU's peak memory bandwidth ({peak / 1e9:.0f} GB/s, {source}). loss_histogram reads its input "
               "twice (range, then counts), so 50% is its ceiling; table_select syncs twice (docs/cuda_notes.md).", ""]
    report += bandwidth_table(bandwidth_rows(dsampling_ext), peak) + [""]
    report += ["## Partition ops: CPU or GPU", "",
               "Median time per call of the in-place ops (CPU: wall clock, CUDA: events), and a full torch.randperm(N) "
               "on either device for scale.", ""]
    report += partition_table(partition_rows(dsampling_ext)) + [""]

    report += ["## compute-sanitizer", ""]
    tool_path = None if args.skip_sanitizer else find_compute_sanitizer()
    if tool_path is None:
        report += ["skipped (--skip-sanitizer)" if args.skip_sanitizer else "not installed (no compute-sanitizer on PATH "
                   "or under CUDA_HOME): not run", ""]
    else:
        for tool in SANITIZER_TOOLS:
            passed, text, elapsed = run_sanitizer(tool_path, tool)
            ok &= passed
            report += [f"### {tool}: {'clean' if passed else 'FINDINGS'} ({elapsed / 60:.1f} min)", "", "```", text, "```", ""]

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"gpu-check-{stamp}.md"
    path.write_text("\n".join(report))
    print("\n".join(report))
    print(f"\ngpu-check: report written to {path}; {'all steps passed' if ok else 'SOME STEPS FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
