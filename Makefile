# Quickstart: `make run`, `make test`. Both create .venv on first use.
SHELL := /bin/bash
PYTHON_VERSION := $(shell cat .python-version)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# pyenv's shim honours .python-version; plain python3.10 elsewhere.
PYTHON310 := $(shell command -v python3.10 2>/dev/null)
ARGS ?=

.PHONY: install run test test-unit test-e2e lint schema lock bench clean

install: $(STAMP)

$(STAMP): requirements.lock setup.py
	@if [ -z "$(PYTHON310)" ] || ! $(PYTHON310) -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then \
	  echo "error: Python 3.10 not found; install it (e.g. 'pyenv install $(PYTHON_VERSION)') and run make again" >&2; exit 2; fi
	@test -x $(PY) || $(PYTHON310) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip==24.2"
	$(PY) -m pip install --quiet --no-deps -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

run: install
	$(PY) local_runner.py $(ARGS)

test: install
	$(PY) -m pytest $(ARGS)

test-unit: install
	$(PY) -m pytest -m "not e2e" $(ARGS)

test-e2e: install
	$(PY) -m pytest -m e2e $(ARGS)

lint: install
	$(VENV)/bin/ruff check .

# A draft schema inferred from the data, for review against the curated one.
schema: install
	$(PY) -m pipeline.schema_draft $(ARGS)

# Re-resolve requirements.in into requirements.lock (Linux, Python 3.10).
lock: install
	$(PY) -m pip install --quiet "uv==0.13.9"
	$(VENV)/bin/uv pip compile requirements.in --python-version 3.10 \
	  --python-platform x86_64-manylinux_2_28 --no-header -o requirements.lock

bench: install
	$(PY) benchmarks/pipeline_benchmark.py $(ARGS)

clean:
	rm -rf tfx_output .pytest_cache
