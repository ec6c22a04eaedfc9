"""The runnable examples in python/ run, and print what they promise."""

import runpy
import sys
from pathlib import Path

import pytest
from frameworks import skip_in_cuda_venv

PYTHON_DIR = Path(__file__).resolve().parent.parent / "python"


def run_example(name, argv, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", [name, *argv])
    monkeypatch.syspath_prepend(str(PYTHON_DIR))  # as `python python/<name>` would
    runpy.run_path(str(PYTHON_DIR / name), run_name="__main__")
    return capsys.readouterr().out


def rows_under(lines, title, n):
    """The n table rows an example prints under a title line and its header, split into fields."""
    start = lines.index(title) + 2
    return [row.split() for row in lines[start : start + n]]


def test_loss_histogram_example(capsys, monkeypatch):
    out = run_example("loss_histogram_example.py", ["--steps", "4", "--every", "2", "--batch", "64"], capsys, monkeypatch)
    assert "step    4" in out
    # batch 64 -> Sturges gives log2(64) + 1 = 7 bins, or 8 where numpy's width ptp / 7 rounds
    # down (ceil(ptp / width) = 8); each of the 3 printed histograms has its rows' shares sum to 100%.
    blocks = [[line for line in block.splitlines() if line.startswith("  [")] for block in out.split("step ")[1:]]
    assert len(blocks) == 3 and all(len(rows) in (7, 8) for rows in blocks)
    for rows in blocks:
        assert sum(float(line.split(")")[1].split("%")[0]) for line in rows) == pytest.approx(100.0, abs=0.5)


def test_adonis_example(capsys, monkeypatch):
    out = run_example("adonis_example.py", ["--epochs", "2", "--train-size", "512", "--test-size", "128", "--batch", "64"],
                      capsys, monkeypatch)
    lines = out.splitlines()
    uniform, adonis = rows_under(lines, "uniform", 2), rows_under(lines, "adonis", 2)
    assert [int(r[1]) for r in uniform] == [512, 512]
    warmup, selected = (int(r[1]) for r in adonis)
    assert warmup == 512 and 0 < selected < 512 and selected % 64 == 0  # only full batches of 64
    assert int(adonis[1][2]) == 512  # one selection forward over the epoch


def test_misclassified_example(capsys, monkeypatch):
    out = run_example("misclassified_example.py", ["--epochs", "2", "--train-size", "512", "--test-size", "128", "--batch", "64"],
                      capsys, monkeypatch)
    lines = out.splitlines()
    for mode in ("batch mode", "epoch mode"):
        assert all(0 < int(r[1]) <= 512 for r in rows_under(lines, mode, 2))
    assert all(int(r[1]) % 64 == 0 for r in rows_under(lines, "batch mode", 2))  # full batches only
    assert "'kept'" in out


def test_dynamic_training_example(capsys, monkeypatch):
    out = run_example("dynamic_training_example.py", ["--epochs", "3", "--train-size", "500", "--test-size", "100"],
                      capsys, monkeypatch)
    lines = out.splitlines()
    rows = rows_under(lines, "dynamic partition", 3)
    assert [int(r[1]) for r in rows] == [200, 200, 200]  # |A| = 0.4 * 500 every epoch
    assert all(r[-1] in ("type1", "type2", "keep") for r in rows)
    assert [int(r[1]) for r in rows_under(lines, "random subset", 3)] == [200, 200, 200]


def test_pruning_example(capsys, monkeypatch):
    out = run_example("pruning_example.py", ["--epochs", "4", "--train-size", "512", "--test-size", "128", "--batch", "64"],
                      capsys, monkeypatch)
    lines = out.splitlines()
    uniform = rows_under(lines, "uniform", 4)
    pruning = rows_under(lines, "pruning", 4)
    assert [int(r[1]) for r in uniform] == [512] * 4
    trained = [int(r[1]) for r in pruning]
    assert trained[0] == 512 and trained[3] == 512  # nothing scored yet; the annealed last epoch (12.5% of 4 -> 1)
    assert all(t < 512 for t in trained[1:3])  # pruned in between
    assert [int(r[2]) for r in pruning] == [-(-t // 64) for t in trained]  # len(loader) known at the epoch's start
    assert float(uniform[-1][4]) == 0.0 and float(pruning[-1][4]) == 0.0  # both schedules end at lr 0


def test_ids_example(capsys, monkeypatch):
    out = run_example("ids_example.py", ["--epochs", "3", "--switch", "2", "--refit-every", "2", "--train-size", "256",
                                         "--test-size", "64", "--batch", "64", "--no-progress"], capsys, monkeypatch)
    lines = out.splitlines()
    uniform = rows_under(lines, "uniform", 3)
    ids = rows_under(lines, "ids", 3)
    assert [int(r[2]) for r in uniform] == [256] * 3
    fit = next(line for line in lines if line.startswith("IDS fit: classes of"))
    sizes = [int(s) for s in fit.split("[")[1].split("]")[0].split(",")]
    easy = sum(-(-4 * s // 5) for s in sizes)  # ceil(0.8 L) per class
    assert sum(sizes) == 256 and f"EASY {easy}," in fit
    assert [r[1] for r in ids] == ["easy", "easy", "hard"]  # the switch at epoch 2
    assert [int(r[2]) for r in ids[:2]] == [easy, easy] and easy <= int(ids[2][2]) <= easy + 10  # + prototypes
    assert [int(r[3]) for r in ids] == [-(-int(r[2]) // 64) for r in ids]


def test_importance_example(capsys, monkeypatch):
    out = run_example("importance_example.py", ["--epochs", "3", "--train-size", "512", "--test-size", "128", "--batch", "64"],
                      capsys, monkeypatch)
    lines = out.splitlines()
    uniform = rows_under(lines, "uniform", 3)
    ras = rows_under(lines, "ras", 3)
    assert [int(r[1]) for r in uniform] == [int(r[1]) for r in ras] == [512] * 3  # draws with replacement: N a epoch
    assert [int(r[2]) for r in ras] == [8] * 3
    assert float(ras[0][4]) == float(ras[0][5]) == 1.0  # nothing scored yet: uniform, weight 1
    low, high = float(ras[-1][4]), float(ras[-1][5])
    assert 0 < low < 1 < high <= 1 / 0.1  # scored: weights 1 / (N p_i), at most 1 / smoothing


def framework_example(name, argv, capsys, monkeypatch):
    """The epoch rows (epoch, trained, steps, last lr, ...) a framework example prints."""
    skip_in_cuda_venv()
    out = run_example(name, argv, capsys, monkeypatch)
    return [line.split() for line in out.splitlines() if line.split() and line.split()[0].isdigit()]


@pytest.mark.parametrize("name, argv", [
    ("accelerate_example.py", ["--train-size", "512", "--test-size", "128"]),
    ("lightning_example.py", ["--train-size", "512", "--test-size", "128"]),
    ("transformers_example.py", ["--train-size", "512", "--accumulate", "3"]),
])
def test_framework_examples_prune_and_end_their_schedule(name, argv, capsys, monkeypatch, tmp_path):
    if name == "transformers_example.py":
        argv = [*argv, "--output-dir", str(tmp_path)]
    rows = framework_example(name, ["--epochs", "4", "--batch", "64", *argv], capsys, monkeypatch)
    trained = [int(r[1]) for r in rows]
    assert [int(r[0]) for r in rows] == [0, 1, 2, 3]
    assert trained[0] == trained[3] == 512 and all(t < 512 for t in trained[1:3])  # pruned, then the annealed epoch
    batches = [-(-t // 64) for t in trained]
    per_epoch = [-(-b // 3) for b in batches] if name == "transformers_example.py" else batches  # optimizer steps
    assert [int(r[2]) for r in rows] == per_epoch  # each epoch's own length, the last accumulation stepped
    assert float(rows[-1][3]) == 0.0  # the cosine ends with the last epoch
