# llem: one entry point per task. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUNNER ?= docker
STUDY ?= studies/demo.yaml
OUTPUT ?= results
TINY_MODEL := .llem/models/tiny-llama

.PHONY: help install test lint demo study model images bench gpu-check clean-venv

help:
	@echo "make install   create $(VENV) and install llem with the pytorch and dev extras"
	@echo "make test      run the test suite (unit + integration; gpu tests skip without a GPU)"
	@echo "make lint      ruff + mypy (strict)"
	@echo "make demo      build the tiny model and run studies/demo.yaml (RUNNER=$(RUNNER))"
	@echo "make study     run STUDY=path/to/study.yaml"
	@echo "make images    build the cpu image (IMAGE=cpu|pytorch|vllm|tensorrt)"
	@echo "make bench     print the benchmark figures of tests/perf"
	@echo "make gpu-check on an NVIDIA GPU: energy, agreement, baseline, overhead"

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[pytorch,dev]'
	touch $@

test: install
	$(BIN)/python -m pytest tests -q --durations=10

lint: install
	$(BIN)/ruff check harness orchestrator tests
	$(BIN)/mypy

model: install $(TINY_MODEL)/config.json

$(TINY_MODEL)/config.json:
	$(BIN)/llem tiny-model $(TINY_MODEL)

IMAGE ?= cpu

images: install
	$(BIN)/llem images build $(IMAGE)

# The docker runner needs the cpu image (built from the local recipe when no registry answers).
demo: model $(if $(filter docker,$(RUNNER)),images)
	$(BIN)/llem run studies/demo.yaml --runner $(RUNNER) --output $(OUTPUT)

study: install
	$(BIN)/llem run $(STUDY) --runner $(RUNNER) --output $(OUTPUT)

bench: model images
	$(BIN)/python tests/perf/bench_harness_overhead.py
	$(BIN)/python tests/perf/bench_expansion.py
	$(BIN)/python tests/perf/bench_orchestration.py
	$(BIN)/python tests/perf/bench_codecarbon_read.py
	$(BIN)/python tests/perf/bench_ci_coverage.py

# On a machine with an NVIDIA GPU: a short real study plus the harness-overhead check.
gpu-check: install
	$(BIN)/python -m pytest tests/gpu -q
	$(BIN)/python tests/gpu/gpu_check.py

clean-venv:
	rm -rf $(VENV)
