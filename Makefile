# The two commands a new user runs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=

.PHONY: demo test lint venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	# torch first, pinned, so the range in pyproject.toml does not pull a multi-GB CUDA build.
	# Pass TORCH_PIP_ARGS="--index-url <your CPU wheel index>" where plain PyPI would give CUDA.
	$(PY) -m pip install --quiet "$(TORCH_SPEC)" $(TORCH_PIP_ARGS)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/hdm demo --out outputs/demo

# One thread per test process: the tests use small tensors, where OpenMP threads only
# add overhead (and oversubscribe a busy 2-core machine).
test: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -q tests

lint: $(STAMP)
	$(VENV)/bin/ruff check hdm tests benchmarks

clean:
	rm -rf $(VENV) outputs
