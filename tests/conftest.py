import os

import pytest
import torch
from hypothesis import settings

# Hypothesis: no deadline (the first call of an op can be slow), a fixed number of examples
# so `make test` stays quick and reproducible; DSAMPLING_HYPOTHESIS_EXAMPLES raises it.
settings.register_profile(
    "dsampling",
    deadline=None,
    max_examples=int(os.environ.get("DSAMPLING_HYPOTHESIS_EXAMPLES", "150")),
    derandomize=True,
)
settings.load_profile("dsampling")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param
