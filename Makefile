# The few commands a user or contributor runs. Each one creates .venv and installs on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Extra arguments: make quickstart ARGS="trainer.max_epochs=5 seed=7"; make bench ARGS=--smoke
ARGS ?=

.PHONY: install quickstart bench test test-fast lint format clean

# Re-installs when pyproject.toml changes. torch/torchvision resolve to the CUDA 2.14 build.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,dev]'
	touch $@

install: $(VENV)/.installed

quickstart: install  ## offline: a small ViT learns handwritten digits on the CPU
	$(PY) train.py experiment=quickstart $(ARGS)

bench: install  ## benchmarks: prints a table, writes benchmarks/results.json (see benchmarks/README.md)
	$(PY) benchmarks/run.py $(ARGS)

test: install  ## the whole suite, as CI runs it
	$(PY) -m pytest

test-fast: install  ## skip the slow end-to-end cases
	$(PY) -m pytest -m "not slow"

lint: install
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

format: install
	$(PY) -m ruff check --fix . && $(PY) -m ruff format .

clean:
	rm -rf outputs multirun .pytest_cache
