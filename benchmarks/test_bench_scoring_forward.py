"""The per-batch selectors' scoring forward, before and after making it cheaper: torch.no_grad
at the training batch (128, what the selectors did), torch.inference_mode at 128 and at a
512-sample raw batch, and (for a model with adaptive pooling) inputs downsampled by 0.5; one
training step per sample as the reference. Every call processes the same 1024 MNIST-sized
samples, so time per call / 1024 = time per sample."""

import pytest
import torch
from torch import nn

from dsampling_ext.experiments.models import build_model
from dsampling_ext.scores import scoring_forward

SAMPLES = 1024
IMPLS = ["no_grad_b128", "inference_b128", "inference_b512", "inference_b512_scale0.5", "train_step_b128"]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("model_name", ["small_cnn", "dt_cnn"])
def test_scoring_forward(benchmark, model_name, impl):
    if impl.endswith("scale0.5") and model_name == "small_cnn":
        pytest.skip("small_cnn's linear head needs 28x28 inputs")
    benchmark.group = f"scoring forward {model_name} ({SAMPLES} samples)"
    benchmark.extra_info["impl"] = impl
    torch.manual_seed(0)
    model = build_model(model_name, (1, 28, 28), 10)
    x, y = torch.randn(SAMPLES, 1, 28, 28), torch.randint(0, 10, (SAMPLES,))
    batch = 512 if "b512" in impl else 128
    chunks = list(zip(x.split(batch), y.split(batch)))
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    if impl == "train_step_b128":
        opt = torch.optim.SGD(model.parameters(), lr=0.01)

        def run():
            for xb, yb in chunks:
                loss = loss_fn(model(xb), yb).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
    elif impl == "no_grad_b128":
        def run():
            model.eval()
            with torch.no_grad():
                return [loss_fn(model(xb), yb) for xb, yb in chunks]
    else:
        scale = 0.5 if impl.endswith("scale0.5") else None

        def run():
            return [scoring_forward(model, xb, scale=scale, score_fn=lambda z, yb=yb: loss_fn(z, yb)) for xb, yb in chunks]
    benchmark.pedantic(run, rounds=10, iterations=1, warmup_rounds=2)
