"""The per-batch selectors' scoring forward: inference mode, the model's mode restored, a raw
batch larger than the training batch, and downsampled inputs (score_scale)."""

import pytest
import torch
from torch import nn

import dsampling_ext
from dsampling_ext import BatchAccumulator, LossHistogramSelector, MisclassifiedFilter, selective_batches


class Recorder(nn.Module):
    """Adaptive-pooling classifier that records each forward's input size, mode and autograd state."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)
        self.calls = []

    def forward(self, x):
        self.calls.append((tuple(x.shape), self.training, torch.is_inference_mode_enabled(), torch.is_grad_enabled()))
        return self.head(nn.functional.adaptive_avg_pool2d(self.conv(x), 1).flatten(1))


def loader(n=96, raw=32, size=16):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 1, size, size, generator=g), torch.randint(0, 3, (n,), generator=g)
    return [(x[i : i + raw], y[i : i + raw], torch.arange(i, i + raw)) for i in range(0, n, raw)]


@pytest.mark.parametrize("scale", [None, 0.5])
def test_selective_batches_scores_in_inference_mode_and_downsamples(scale):
    model = Recorder().train()
    sel = LossHistogramSelector(warmup_epochs=0, threshold=0.0, keep_fraction=1.0)
    batches = list(selective_batches(loader(raw=48), model, nn.CrossEntropyLoss(reduction="none"), sel,
                                     BatchAccumulator(16), score_scale=scale))
    scoring = model.calls
    side = 16 if scale is None else 8
    assert scoring == [((48, 1, side, side), False, True, False)] * 2  # two raw batches of 48, eval, inference mode
    assert model.training  # restored
    assert all(len(b[1]) == 16 for b in batches) and batches[0][0].shape[-1] == 16  # training batches: full size


def test_filter_scores_in_inference_mode_and_downsamples():
    model = Recorder().train()
    filt = MisclassifiedFilter(8, score_scale=0.25, selection_mode="train", fallback_after=None)
    list(filt.batches(loader(), model))
    assert {c for c in model.calls} == {((32, 1, 4, 4), True, True, False)}
    with pytest.raises(ValueError, match=r"score_scale must be None or a number in \(0, 1\)"):
        MisclassifiedFilter(8, score_scale=1.0)
    with pytest.raises(ValueError, match=r"score_scale must be None or a number in \(0, 1\)"):
        list(selective_batches(loader(), model, nn.CrossEntropyLoss(reduction="none"), LossHistogramSelector(),
                               BatchAccumulator(8), score_scale=0))


def test_scoring_forward_outputs_are_usable_by_the_selectors():
    model = Recorder()
    losses = dsampling_ext.scores.scoring_forward(model, torch.randn(5, 1, 8, 8),
                                                  score_fn=lambda z: nn.functional.cross_entropy(z, torch.zeros(5, dtype=torch.long), reduction="none"))
    cache = dsampling_ext.LossCache(10)
    cache.update(torch.arange(5), losses, 0)  # an inference tensor's values copy into a normal one
    assert torch.equal(cache.lookup(torch.arange(5)), losses)
