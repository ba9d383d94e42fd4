# Every target creates .venv and installs what it needs; a stamp file keeps a
# second run from reinstalling unless a pyproject.toml changed. The contrib plugin
# distributions are installed like any third-party plugin: through pip and entry points.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
SDA := $(VENV)/bin/sda
CONTRIB := $(sort $(dir $(wildcard contrib/*/pyproject.toml)))
CONTRIB_INSTALL := $(foreach dist,$(CONTRIB),-e ./$(dist))
STAMP := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: demo lint test bench gpu-check install clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip

$(STAMP): pyproject.toml $(wildcard contrib/*/pyproject.toml) | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]' $(CONTRIB_INSTALL)
	touch $(STAMP)

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]' $(CONTRIB_INSTALL)
	touch $(BENCH_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(SDA) demo --out demo
	@echo "Open the demo run in the studio: $(SDA) studio --root demo   then http://127.0.0.1:7860 (Runs tab: run)"

# ruff (lint and the format check) and import-linter (the layers of
# sda_core, and plugins/contrib on public modules only) run before the tests, so CI enforces them.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

# Two pytest workers, one torch thread each (OMP_NUM_THREADS reaches the CLIs the tests start):
# on 2 cores two processes of two threads each fought over them. A file's tests stay on one worker.
test: lint
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadfile --durations=15

bench: $(BENCH_STAMP)
	$(PY) -m benchmarks

# CUDA against the CPU on the demo dataset (benchmarks/gpu_check.py): a few minutes on a GPU
# machine; one line and exit 0 where there is no CUDA. Not part of `make bench`.
gpu-check: $(STAMP)
	$(PY) -m benchmarks.gpu_check

clean:
	rm -rf $(VENV) demo build *.egg-info
